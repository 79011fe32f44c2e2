// AVX2 + FMA vectors: 8 floats / 4 doubles per register, 16 registers.
#pragma once
#include <immintrin.h>
#include <cstddef>
#include <cstdint>

namespace rnnkit {
namespace avx2 {

template <typename T> struct Vec;

template <> struct Vec<float> {
    using reg = __m256;
    using mask = __m256;
    static constexpr int width = 8;
    static constexpr int mantissa_bits = 23;
    static inline reg zero() { return _mm256_setzero_ps(); }
    static inline reg set1(float v) { return _mm256_set1_ps(v); }
    static inline reg load(const float* p) { return _mm256_loadu_ps(p); }
    static inline void store(float* p, reg v) { _mm256_storeu_ps(p, v); }
    static inline reg add(reg a, reg b) { return _mm256_add_ps(a, b); }
    static inline reg sub(reg a, reg b) { return _mm256_sub_ps(a, b); }
    static inline reg mul(reg a, reg b) { return _mm256_mul_ps(a, b); }
    static inline reg div(reg a, reg b) { return _mm256_div_ps(a, b); }
    static inline reg fmadd(reg a, reg b, reg c) { return _mm256_fmadd_ps(a, b, c); }
    // Where either is NaN, the second operand (so NaN in b gives NaN).
    static inline reg max(reg a, reg b) { return _mm256_max_ps(a, b); }
    static inline mask lt(reg a, reg b) { return _mm256_cmp_ps(a, b, _CMP_LT_OQ); }
    static inline reg select(mask m, reg a, reg b) { return _mm256_blendv_ps(b, a, m); }
    static inline reg neg_abs(reg a) { return _mm256_or_ps(a, _mm256_set1_ps(-0.0f)); }
    static inline reg copysign(reg a, reg s) {
        const reg sign = _mm256_set1_ps(-0.0f);
        return _mm256_or_ps(_mm256_andnot_ps(sign, a), _mm256_and_ps(sign, s));
    }
    static constexpr bool exact_fma = true;
    static inline reg shift_to_exponent(reg t) {
        return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_castps_si256(t), mantissa_bits));
    }
    // r[i] = row i of an 8 x 8 block in, column i out: pairs interleaved,
    // 4 x 4 blocks within 128-bit lanes, then the lanes swapped across.
    static inline void transpose(reg* r) {
        reg t[8], s[8];
        for (int i = 0; i < 8; i += 2) {
            t[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);
            t[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);
        }
        for (int i = 0; i < 8; i += 4) {
            s[i] = _mm256_shuffle_ps(t[i], t[i + 2], 0x44);
            s[i + 1] = _mm256_shuffle_ps(t[i], t[i + 2], 0xEE);
            s[i + 2] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0x44);
            s[i + 3] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0xEE);
        }
        for (int i = 0; i < 4; ++i) {
            r[i] = _mm256_permute2f128_ps(s[i], s[i + 4], 0x20);
            r[i + 4] = _mm256_permute2f128_ps(s[i], s[i + 4], 0x31);
        }
    }
};

template <> struct Vec<double> {
    using reg = __m256d;
    using mask = __m256d;
    static constexpr int width = 4;
    static constexpr int mantissa_bits = 52;
    static inline reg zero() { return _mm256_setzero_pd(); }
    static inline reg set1(double v) { return _mm256_set1_pd(v); }
    static inline reg load(const double* p) { return _mm256_loadu_pd(p); }
    static inline void store(double* p, reg v) { _mm256_storeu_pd(p, v); }
    static inline reg add(reg a, reg b) { return _mm256_add_pd(a, b); }
    static inline reg sub(reg a, reg b) { return _mm256_sub_pd(a, b); }
    static inline reg mul(reg a, reg b) { return _mm256_mul_pd(a, b); }
    static inline reg div(reg a, reg b) { return _mm256_div_pd(a, b); }
    static inline reg fmadd(reg a, reg b, reg c) { return _mm256_fmadd_pd(a, b, c); }
    // Where either is NaN, the second operand (so NaN in b gives NaN).
    static inline reg max(reg a, reg b) { return _mm256_max_pd(a, b); }
    static inline mask lt(reg a, reg b) { return _mm256_cmp_pd(a, b, _CMP_LT_OQ); }
    static inline reg select(mask m, reg a, reg b) { return _mm256_blendv_pd(b, a, m); }
    static inline reg neg_abs(reg a) { return _mm256_or_pd(a, _mm256_set1_pd(-0.0)); }
    static inline reg copysign(reg a, reg s) {
        const reg sign = _mm256_set1_pd(-0.0);
        return _mm256_or_pd(_mm256_andnot_pd(sign, a), _mm256_and_pd(sign, s));
    }
    static constexpr bool exact_fma = true;
    static inline reg shift_to_exponent(reg t) {
        return _mm256_castsi256_pd(_mm256_slli_epi64(_mm256_castpd_si256(t), mantissa_bits));
    }
    // r[i] = row i of a 4 x 4 block in, column i out.
    static inline void transpose(reg* r) {
        const reg t0 = _mm256_unpacklo_pd(r[0], r[1]), t1 = _mm256_unpackhi_pd(r[0], r[1]);
        const reg t2 = _mm256_unpacklo_pd(r[2], r[3]), t3 = _mm256_unpackhi_pd(r[2], r[3]);
        r[0] = _mm256_permute2f128_pd(t0, t2, 0x20);
        r[1] = _mm256_permute2f128_pd(t1, t3, 0x20);
        r[2] = _mm256_permute2f128_pd(t0, t2, 0x31);
        r[3] = _mm256_permute2f128_pd(t1, t3, 0x31);
    }
};

}  // namespace avx2
}  // namespace rnnkit
