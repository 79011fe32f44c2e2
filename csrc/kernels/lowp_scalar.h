// Scalar building blocks of the low-precision kernels (product_table.h):
// one value's bf16 rounding and one row's int8 quantization, written once
// so that every ISA's vector code has the same reference to match.
#pragma once
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>

#include "kernels/product_table.h"

namespace rnnkit {
namespace RNNKIT_NS {
namespace lowp {

// Round to nearest even; a NaN stays a (quiet) NaN.
inline bf16_t to_bf16(float f) {
    std::uint32_t u;
    std::memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return bf16_t((u >> 16) | 0x40u);
    return bf16_t((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

inline float from_bf16(bf16_t b) {
    const std::uint32_t u = std::uint32_t(b) << 16;
    float f;
    std::memcpy(&f, &u, 4);
    return f;
}

// Quantizes one row (product_table.h, Int8Kernels::quantize_rows) and
// returns its scale. A non-finite value quantizes to 0 and makes the
// scale NaN, so the row's products come out NaN as float's would.
inline float quantize_row(int k, int kp, const float* a, std::uint8_t* dst) {
    float amax = 0.0f;
    bool finite = true;
    for (int p = 0; p < k; ++p) {
        const float v = std::fabs(a[p]);
        finite = finite && v <= std::numeric_limits<float>::max();
        amax = v > amax ? v : amax;
    }
    if (!finite) {
        for (int p = 0; p < kp; ++p) dst[p] = 128;
        return std::numeric_limits<float>::quiet_NaN();
    }
    if (amax == 0.0f) amax = 1.0f;
    const float inv = 127.0f / amax;
    for (int p = 0; p < k; ++p) {
        float q = std::nearbyint(a[p] * inv);
        // A row below 127 / FLT_MAX has inv = inf: its zeros give NaN here,
        // which quantize to 0 (as the vector conversions' clamp does).
        q = q > 127.0f ? 127.0f : (q < -127.0f ? -127.0f : (q == q ? q : 0.0f));
        dst[p] = std::uint8_t(int(q) + 128);
    }
    for (int p = k; p < kp; ++p) dst[p] = 128;
    return amax / 127.0f;
}

}  // namespace lowp
}  // namespace RNNKIT_NS
}  // namespace rnnkit
