// A 64-byte aligned, move-only array for packed weights and workspaces.
#pragma once
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <new>

namespace rnnkit {

template <typename T>
class AlignedBuffer {
public:
    static constexpr std::size_t kAlign = 64;   // one cache line, one zmm register

    AlignedBuffer() = default;
    explicit AlignedBuffer(std::size_t n) { reset(n); }
    AlignedBuffer(const AlignedBuffer&) = delete;
    AlignedBuffer& operator=(const AlignedBuffer&) = delete;
    AlignedBuffer(AlignedBuffer&& o) noexcept : p_(o.p_), n_(o.n_) { o.p_ = nullptr; o.n_ = 0; }
    AlignedBuffer& operator=(AlignedBuffer&& o) noexcept {
        if (this != &o) { release(); p_ = o.p_; n_ = o.n_; o.p_ = nullptr; o.n_ = 0; }
        return *this;
    }
    ~AlignedBuffer() { release(); }

    // Uninitialised storage for n elements (the previous contents are lost).
    // malloc plus manual alignment rather than aligned operator new, which
    // older macOS deployment targets lack; the raw pointer sits just before
    // the aligned block.
    void reset(std::size_t n) {
        release();
        if (n == 0) return;
        void* raw = std::malloc(n * sizeof(T) + kAlign + sizeof(void*));
        if (!raw) throw std::bad_alloc();
        std::uintptr_t start = reinterpret_cast<std::uintptr_t>(raw) + sizeof(void*);
        std::uintptr_t aligned = (start + kAlign - 1) & ~std::uintptr_t(kAlign - 1);
        reinterpret_cast<void**>(aligned)[-1] = raw;
        p_ = reinterpret_cast<T*>(aligned);
        n_ = n;
    }
    void fill_zero() { if (n_) std::memset(p_, 0, n_ * sizeof(T)); }

    T* data() { return p_; }
    const T* data() const { return p_; }
    std::size_t size() const { return n_; }

private:
    void release() {
        if (p_) std::free(reinterpret_cast<void**>(p_)[-1]);
        p_ = nullptr;
        n_ = 0;
    }
    T* p_ = nullptr;
    std::size_t n_ = 0;
};

}  // namespace rnnkit
