// The x86 vector vocabulary of the bf16 product kernels (bf16_pack_x86.h,
// bf16_gemm_x86.h): one struct, Bf16Lanes, for AVX-512 (F + BW) or AVX2,
// whichever this object is compiled for. A register holds W float32
// values or, as 32-bit lanes, W bf16 pairs (the unit of a panel row).
#pragma once
#include <immintrin.h>

#include <cstddef>
#include <cstdint>

#include "kernels/product_table.h"
#include "simd/simd.h"

namespace rnnkit {
namespace RNNKIT_NS {
namespace bf16x86 {

#if defined(__AVX512F__) && defined(__AVX512BW__)

struct Bf16Lanes {
    using F = __m512;
    using I = __m512i;
    static constexpr int W = 16;
    static constexpr int kRegisters = 32;

    static inline I set1(std::uint32_t v) { return _mm512_set1_epi32(int(v)); }
    static inline F loadf(const float* p) { return _mm512_loadu_ps(p); }
    static inline void storef(float* p, F v) { _mm512_storeu_ps(p, v); }
    static inline I loadi(const void* p) { return _mm512_loadu_si512(p); }
    static inline void storei(void* p, I v) { _mm512_storeu_si512(p, v); }
    static inline F fmadd(F a, F b, F c) { return _mm512_fmadd_ps(a, b, c); }
    static inline F zero() { return _mm512_setzero_ps(); }
    static inline F bcast(const float* p) { return _mm512_set1_ps(*p); }

    // Each lane's float rounded to bf16 (low half of the lane), exactly as
    // lowp::to_bf16: nearest even, a NaN quiet. (Not vcvtneps2bf16, which
    // flushes float32 denormals to zero.)
    static inline I round(F x) {
        const I u = _mm512_castps_si512(x);
        const I lsb = _mm512_and_si512(_mm512_srli_epi32(u, 16), set1(1));
        const I r = _mm512_srli_epi32(_mm512_add_epi32(u, _mm512_add_epi32(lsb, set1(0x7fff))), 16);
        const __mmask16 nan = _mm512_cmpgt_epu32_mask(_mm512_and_si512(u, set1(0x7fffffffu)), set1(0x7f800000u));
        return _mm512_mask_or_epi32(r, nan, _mm512_srli_epi32(u, 16), set1(0x40));
    }
    // 2W floats as W bf16 pairs: lane q = bf16(x[2q]) | bf16(x[2q + 1]) << 16
    // (also 2W consecutive bf16 values in memory order).
    static inline I pairs(F lo, F hi) {
        const __m256i a = _mm512_cvtepi32_epi16(round(lo)), b = _mm512_cvtepi32_epi16(round(hi));
        return _mm512_inserti64x4(_mm512_castsi256_si512(a), b, 1);
    }
    // The odd (high) and even (low) bf16 of each pair as float32.
    static inline F odd(I v) { return _mm512_castsi512_ps(_mm512_and_si512(v, set1(0xffff0000u))); }
    static inline F even(I v) { return _mm512_castsi512_ps(_mm512_slli_epi32(v, 16)); }
    // W bf16 values at p as float32.
    static inline F widen(const bf16_t* p) {
        const __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
        return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
    }
    // The first `lanes` floats at c (the others zero), and back.
    static inline F load_cols(const float* c, int lanes) {
        return lanes == W ? _mm512_loadu_ps(c) : _mm512_maskz_loadu_ps(__mmask16((1u << lanes) - 1), c);
    }
    static inline void store_cols(float* c, F v, int lanes) {
        if (lanes == W) _mm512_storeu_ps(c, v);
        else _mm512_mask_storeu_ps(c, __mmask16((1u << lanes) - 1), v);
    }
    // r[i] = row i of a W x W block of 32-bit lanes in, column i out.
    static inline void transpose(I* r) {
        F f[W];
        for (int i = 0; i < W; ++i) f[i] = _mm512_castsi512_ps(r[i]);
        Vec<float>::transpose(f);
        for (int i = 0; i < W; ++i) r[i] = _mm512_castps_si512(f[i]);
    }
};

#elif defined(__AVX2__)

struct Bf16Lanes {
    using F = __m256;
    using I = __m256i;
    static constexpr int W = 8;
    static constexpr int kRegisters = 16;

    static inline I set1(std::uint32_t v) { return _mm256_set1_epi32(int(v)); }
    static inline F loadf(const float* p) { return _mm256_loadu_ps(p); }
    static inline void storef(float* p, F v) { _mm256_storeu_ps(p, v); }
    static inline I loadi(const void* p) { return _mm256_loadu_si256(static_cast<const __m256i*>(p)); }
    static inline void storei(void* p, I v) { _mm256_storeu_si256(static_cast<__m256i*>(p), v); }
    static inline F fmadd(F a, F b, F c) { return _mm256_fmadd_ps(a, b, c); }
    static inline F zero() { return _mm256_setzero_ps(); }
    static inline F bcast(const float* p) { return _mm256_broadcast_ss(p); }

    // As the AVX-512 form: lowp::to_bf16 lane by lane.
    static inline I round(F x) {
        const I u = _mm256_castps_si256(x);
        const I lsb = _mm256_and_si256(_mm256_srli_epi32(u, 16), set1(1));
        const I r = _mm256_srli_epi32(_mm256_add_epi32(u, _mm256_add_epi32(lsb, set1(0x7fff))), 16);
        // |u| > inf as signed integers (both sides below 2^31).
        const I nan = _mm256_cmpgt_epi32(_mm256_and_si256(u, set1(0x7fffffffu)), set1(0x7f800000u));
        const I quiet = _mm256_or_si256(_mm256_srli_epi32(u, 16), set1(0x40));
        return _mm256_blendv_epi8(r, quiet, nan);
    }
    // 2W floats as W bf16 pairs (packus interleaves the 128-bit halves; the
    // permute puts them back in order; the values fit 16 bits unsigned).
    static inline I pairs(F lo, F hi) {
        return _mm256_permute4x64_epi64(_mm256_packus_epi32(round(lo), round(hi)), 0xD8);
    }
    static inline F odd(I v) { return _mm256_castsi256_ps(_mm256_and_si256(v, set1(0xffff0000u))); }
    static inline F even(I v) { return _mm256_castsi256_ps(_mm256_slli_epi32(v, 16)); }
    static inline F widen(const bf16_t* p) {
        const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
        return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
    }
    static inline F load_cols(const float* c, int lanes) {
        return lanes == W ? _mm256_loadu_ps(c) : _mm256_maskload_ps(c, tail_mask(lanes));
    }
    static inline void store_cols(float* c, F v, int lanes) {
        if (lanes == W) _mm256_storeu_ps(c, v);
        else _mm256_maskstore_ps(c, tail_mask(lanes), v);
    }
    static inline void transpose(I* r) {
        F f[W];
        for (int i = 0; i < W; ++i) f[i] = _mm256_castsi256_ps(r[i]);
        Vec<float>::transpose(f);
        for (int i = 0; i < W; ++i) r[i] = _mm256_castps_si256(f[i]);
    }

private:
    // All ones in the first `lanes` lanes.
    static inline I tail_mask(int lanes) {
        return _mm256_cmpgt_epi32(_mm256_set1_epi32(lanes), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
    }
};

#endif

}  // namespace bf16x86
}  // namespace RNNKIT_NS
}  // namespace rnnkit
