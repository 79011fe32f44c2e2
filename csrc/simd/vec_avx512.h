// AVX-512 (F/BW/DQ/VL) vectors: 16 floats / 8 doubles per register, 32
// registers, comparisons produce mask registers.
#pragma once
#include <immintrin.h>
#include <cstddef>
#include <cstdint>

namespace rnnkit {
namespace avx512 {

template <typename T> struct Vec;

template <> struct Vec<float> {
    using reg = __m512;
    using mask = __mmask16;
    static constexpr int width = 16;
    static constexpr int mantissa_bits = 23;
    static inline reg zero() { return _mm512_setzero_ps(); }
    static inline reg set1(float v) { return _mm512_set1_ps(v); }
    static inline reg load(const float* p) { return _mm512_loadu_ps(p); }
    static inline void store(float* p, reg v) { _mm512_storeu_ps(p, v); }
    static inline reg add(reg a, reg b) { return _mm512_add_ps(a, b); }
    static inline reg sub(reg a, reg b) { return _mm512_sub_ps(a, b); }
    static inline reg mul(reg a, reg b) { return _mm512_mul_ps(a, b); }
    static inline reg div(reg a, reg b) { return _mm512_div_ps(a, b); }
    static inline reg fmadd(reg a, reg b, reg c) { return _mm512_fmadd_ps(a, b, c); }
    // Where either is NaN, the second operand (so NaN in b gives NaN).
    static inline reg max(reg a, reg b) { return _mm512_max_ps(a, b); }
    static inline mask lt(reg a, reg b) { return _mm512_cmp_ps_mask(a, b, _CMP_LT_OQ); }
    static inline reg select(mask m, reg a, reg b) { return _mm512_mask_blend_ps(m, b, a); }
    static inline reg neg_abs(reg a) {
        return _mm512_castsi512_ps(_mm512_or_si512(_mm512_castps_si512(a), _mm512_set1_epi32(int(0x80000000u))));
    }
    // The magnitude of a with the sign of s: one bitwise select (s where
    // the mask has the sign bit, a elsewhere).
    static inline reg copysign(reg a, reg s) {
        return _mm512_castsi512_ps(_mm512_ternarylogic_epi32(
            _mm512_castps_si512(a), _mm512_castps_si512(s), _mm512_set1_epi32(int(0x80000000u)), 0xD8));
    }
    static constexpr bool exact_fma = true;
    static inline reg shift_to_exponent(reg t) {
        return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_castps_si512(t), mantissa_bits));
    }
    // r[i] = row i of a 16 x 16 block in, column i out: pairs interleaved,
    // then 4 x 4 blocks within 128-bit lanes, then the lanes themselves.
    static inline void transpose(reg* r) {
        reg t[16];
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
};

template <> struct Vec<double> {
    using reg = __m512d;
    using mask = __mmask8;
    static constexpr int width = 8;
    static constexpr int mantissa_bits = 52;
    static inline reg zero() { return _mm512_setzero_pd(); }
    static inline reg set1(double v) { return _mm512_set1_pd(v); }
    static inline reg load(const double* p) { return _mm512_loadu_pd(p); }
    static inline void store(double* p, reg v) { _mm512_storeu_pd(p, v); }
    static inline reg add(reg a, reg b) { return _mm512_add_pd(a, b); }
    static inline reg sub(reg a, reg b) { return _mm512_sub_pd(a, b); }
    static inline reg mul(reg a, reg b) { return _mm512_mul_pd(a, b); }
    static inline reg div(reg a, reg b) { return _mm512_div_pd(a, b); }
    static inline reg fmadd(reg a, reg b, reg c) { return _mm512_fmadd_pd(a, b, c); }
    // Where either is NaN, the second operand (so NaN in b gives NaN).
    static inline reg max(reg a, reg b) { return _mm512_max_pd(a, b); }
    static inline mask lt(reg a, reg b) { return _mm512_cmp_pd_mask(a, b, _CMP_LT_OQ); }
    static inline reg select(mask m, reg a, reg b) { return _mm512_mask_blend_pd(m, b, a); }
    static inline reg neg_abs(reg a) {
        return _mm512_castsi512_pd(
            _mm512_or_si512(_mm512_castpd_si512(a), _mm512_set1_epi64((long long)0x8000000000000000ull)));
    }
    static inline reg copysign(reg a, reg s) {
        return _mm512_castsi512_pd(_mm512_ternarylogic_epi64(
            _mm512_castpd_si512(a), _mm512_castpd_si512(s), _mm512_set1_epi64((long long)0x8000000000000000ull),
            0xD8));
    }
    static constexpr bool exact_fma = true;
    static inline reg shift_to_exponent(reg t) {
        return _mm512_castsi512_pd(_mm512_slli_epi64(_mm512_castpd_si512(t), mantissa_bits));
    }
    // r[i] = row i of an 8 x 8 block in, column i out: pairs interleaved
    // within 128-bit lanes, then the lanes gathered in two rounds.
    static inline void transpose(reg* r) {
        reg t[8], u[8];
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

}  // namespace avx512
}  // namespace rnnkit
