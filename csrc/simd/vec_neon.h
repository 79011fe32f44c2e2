// NEON (AdvSIMD, aarch64 baseline) vectors: 4 floats / 2 doubles per
// register, 32 registers.
#pragma once
#include <arm_neon.h>
#include <cstddef>
#include <cstdint>
#include <type_traits>

namespace rnnkit {
namespace RNNKIT_NS {

// The float and the double form of an intrinsic differ in their suffix
// only: `name` followed by _f32 or _f64, whichever T is, called with `args`.
#define RNNKIT_NEON_F32_F64(name, args) \
    if constexpr (kFloat) return name##_f32 args; else return name##_f64 args

// The register and mask of each lane type, named directly: as template
// arguments (std::conditional) the vector types could lose their attributes.
template <typename T> struct Regs;
template <> struct Regs<float> { using reg = float32x4_t; using mask = uint32x4_t; };
template <> struct Regs<double> { using reg = float64x2_t; using mask = uint64x2_t; };

// One template for float and double, as for the scalar vectors: they differ
// in the register and mask types, the intrinsics' suffix, the lane count
// and the integer lanes (32 or 64 bits) of their bitwise view.
template <typename T>
struct Vec {
    static_assert(std::is_same_v<T, float> || std::is_same_v<T, double>, "NEON vectors hold float or double");
    static constexpr bool kFloat = std::is_same_v<T, float>;
    using reg = typename Regs<T>::reg;
    using mask = typename Regs<T>::mask;
    static constexpr int width = kFloat ? 4 : 2;
    static constexpr int mantissa_bits = kFloat ? 23 : 52;
    static inline reg zero() { RNNKIT_NEON_F32_F64(vdupq_n, (T(0))); }
    static inline reg set1(T v) { RNNKIT_NEON_F32_F64(vdupq_n, (v)); }
    static inline reg load(const T* p) { RNNKIT_NEON_F32_F64(vld1q, (p)); }
    static inline void store(T* p, reg v) { RNNKIT_NEON_F32_F64(vst1q, (p, v)); }
    static inline reg add(reg a, reg b) { RNNKIT_NEON_F32_F64(vaddq, (a, b)); }
    static inline reg sub(reg a, reg b) { RNNKIT_NEON_F32_F64(vsubq, (a, b)); }
    static inline reg mul(reg a, reg b) { RNNKIT_NEON_F32_F64(vmulq, (a, b)); }
    static inline reg div(reg a, reg b) { RNNKIT_NEON_F32_F64(vdivq, (a, b)); }
    static inline reg fmadd(reg a, reg b, reg c) { RNNKIT_NEON_F32_F64(vfmaq, (c, a, b)); }
    // NaN where either is NaN.
    static inline reg max(reg a, reg b) { RNNKIT_NEON_F32_F64(vmaxq, (a, b)); }
    static inline mask lt(reg a, reg b) { RNNKIT_NEON_F32_F64(vcltq, (a, b)); }
    static inline reg select(mask m, reg a, reg b) { RNNKIT_NEON_F32_F64(vbslq, (m, a, b)); }
    static inline reg neg_abs(reg a) {
        if constexpr (kFloat) return from_bits(vorrq_u32(to_bits(a), sign_bits()));
        else return from_bits(vorrq_u64(to_bits(a), sign_bits()));
    }
    static inline reg copysign(reg a, reg s) { RNNKIT_NEON_F32_F64(vbslq, (sign_bits(), s, a)); }
    static constexpr bool exact_fma = true;
    static inline reg shift_to_exponent(reg t) {
        if constexpr (kFloat) return from_bits(vshlq_n_u32(to_bits(t), mantissa_bits));
        else return from_bits(vshlq_n_u64(to_bits(t), mantissa_bits));
    }
    // r[i] = row i of a width x width block in, column i out (through memory).
    static inline void transpose(reg* r) {
        if constexpr (kFloat) transpose_4x4(r); else transpose_2x2(r);
    }

private:
    // The lanes' bits as integers, and back.
    static inline mask to_bits(reg a) {
        if constexpr (kFloat) return vreinterpretq_u32_f32(a); else return vreinterpretq_u64_f64(a);
    }
    static inline reg from_bits(mask a) {
        if constexpr (kFloat) return vreinterpretq_f32_u32(a); else return vreinterpretq_f64_u64(a);
    }
    // The sign bit of every lane.
    static inline mask sign_bits() {
        if constexpr (kFloat) return vdupq_n_u32(0x80000000u); else return vdupq_n_u64(0x8000000000000000ull);
    }
    static inline void transpose_4x4(float32x4_t* r) {
        float m[4][4], col[4];
        for (int i = 0; i < 4; ++i) vst1q_f32(m[i], r[i]);
        for (int i = 0; i < 4; ++i) {
            for (int j = 0; j < 4; ++j) col[j] = m[j][i];
            r[i] = vld1q_f32(col);
        }
    }
    static inline void transpose_2x2(float64x2_t* r) {
        double m[2][2];
        vst1q_f64(m[0], r[0]);
        vst1q_f64(m[1], r[1]);
        const double c0[2] = {m[0][0], m[1][0]}, c1[2] = {m[0][1], m[1][1]};
        r[0] = vld1q_f64(c0);
        r[1] = vld1q_f64(c1);
    }
};

#undef RNNKIT_NEON_F32_F64

}  // namespace RNNKIT_NS
}  // namespace rnnkit
