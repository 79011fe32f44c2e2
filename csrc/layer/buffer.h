// A 64-byte aligned, move-only array for packed weights and workspaces.
#pragma once
#include <cstddef>
#include <cstring>
#include <new>
#include <utility>

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
    void reset(std::size_t n) {
        release();
        if (n) p_ = static_cast<T*>(::operator new(n * sizeof(T), std::align_val_t(kAlign)));
        n_ = n;
    }
    void fill_zero() { if (n_) std::memset(p_, 0, n_ * sizeof(T)); }

    T* data() { return p_; }
    const T* data() const { return p_; }
    std::size_t size() const { return n_; }

private:
    void release() {
        if (p_) ::operator delete(p_, std::align_val_t(kAlign));
        p_ = nullptr;
        n_ = 0;
    }
    T* p_ = nullptr;
    std::size_t n_ = 0;
};

}  // namespace rnnkit
