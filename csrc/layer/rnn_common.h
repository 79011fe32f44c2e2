// Helpers shared by the forward and backward drivers.
#pragma once
#include <cstddef>
#include <cstring>


namespace rnnkit {

// The k-th item of a run [begin, end) walked forwards or backwards. Time
// loops walk their blocks of recurrent weights backwards on odd steps, so a
// step starts with the panels the step before read last, still in L2: with
// recurrent weights about an L2's size, walking them always the same way
// misses on nearly every panel of every step.
inline int walked(int k, int begin, int end, bool backwards) { return backwards ? begin + end - 1 - k : k; }

template <typename T>
void copy_or_zero(T* dst, const T* src, std::size_t n) {
    if (src) std::memcpy(dst, src, n * sizeof(T));
    else std::memset(dst, 0, n * sizeof(T));
}

// A caller may let h_n alias y's last step (a single-step call does).
template <typename T>
void copy_unless_same(T* dst, const T* src, std::size_t n) {
    if (dst != src) std::memcpy(dst, src, n * sizeof(T));
}

}  // namespace rnnkit
