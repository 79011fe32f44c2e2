// AVX-512 (F/BW/DQ/VL) vectors: 16 floats / 8 doubles per register, 32
// registers, comparisons produce mask registers.
#pragma once
#include <immintrin.h>
#include <cstddef>
#include <cstdint>
#include <type_traits>

namespace rnnkit {
namespace RNNKIT_NS {

// The float and the double form of an intrinsic differ in their suffix
// only: `name` followed by _ps or _pd, whichever T is, called with `args`.
#define RNNKIT_AVX512_PS_PD(name, args) \
    if constexpr (kFloat) return name##_ps args; else return name##_pd args

// The register and mask of each lane type, named directly: as template
// arguments (std::conditional) the vector types would lose their attributes.
template <typename T> struct Regs;
template <> struct Regs<float> { using reg = __m512; using mask = __mmask16; };
template <> struct Regs<double> { using reg = __m512d; using mask = __mmask8; };

// One template for float and double, as for the scalar vectors: they differ
// in the register and mask types, the intrinsics' suffix, the lane count
// and the integer lanes (32 or 64 bits) of their bitwise view.
template <typename T>
struct Vec {
    static_assert(std::is_same_v<T, float> || std::is_same_v<T, double>, "AVX-512 vectors hold float or double");
    static constexpr bool kFloat = std::is_same_v<T, float>;
    using reg = typename Regs<T>::reg;
    using mask = typename Regs<T>::mask;
    static constexpr int width = kFloat ? 16 : 8;
    static constexpr int mantissa_bits = kFloat ? 23 : 52;
    static inline reg zero() { RNNKIT_AVX512_PS_PD(_mm512_setzero, ()); }
    static inline reg set1(T v) { RNNKIT_AVX512_PS_PD(_mm512_set1, (v)); }
    static inline reg load(const T* p) { RNNKIT_AVX512_PS_PD(_mm512_loadu, (p)); }
    static inline void store(T* p, reg v) { RNNKIT_AVX512_PS_PD(_mm512_storeu, (p, v)); }
    static inline reg add(reg a, reg b) { RNNKIT_AVX512_PS_PD(_mm512_add, (a, b)); }
    static inline reg sub(reg a, reg b) { RNNKIT_AVX512_PS_PD(_mm512_sub, (a, b)); }
    static inline reg mul(reg a, reg b) { RNNKIT_AVX512_PS_PD(_mm512_mul, (a, b)); }
    static inline reg div(reg a, reg b) { RNNKIT_AVX512_PS_PD(_mm512_div, (a, b)); }
    static inline reg fmadd(reg a, reg b, reg c) { RNNKIT_AVX512_PS_PD(_mm512_fmadd, (a, b, c)); }
    // Where either is NaN, the second operand (so NaN in b gives NaN).
    static inline reg max(reg a, reg b) { RNNKIT_AVX512_PS_PD(_mm512_max, (a, b)); }
    static inline mask lt(reg a, reg b) {
        if constexpr (kFloat) return _mm512_cmp_ps_mask(a, b, _CMP_LT_OQ);
        else return _mm512_cmp_pd_mask(a, b, _CMP_LT_OQ);
    }
    static inline reg select(mask m, reg a, reg b) { RNNKIT_AVX512_PS_PD(_mm512_mask_blend, (m, b, a)); }
    static inline reg neg_abs(reg a) { return from_bits(_mm512_or_si512(to_bits(a), sign_bits())); }
    // The magnitude of a with the sign of s: one bitwise select (s where
    // the mask has the sign bit, a elsewhere).
    static inline reg copysign(reg a, reg s) {
        if constexpr (kFloat) return from_bits(_mm512_ternarylogic_epi32(to_bits(a), to_bits(s), sign_bits(), 0xD8));
        else return from_bits(_mm512_ternarylogic_epi64(to_bits(a), to_bits(s), sign_bits(), 0xD8));
    }
    static constexpr bool exact_fma = true;
    static inline reg shift_to_exponent(reg t) {
        if constexpr (kFloat) return from_bits(_mm512_slli_epi32(to_bits(t), mantissa_bits));
        else return from_bits(_mm512_slli_epi64(to_bits(t), mantissa_bits));
    }
    // r[i] = row i of a width x width block in, column i out.
    static inline void transpose(reg* r) {
        if constexpr (kFloat) transpose_16x16(r); else transpose_8x8(r);
    }

private:
    // The lanes' bits as integers, and back.
    static inline __m512i to_bits(reg a) {
        if constexpr (kFloat) return _mm512_castps_si512(a); else return _mm512_castpd_si512(a);
    }
    static inline reg from_bits(__m512i a) {
        if constexpr (kFloat) return _mm512_castsi512_ps(a); else return _mm512_castsi512_pd(a);
    }
    // The sign bit of every lane.
    static inline __m512i sign_bits() {
        if constexpr (kFloat) return _mm512_set1_epi32(int(0x80000000u));
        else return _mm512_set1_epi64((long long)0x8000000000000000ull);
    }
    // Floats: pairs interleaved, then 4 x 4 blocks within 128-bit lanes,
    // then the lanes themselves.
    static inline void transpose_16x16(__m512* r) {
        __m512 t[16];
        for (int i = 0; i < 16; i += 2) {
            t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
            t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
        }
        for (int i = 0; i < 16; i += 4) {
            r[i] = _mm512_shuffle_ps(t[i], t[i + 2], 0x44);
            r[i + 1] = _mm512_shuffle_ps(t[i], t[i + 2], 0xEE);
            r[i + 2] = _mm512_shuffle_ps(t[i + 1], t[i + 3], 0x44);
            r[i + 3] = _mm512_shuffle_ps(t[i + 1], t[i + 3], 0xEE);
        }
        for (int i = 0; i < 8; ++i) {
            const int a = i / 4 * 8 + i % 4;
            t[a] = _mm512_shuffle_f32x4(r[a], r[a + 4], 0x88);
            t[a + 4] = _mm512_shuffle_f32x4(r[a], r[a + 4], 0xDD);
        }
        for (int i = 0; i < 8; ++i) {
            r[i] = _mm512_shuffle_f32x4(t[i], t[i + 8], 0x88);
            r[i + 8] = _mm512_shuffle_f32x4(t[i], t[i + 8], 0xDD);
        }
    }
    // Doubles: pairs interleaved within 128-bit lanes, then the lanes
    // gathered in two rounds.
    static inline void transpose_8x8(__m512d* r) {
        __m512d t[8], u[8];
        for (int i = 0; i < 8; i += 2) {
            t[i] = _mm512_unpacklo_pd(r[i], r[i + 1]);
            t[i + 1] = _mm512_unpackhi_pd(r[i], r[i + 1]);
        }
        // u[0..3]: even columns' lanes of rows 0-3 and 4-7; u[4..7]: odd.
        for (int odd = 0; odd < 2; ++odd) {
            u[4 * odd] = _mm512_shuffle_f64x2(t[odd], t[odd + 2], 0x88);
            u[4 * odd + 1] = _mm512_shuffle_f64x2(t[odd], t[odd + 2], 0xDD);
            u[4 * odd + 2] = _mm512_shuffle_f64x2(t[odd + 4], t[odd + 6], 0x88);
            u[4 * odd + 3] = _mm512_shuffle_f64x2(t[odd + 4], t[odd + 6], 0xDD);
            r[odd] = _mm512_shuffle_f64x2(u[4 * odd], u[4 * odd + 2], 0x88);
            r[odd + 4] = _mm512_shuffle_f64x2(u[4 * odd], u[4 * odd + 2], 0xDD);
            r[odd + 2] = _mm512_shuffle_f64x2(u[4 * odd + 1], u[4 * odd + 3], 0x88);
            r[odd + 6] = _mm512_shuffle_f64x2(u[4 * odd + 1], u[4 * odd + 3], 0xDD);
        }
    }
};

#undef RNNKIT_AVX512_PS_PD

}  // namespace RNNKIT_NS
}  // namespace rnnkit
