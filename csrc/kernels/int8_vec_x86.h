// The int8 vocabulary of the x86 product kernels (gemm_int8_x86.cpp) for
// the ISA this translation unit is compiled for: AVX-512 (zmm, 16 columns
// a register) or AVX2 (ymm, 8 columns), each with or without VNNI.
//
// A B register holds W columns x 4 consecutive k values of a panel (int8,
// product_table.h's layout); an A operand is 4 consecutive u8 values of
// one row broadcast to every 32-bit lane; dot() adds each lane's exact
// int32 sum of its 4 products to an accumulator. With VNNI that is one
// vpdpbusd. Without it, even and odd bytes are widened to 16 bits apart
// and vpmaddwd sums each pair into 32 bits (|255 * -128| * 2 fits; the
// byte form vpmaddubsw would saturate at 16 bits). Both give the same
// integers, so the same bits after dequantization.
//
// Also here: dequantize-and-store of one register of sums (with the row's
// zero point), and the two halves of a row's quantization (min and max,
// then divide-round-shift-clamp-narrow).
// The form is chosen by the compiler's feature macros (__AVX512VNNI__,
// __AVXVNNI__); MSVC defines neither, so its builds take the vpmaddwd form.
#pragma once
#include <immintrin.h>

#include <cfloat>
#include <cstddef>
#include <cstdint>
#include <cstring>

namespace rnnkit {
namespace RNNKIT_NS {
namespace int8x86 {

inline std::int32_t load_u32(const void* p) {
    std::int32_t v;
    std::memcpy(&v, p, 4);
    return v;
}

#if defined(__AVX512BW__)

struct I8 {
    static constexpr int W = 16;
    using ivec = __m512i;
    using fvec = __m512;
    using mask = __mmask16;

#if defined(__AVX512VNNI__)
    // Accumulator registers a tile may hold (of 32): the rest hold B, the
    // A broadcasts and temporaries.
    static constexpr int kAccBudget = 24;
    using aop = __m512i;
    using bop = __m512i;
    static inline aop a_operand(const std::uint8_t* p) { return _mm512_set1_epi32(load_u32(p)); }
    static inline bop b_operand(const std::int8_t* p) { return _mm512_loadu_si512(p); }
    static inline ivec dot(ivec acc, aop a, bop b) { return _mm512_dpbusd_epi32(acc, a, b); }
#else
    // Each operand takes two registers here (even and odd bytes).
    static constexpr int kAccBudget = 16;
    struct aop { __m512i even, odd; };
    struct bop { __m512i even, odd; };
    // u8 a0 a1 a2 a3 in every lane -> 16-bit (a0, a2) and (a1, a3).
    static inline aop a_operand(const std::uint8_t* p) {
        const __m512i x = _mm512_set1_epi32(load_u32(p));
        return {_mm512_and_si512(x, _mm512_set1_epi32(0x00ff00ff)), _mm512_srli_epi16(x, 8)};
    }
    // s8 b0 b1 b2 b3 per lane -> sign-extended 16-bit (b0, b2) and (b1, b3).
    static inline bop b_operand(const std::int8_t* p) {
        const __m512i y = _mm512_loadu_si512(p);
        return {_mm512_srai_epi16(_mm512_slli_epi16(y, 8), 8), _mm512_srai_epi16(y, 8)};
    }
    static inline ivec dot(ivec acc, const aop& a, const bop& b) {
        const __m512i pairs = _mm512_add_epi32(_mm512_madd_epi16(a.even, b.even), _mm512_madd_epi16(a.odd, b.odd));
        return _mm512_add_epi32(acc, pairs);
    }
#endif

    static inline ivec zero() { return _mm512_setzero_si512(); }
    static inline fvec set1(float v) { return _mm512_set1_ps(v); }
    static inline ivec set1_i32(std::int32_t v) { return _mm512_set1_epi32(v); }
    static inline mask first(int n) { return n >= W ? mask(0xffff) : mask((1u << n) - 1u); }

    // c[0:n] (+)= (float(acc - zp * colsum) * a_scale) * b_scale[0:n],
    // 1 <= n (zp the row's zero point in every lane); lanes from n on are
    // neither read nor written.
    static inline void store(float* c, ivec acc, ivec zp, const std::int32_t* colsum, fvec a_scale,
                             const float* b_scale, int n, bool accumulate) {
        const mask m = first(n);
        const __m512i shift = _mm512_mullo_epi32(zp, _mm512_maskz_loadu_epi32(m, colsum));
        __m512 v = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(acc, shift)), a_scale);
        v = _mm512_mul_ps(v, _mm512_maskz_loadu_ps(m, b_scale));
        if (accumulate) v = _mm512_add_ps(_mm512_maskz_loadu_ps(m, c), v);
        _mm512_mask_storeu_ps(c, m, v);
    }

    // lo = min(0, min a[p]), hi = max(0, max a[p]) over p < k; false if
    // some value is not finite (lo and hi are then meaningless).
    static inline bool min_max(int k, const float* a, float& lo, float& hi) {
        __m512 vmin = _mm512_setzero_ps(), vmax = _mm512_setzero_ps();
        mask bad = 0;
        const __m512 big = _mm512_set1_ps(FLT_MAX);
        for (int p = 0; p < k; p += W) {
            const __m512 v = _mm512_maskz_loadu_ps(first(k - p), a + p);
            bad |= _mm512_cmp_ps_mask(_mm512_abs_ps(v), big, _CMP_NLE_UQ);
            vmin = _mm512_min_ps(vmin, v);
            vmax = _mm512_max_ps(vmax, v);
        }
        lo = _mm512_reduce_min_ps(vmin);
        hi = _mm512_reduce_max_ps(vmax);
        return bad == 0;
    }

    // dst[p] = clamp(nearbyint(a[p] / scale) + zp, 0, 255) for p < k (a
    // finite row, scale normal: the quotients are small, never NaN).
    static inline void quantize(int k, const float* a, float scale, std::int32_t zp, std::uint8_t* dst) {
        const __m512 vs = _mm512_set1_ps(scale);
        const __m512i vz = _mm512_set1_epi32(zp), lo = _mm512_setzero_si512(), hi = _mm512_set1_epi32(255);
        for (int p = 0; p < k; p += W) {
            const mask m = first(k - p);
            const __m512 x = _mm512_div_ps(_mm512_maskz_loadu_ps(m, a + p), vs);
            const __m512i u = _mm512_add_epi32(_mm512_cvtps_epi32(x), vz);
            _mm512_mask_cvtepi32_storeu_epi8(dst + p, m, _mm512_max_epi32(lo, _mm512_min_epi32(hi, u)));
        }
    }
};

#elif defined(__AVX2__)

struct I8 {
    static constexpr int W = 8;
    using ivec = __m256i;
    using fvec = __m256;

#if defined(__AVXVNNI__)
    // Accumulator registers a tile may hold (of 16).
    static constexpr int kAccBudget = 12;
    using aop = __m256i;
    using bop = __m256i;
    static inline aop a_operand(const std::uint8_t* p) { return _mm256_set1_epi32(load_u32(p)); }
    static inline bop b_operand(const std::int8_t* p) {
        return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
    }
    static inline ivec dot(ivec acc, aop a, bop b) { return _mm256_dpbusd_avx_epi32(acc, a, b); }
#else
    // Each operand takes two registers here (even and odd bytes).
    static constexpr int kAccBudget = 8;
    struct aop { __m256i even, odd; };
    struct bop { __m256i even, odd; };
    static inline aop a_operand(const std::uint8_t* p) {
        const __m256i x = _mm256_set1_epi32(load_u32(p));
        return {_mm256_and_si256(x, _mm256_set1_epi32(0x00ff00ff)), _mm256_srli_epi16(x, 8)};
    }
    static inline bop b_operand(const std::int8_t* p) {
        const __m256i y = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
        return {_mm256_srai_epi16(_mm256_slli_epi16(y, 8), 8), _mm256_srai_epi16(y, 8)};
    }
    static inline ivec dot(ivec acc, const aop& a, const bop& b) {
        const __m256i pairs = _mm256_add_epi32(_mm256_madd_epi16(a.even, b.even), _mm256_madd_epi16(a.odd, b.odd));
        return _mm256_add_epi32(acc, pairs);
    }
#endif

    static inline ivec zero() { return _mm256_setzero_si256(); }
    static inline fvec set1(float v) { return _mm256_set1_ps(v); }
    static inline ivec set1_i32(std::int32_t v) { return _mm256_set1_epi32(v); }
    // All-ones in the first n lanes (n < W).
    static inline __m256i first(int n) {
        return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
    }

    static inline __m256 dequantize(__m256i acc, __m256i zp, __m256i colsum, __m256 a_scale, __m256 b_scale) {
        const __m256i shifted = _mm256_sub_epi32(acc, _mm256_mullo_epi32(zp, colsum));
        const __m256 v = _mm256_mul_ps(_mm256_cvtepi32_ps(shifted), a_scale);
        return _mm256_mul_ps(v, b_scale);
    }

    // c[0:n] (+)= (float(acc - zp * colsum) * a_scale) * b_scale[0:n],
    // 1 <= n (zp the row's zero point in every lane); lanes from n on are
    // neither read nor written.
    static inline void store(float* c, ivec acc, ivec zp, const std::int32_t* colsum, fvec a_scale,
                             const float* b_scale, int n, bool accumulate) {
        if (n >= W) {
            __m256 v = dequantize(acc, zp, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(colsum)), a_scale,
                                  _mm256_loadu_ps(b_scale));
            if (accumulate) v = _mm256_add_ps(_mm256_loadu_ps(c), v);
            _mm256_storeu_ps(c, v);
            return;
        }
        const __m256i m = first(n);
        __m256 v = dequantize(acc, zp, _mm256_maskload_epi32(colsum, m), a_scale, _mm256_maskload_ps(b_scale, m));
        if (accumulate) v = _mm256_add_ps(_mm256_maskload_ps(c, m), v);
        _mm256_maskstore_ps(c, m, v);
    }

    // lo = min(0, min a[p]), hi = max(0, max a[p]) over p < k; false if
    // some value is not finite (lo and hi are then meaningless).
    static inline bool min_max(int k, const float* a, float& lo, float& hi) {
        const __m256 sign = _mm256_set1_ps(-0.0f), big = _mm256_set1_ps(FLT_MAX);
        __m256 vmin = _mm256_setzero_ps(), vmax = _mm256_setzero_ps();
        __m256 bad = _mm256_setzero_ps();
        for (int p = 0; p < k; p += W) {
            const __m256 v = k - p >= W ? _mm256_loadu_ps(a + p) : _mm256_maskload_ps(a + p, first(k - p));
            bad = _mm256_or_ps(bad, _mm256_cmp_ps(_mm256_andnot_ps(sign, v), big, _CMP_NLE_UQ));
            vmin = _mm256_min_ps(vmin, v);
            vmax = _mm256_max_ps(vmax, v);
        }
        __m128 n4 = _mm_min_ps(_mm256_castps256_ps128(vmin), _mm256_extractf128_ps(vmin, 1));
        n4 = _mm_min_ps(n4, _mm_movehl_ps(n4, n4));
        n4 = _mm_min_ss(n4, _mm_shuffle_ps(n4, n4, 1));
        __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(vmax), _mm256_extractf128_ps(vmax, 1));
        m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
        m4 = _mm_max_ss(m4, _mm_shuffle_ps(m4, m4, 1));
        lo = _mm_cvtss_f32(n4);
        hi = _mm_cvtss_f32(m4);
        return _mm256_movemask_ps(bad) == 0;
    }

    // dst[p] = clamp(nearbyint(a[p] / scale) + zp, 0, 255) for p < k, as
    // the AVX-512 form; the clamped lanes narrow unchanged through the
    // saturating packs.
    static inline void quantize(int k, const float* a, float scale, std::int32_t zp, std::uint8_t* dst) {
        const __m256 vs = _mm256_set1_ps(scale);
        const __m256i vz = _mm256_set1_epi32(zp), lo = _mm256_setzero_si256(), hi = _mm256_set1_epi32(255);
        for (int p = 0; p < k; p += W) {
            const int n = k - p;
            const __m256 x = _mm256_div_ps(n >= W ? _mm256_loadu_ps(a + p) : _mm256_maskload_ps(a + p, first(n)), vs);
            const __m256i u = _mm256_max_epi32(lo, _mm256_min_epi32(hi, _mm256_add_epi32(_mm256_cvtps_epi32(x), vz)));
            const __m256i w = _mm256_packus_epi16(_mm256_packus_epi32(u, u), _mm256_setzero_si256());
            // Bytes 0-3 of each 128-bit half are the half's four values.
            const __m128i bytes = _mm_unpacklo_epi32(_mm256_castsi256_si128(w), _mm256_extracti128_si256(w, 1));
            if (n >= W) {
                _mm_storel_epi64(reinterpret_cast<__m128i*>(dst + p), bytes);
            } else {
                std::uint8_t tmp[8];
                _mm_storel_epi64(reinterpret_cast<__m128i*>(tmp), bytes);
                std::memcpy(dst + p, tmp, std::size_t(n));
            }
        }
    }
};

#endif

}  // namespace int8x86
}  // namespace RNNKIT_NS
}  // namespace rnnkit
