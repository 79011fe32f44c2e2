#include "layer/fingerprint.h"

#include <cstring>

namespace rnnkit {

namespace {

constexpr std::uint64_t kMul = 0x9E3779B97F4A7C15ull;  // odd: multiplying by it is a bijection
constexpr int kLanes = 8;

// One step of a lane: xor in a word, multiply, fold the high half down.
// Each part is a bijection of the state, so two states that differ stay
// different, and for a given state different words give different states.
inline std::uint64_t absorb(std::uint64_t state, std::uint64_t word) {
    std::uint64_t s = (state ^ word) * kMul;
    return s ^ (s >> 32);
}

}  // namespace

std::uint64_t fingerprint(const void* data, std::size_t bytes) {
    const unsigned char* p = static_cast<const unsigned char*>(data);
    // Eight independent lanes keep the multiplier busy instead of waiting
    // on one chain's latency; word i goes to lane i % 8.
    std::uint64_t lane[kLanes];
    for (int l = 0; l < kLanes; ++l) lane[l] = kMul * std::uint64_t(l + 1);
    const std::size_t words = bytes / 8, full = words / kLanes * kLanes;
    std::size_t i = 0;
    for (; i < full; i += kLanes) {
        std::uint64_t w[kLanes];
        std::memcpy(w, p + i * 8, sizeof(w));
        for (int l = 0; l < kLanes; ++l) lane[l] = absorb(lane[l], w[l]);
    }
    for (; i < words; ++i) {
        std::uint64_t w;
        std::memcpy(&w, p + i * 8, 8);
        lane[i % kLanes] = absorb(lane[i % kLanes], w);
    }
    // The last bytes padded with zeros, and the length, so that arrays of
    // different sizes differ too.
    std::uint64_t tail = 0;
    std::memcpy(&tail, p + words * 8, bytes - words * 8);
    std::uint64_t h = absorb(absorb(kMul, tail), std::uint64_t(bytes));
    for (int l = 0; l < kLanes; ++l) h = absorb(h, lane[l]);
    return h;
}

}  // namespace rnnkit
