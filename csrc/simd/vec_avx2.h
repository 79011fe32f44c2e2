// AVX2 + FMA vectors: 8 floats / 4 doubles per register, 16 registers.
#pragma once
#include <immintrin.h>
#include <cstddef>
#include <cstdint>
#include <type_traits>

namespace rnnkit {
namespace RNNKIT_NS {

// The float and the double form of an intrinsic differ in their suffix
// only: `name` followed by _ps or _pd, whichever T is, called with `args`.
#define RNNKIT_AVX2_PS_PD(name, args) \
    if constexpr (kFloat) return name##_ps args; else return name##_pd args

// The register of each lane type, named directly: as a template argument
// (std::conditional) the vector types would lose their attributes.
template <typename T> struct Regs;
template <> struct Regs<float> { using reg = __m256; };
template <> struct Regs<double> { using reg = __m256d; };

// One template for float and double, as for the scalar vectors: they differ
// in the register type, the intrinsics' suffix and the lane count.
template <typename T>
struct Vec {
    static_assert(std::is_same_v<T, float> || std::is_same_v<T, double>, "AVX2 vectors hold float or double");
    static constexpr bool kFloat = std::is_same_v<T, float>;
    using reg = typename Regs<T>::reg;
    using mask = reg;
    static constexpr int width = kFloat ? 8 : 4;
    static constexpr int mantissa_bits = kFloat ? 23 : 52;
    static inline reg zero() { RNNKIT_AVX2_PS_PD(_mm256_setzero, ()); }
    static inline reg set1(T v) { RNNKIT_AVX2_PS_PD(_mm256_set1, (v)); }
    static inline reg load(const T* p) { RNNKIT_AVX2_PS_PD(_mm256_loadu, (p)); }
    static inline void store(T* p, reg v) { RNNKIT_AVX2_PS_PD(_mm256_storeu, (p, v)); }
    static inline reg add(reg a, reg b) { RNNKIT_AVX2_PS_PD(_mm256_add, (a, b)); }
    static inline reg sub(reg a, reg b) { RNNKIT_AVX2_PS_PD(_mm256_sub, (a, b)); }
    static inline reg mul(reg a, reg b) { RNNKIT_AVX2_PS_PD(_mm256_mul, (a, b)); }
    static inline reg div(reg a, reg b) { RNNKIT_AVX2_PS_PD(_mm256_div, (a, b)); }
    static inline reg fmadd(reg a, reg b, reg c) { RNNKIT_AVX2_PS_PD(_mm256_fmadd, (a, b, c)); }
    // Where either is NaN, the second operand (so NaN in b gives NaN).
    static inline reg max(reg a, reg b) { RNNKIT_AVX2_PS_PD(_mm256_max, (a, b)); }
    static inline mask lt(reg a, reg b) { RNNKIT_AVX2_PS_PD(_mm256_cmp, (a, b, _CMP_LT_OQ)); }
    static inline reg select(mask m, reg a, reg b) { RNNKIT_AVX2_PS_PD(_mm256_blendv, (b, a, m)); }
    static inline reg neg_abs(reg a) { return bit_or(a, set1(T(-0.0))); }
    static inline reg copysign(reg a, reg s) {
        const reg sign = set1(T(-0.0));
        return bit_or(bit_andnot(sign, a), bit_and(sign, s));
    }
    static constexpr bool exact_fma = true;
    static inline reg shift_to_exponent(reg t) {
        if constexpr (kFloat) return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_castps_si256(t), mantissa_bits));
        else return _mm256_castsi256_pd(_mm256_slli_epi64(_mm256_castpd_si256(t), mantissa_bits));
    }
    // r[i] = row i of a width x width block in, column i out.
    static inline void transpose(reg* r) {
        if constexpr (kFloat) transpose_8x8(r); else transpose_4x4(r);
    }

private:
    static inline reg bit_and(reg a, reg b) { RNNKIT_AVX2_PS_PD(_mm256_and, (a, b)); }
    static inline reg bit_andnot(reg a, reg b) { RNNKIT_AVX2_PS_PD(_mm256_andnot, (a, b)); }
    static inline reg bit_or(reg a, reg b) { RNNKIT_AVX2_PS_PD(_mm256_or, (a, b)); }
    // Floats: pairs interleaved, 4 x 4 blocks within 128-bit lanes, then the
    // lanes swapped across.
    static inline void transpose_8x8(__m256* r) {
        __m256 t[8], s[8];
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
    // Doubles: pairs interleaved, then the 128-bit lanes gathered.
    static inline void transpose_4x4(__m256d* r) {
        const __m256d t0 = _mm256_unpacklo_pd(r[0], r[1]), t1 = _mm256_unpackhi_pd(r[0], r[1]);
        const __m256d t2 = _mm256_unpacklo_pd(r[2], r[3]), t3 = _mm256_unpackhi_pd(r[2], r[3]);
        r[0] = _mm256_permute2f128_pd(t0, t2, 0x20);
        r[1] = _mm256_permute2f128_pd(t1, t3, 0x20);
        r[2] = _mm256_permute2f128_pd(t0, t2, 0x31);
        r[3] = _mm256_permute2f128_pd(t1, t3, 0x31);
    }
};

#undef RNNKIT_AVX2_PS_PD

}  // namespace RNNKIT_NS
}  // namespace rnnkit
