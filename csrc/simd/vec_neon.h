// NEON (AdvSIMD, aarch64 baseline) vectors: 4 floats / 2 doubles per
// register, 32 registers.
#pragma once
#include <arm_neon.h>
#include <cstddef>
#include <cstdint>

namespace rnnkit {
namespace neon {

template <typename T> struct Vec;

template <> struct Vec<float> {
    using reg = float32x4_t;
    using mask = uint32x4_t;
    static constexpr int width = 4;
    static constexpr int mantissa_bits = 23;
    static inline reg zero() { return vdupq_n_f32(0.0f); }
    static inline reg set1(float v) { return vdupq_n_f32(v); }
    static inline reg load(const float* p) { return vld1q_f32(p); }
    static inline void store(float* p, reg v) { vst1q_f32(p, v); }
    static inline reg add(reg a, reg b) { return vaddq_f32(a, b); }
    static inline reg sub(reg a, reg b) { return vsubq_f32(a, b); }
    static inline reg mul(reg a, reg b) { return vmulq_f32(a, b); }
    static inline reg div(reg a, reg b) { return vdivq_f32(a, b); }
    static inline reg fmadd(reg a, reg b, reg c) { return vfmaq_f32(c, a, b); }
    // NaN where either is NaN.
    static inline reg max(reg a, reg b) { return vmaxq_f32(a, b); }
    static inline mask lt(reg a, reg b) { return vcltq_f32(a, b); }
    static inline reg select(mask m, reg a, reg b) { return vbslq_f32(m, a, b); }
    static inline reg neg_abs(reg a) {
        return vreinterpretq_f32_u32(vorrq_u32(vreinterpretq_u32_f32(a), vdupq_n_u32(0x80000000u)));
    }
    static inline reg copysign(reg a, reg s) { return vbslq_f32(vdupq_n_u32(0x80000000u), s, a); }
    static constexpr bool exact_fma = true;
    static inline reg shift_to_exponent(reg t) {
        return vreinterpretq_f32_u32(vshlq_n_u32(vreinterpretq_u32_f32(t), mantissa_bits));
    }
    // r[i] = row i of a 4 x 4 block in, column i out (through memory).
    static inline void transpose(reg* r) {
        float m[4][4], col[4];
        for (int i = 0; i < 4; ++i) vst1q_f32(m[i], r[i]);
        for (int i = 0; i < 4; ++i) {
            for (int j = 0; j < 4; ++j) col[j] = m[j][i];
            r[i] = vld1q_f32(col);
        }
    }
};

template <> struct Vec<double> {
    using reg = float64x2_t;
    using mask = uint64x2_t;
    static constexpr int width = 2;
    static constexpr int mantissa_bits = 52;
    static inline reg zero() { return vdupq_n_f64(0.0); }
    static inline reg set1(double v) { return vdupq_n_f64(v); }
    static inline reg load(const double* p) { return vld1q_f64(p); }
    static inline void store(double* p, reg v) { vst1q_f64(p, v); }
    static inline reg add(reg a, reg b) { return vaddq_f64(a, b); }
    static inline reg sub(reg a, reg b) { return vsubq_f64(a, b); }
    static inline reg mul(reg a, reg b) { return vmulq_f64(a, b); }
    static inline reg div(reg a, reg b) { return vdivq_f64(a, b); }
    static inline reg fmadd(reg a, reg b, reg c) { return vfmaq_f64(c, a, b); }
    // NaN where either is NaN.
    static inline reg max(reg a, reg b) { return vmaxq_f64(a, b); }
    static inline mask lt(reg a, reg b) { return vcltq_f64(a, b); }
    static inline reg select(mask m, reg a, reg b) { return vbslq_f64(m, a, b); }
    static inline reg neg_abs(reg a) {
        return vreinterpretq_f64_u64(vorrq_u64(vreinterpretq_u64_f64(a), vdupq_n_u64(0x8000000000000000ull)));
    }
    static inline reg copysign(reg a, reg s) { return vbslq_f64(vdupq_n_u64(0x8000000000000000ull), s, a); }
    static constexpr bool exact_fma = true;
    static inline reg shift_to_exponent(reg t) {
        return vreinterpretq_f64_u64(vshlq_n_u64(vreinterpretq_u64_f64(t), mantissa_bits));
    }
    // r[i] = row i of a 2 x 2 block in, column i out (through memory).
    static inline void transpose(reg* r) {
        double m[2][2];
        vst1q_f64(m[0], r[0]);
        vst1q_f64(m[1], r[1]);
        const double c0[2] = {m[0][0], m[1][0]}, c1[2] = {m[0][1], m[1][1]};
        r[0] = vld1q_f64(c0);
        r[1] = vld1q_f64(c1);
    }
};

}  // namespace neon
}  // namespace rnnkit
