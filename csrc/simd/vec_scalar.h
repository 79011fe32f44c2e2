// Scalar "vectors" of width 1: the portable baseline every CPU runs, built
// with the target's baseline flags only (no -march). Without FMA its fmadd
// rounds twice, so it agrees with the SIMD kernels to rounding, not bitwise.
#pragma once
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>

namespace rnnkit {
namespace scalar {

// GEMM micro-tile: MR rows x (NV * width) columns of accumulators.
constexpr int kGemmMR = 4;
constexpr int kGemmNV = 4;

template <typename T> struct Vec;

template <> struct Vec<float> {
    using reg = float;
    using mask = bool;
    using bits = std::uint32_t;
    static constexpr int width = 1;
    static constexpr int mantissa_bits = 23;
    static inline reg zero() { return 0.0f; }
    static inline reg set1(float v) { return v; }
    static inline reg load(const float* p) { return *p; }
    static inline void store(float* p, reg v) { *p = v; }
    static inline reg add(reg a, reg b) { return a + b; }
    static inline reg sub(reg a, reg b) { return a - b; }
    static inline reg mul(reg a, reg b) { return a * b; }
    static inline reg div(reg a, reg b) { return a / b; }
    // a*b + c; with FP contraction off this is two roundings, as every other
    // non-FMA path of the scalar build.
    static inline reg fmadd(reg a, reg b, reg c) { return a * b + c; }
    static inline reg max(reg a, reg b) { return a > b ? a : b; }
    static inline reg abs(reg a) { return a < 0.0f ? -a : (a == 0.0f ? 0.0f : a); }
    static inline mask lt(reg a, reg b) { return a < b; }
    static inline mask isnan(reg a) { return a != a; }
    static inline reg select(mask m, reg a, reg b) { return m ? a : b; }
    // Copy the sign bit of s onto the non-negative value a.
    static inline reg copysign_pos(reg a, reg s) {
        bits ua, us; std::memcpy(&ua, &a, 4); std::memcpy(&us, &s, 4);
        ua |= us & 0x80000000u; std::memcpy(&a, &ua, 4); return a;
    }
    // Round to the nearest integer (ties to even, the default mode).
    static inline reg round(reg a) { return std::nearbyint(a); }
    // 2^n for an integral n in [-127, 127]; n = -127 gives 0.
    static inline reg pow2(reg n) {
        bits u = bits(static_cast<std::int32_t>(n) + 127) << mantissa_bits;
        float r; std::memcpy(&r, &u, 4); return r;
    }
};

template <> struct Vec<double> {
    using reg = double;
    using mask = bool;
    using bits = std::uint64_t;
    static constexpr int width = 1;
    static constexpr int mantissa_bits = 52;
    static inline reg zero() { return 0.0; }
    static inline reg set1(double v) { return v; }
    static inline reg load(const double* p) { return *p; }
    static inline void store(double* p, reg v) { *p = v; }
    static inline reg add(reg a, reg b) { return a + b; }
    static inline reg sub(reg a, reg b) { return a - b; }
    static inline reg mul(reg a, reg b) { return a * b; }
    static inline reg div(reg a, reg b) { return a / b; }
    static inline reg fmadd(reg a, reg b, reg c) { return a * b + c; }
    static inline reg max(reg a, reg b) { return a > b ? a : b; }
    static inline reg abs(reg a) { return a < 0.0 ? -a : (a == 0.0 ? 0.0 : a); }
    static inline mask lt(reg a, reg b) { return a < b; }
    static inline mask isnan(reg a) { return a != a; }
    static inline reg select(mask m, reg a, reg b) { return m ? a : b; }
    static inline reg copysign_pos(reg a, reg s) {
        bits ua, us; std::memcpy(&ua, &a, 8); std::memcpy(&us, &s, 8);
        ua |= us & 0x8000000000000000ull; std::memcpy(&a, &ua, 8); return a;
    }
    static inline reg round(reg a) { return std::nearbyint(a); }
    // 2^n for an integral n in [-1023, 1023]; n = -1023 gives 0.
    static inline reg pow2(reg n) {
        bits u = bits(static_cast<std::int64_t>(n) + 1023) << mantissa_bits;
        double r; std::memcpy(&r, &u, 8); return r;
    }
};

}  // namespace scalar
}  // namespace rnnkit
