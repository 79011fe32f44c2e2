// A 64-byte aligned, move-only array for packed weights and workspaces.
#pragma once
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <new>

#include "layer/block_cache.h"

namespace rnnkit {

template <typename T>
class AlignedBuffer {
public:
    static constexpr std::size_t kAlign = 64;   // one cache line, one zmm register

    AlignedBuffer() = default;
    explicit AlignedBuffer(std::size_t n) { reset(n); }
    AlignedBuffer(const AlignedBuffer&) = delete;
    AlignedBuffer& operator=(const AlignedBuffer&) = delete;
    AlignedBuffer(AlignedBuffer&& o) noexcept { take(o); }
    AlignedBuffer& operator=(AlignedBuffer&& o) noexcept {
        if (this != &o) { release(); take(o); }
        return *this;
    }
    ~AlignedBuffer() { release(); }

    // Uninitialised storage for n elements (the previous contents are lost).
    // Large blocks may come back from the block cache with old contents.
    // Manual alignment rather than aligned operator new, which older macOS
    // deployment targets lack.
    void reset(std::size_t n) {
        release();
        if (n == 0) return;
        if (n > (SIZE_MAX - kAlign) / sizeof(T)) throw std::bad_alloc();
        raw_ = block_acquire(n * sizeof(T) + kAlign, &raw_bytes_);
        std::uintptr_t aligned = (reinterpret_cast<std::uintptr_t>(raw_) + kAlign - 1) & ~std::uintptr_t(kAlign - 1);
        p_ = reinterpret_cast<T*>(aligned);
        n_ = n;
    }
    void fill_zero() { if (n_) std::memset(p_, 0, n_ * sizeof(T)); }

    T* data() { return p_; }
    const T* data() const { return p_; }
    std::size_t size() const { return n_; }

private:
    void release() {
        if (raw_) block_release(raw_, raw_bytes_);
        raw_ = nullptr;
        raw_bytes_ = 0;
        p_ = nullptr;
        n_ = 0;
    }
    void take(AlignedBuffer& o) {
        raw_ = o.raw_;
        raw_bytes_ = o.raw_bytes_;
        p_ = o.p_;
        n_ = o.n_;
        o.raw_ = nullptr;
        o.raw_bytes_ = 0;
        o.p_ = nullptr;
        o.n_ = 0;
    }
    void* raw_ = nullptr;          // block as allocated
    std::size_t raw_bytes_ = 0;    // its size
    T* p_ = nullptr;               // first aligned element
    std::size_t n_ = 0;
};

}  // namespace rnnkit
