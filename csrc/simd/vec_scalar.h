// Scalar "vectors" of width 1: the portable baseline every CPU runs, built
// with the target's baseline flags only (no -march). Without FMA its fmadd
// rounds twice, so it agrees with the SIMD kernels to rounding, not bitwise.
#pragma once
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>

namespace rnnkit {
namespace RNNKIT_NS {

// One template serves float and double: they differ only in the integer
// type of their bits, the mantissa width and the exponent bias.
template <typename T, typename Bits, int MantissaBits, int ExponentBias>
struct ScalarVec {
    using reg = T;
    using mask = bool;
    using bits = Bits;
    static constexpr int width = 1;
    static constexpr int mantissa_bits = MantissaBits;
    static inline reg zero() { return T(0); }
    static inline reg set1(T v) { return v; }
    static inline reg load(const T* p) { return *p; }
    static inline void store(T* p, reg v) { *p = v; }
    static inline reg add(reg a, reg b) { return a + b; }
    static inline reg sub(reg a, reg b) { return a - b; }
    static inline reg mul(reg a, reg b) { return a * b; }
    static inline reg div(reg a, reg b) { return a / b; }
    // a*b + c; with FP contraction off this is two roundings, as every other
    // non-FMA path of the scalar build.
    static inline reg fmadd(reg a, reg b, reg c) { return a * b + c; }
    // b where the comparison fails, so NaN in b gives NaN.
    static inline reg max(reg a, reg b) { return a > b ? a : b; }
    static inline mask lt(reg a, reg b) { return a < b; }
    static inline reg select(mask m, reg a, reg b) { return m ? a : b; }
    static inline reg neg_abs(reg a) { return -std::fabs(a); }
    static inline reg copysign(reg a, reg s) { return std::copysign(a, s); }
    // exp's argument reduction rounds with nearbyint and builds 2^n from
    // the integer: the shifter form needs x*c + shifter rounded to T before
    // the shifter is taken off again, which x87 excess precision (a
    // baseline 32-bit x86 build) does not promise.
    static constexpr bool exact_fma = false;
    // Round to the nearest integer (ties to even, the default mode).
    static inline reg round(reg a) { return std::nearbyint(a); }
    // 2^n for an integral n in [-bias, bias]; n = -bias gives 0.
    static inline reg pow2(reg n) {
        const Bits u = Bits(static_cast<long long>(n) + ExponentBias) << MantissaBits;
        T r;
        std::memcpy(&r, &u, sizeof(T));
        return r;
    }
    // A 1 x 1 block is its own transpose.
    static inline void transpose(reg*) {}
};

template <typename T> struct Vec;
template <> struct Vec<float> : ScalarVec<float, std::uint32_t, 23, 127> {};
template <> struct Vec<double> : ScalarVec<double, std::uint64_t, 52, 1023> {};

}  // namespace RNNKIT_NS
}  // namespace rnnkit
