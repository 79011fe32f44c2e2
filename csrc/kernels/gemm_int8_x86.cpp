// int8 products on x86 vectors (product_table.h): vpdpbusd with VNNI, the
// widening vpmaddwd form without it (int8_vec_x86.h). Every C element's
// int32 sum is exact whatever the order, and quantization and
// dequantization are the portable kernel's arithmetic (gemm_int8.cpp,
// lowp::quantize_row), so the results equal the portable ones bit for bit.
// Compiled for every ISA; empty where the ISA has no AVX2.
#include "kernels/gemm_int8.h"

#if RNNKIT_INT8_X86

#include <algorithm>
#include <cstring>
#include <limits>

#include "kernels/int8_vec_x86.h"
#include "kernels/kernels_isa.h"
#include "kernels/lowp_scalar.h"

namespace rnnkit {
namespace RNNKIT_NS {

namespace {

using int8x86::I8;

// Loops over a tile's rows and registers are unrolled whole, so that its
// sums are named registers, never an array in memory.
#if defined(__clang__)
#define RNNKIT_UNROLL _Pragma("unroll")
#elif defined(__GNUC__)
#define RNNKIT_UNROLL _Pragma("GCC unroll 64")
#else
#define RNNKIT_UNROLL
#endif

constexpr int W = I8::W;
constexpr int NR = kInt8NR;
static_assert(NR % W == 0, "kInt8NR must be a whole number of registers");
// Registers per panel, and bytes from one k quad of a panel to the next.
constexpr int VPP = NR / W;
constexpr int kQuadStride = NR * 4;
// Registers of columns one call of tile() may span: up to 8 (several
// panels when there are few rows), whole panels, within the accumulator
// budget of the registers.
constexpr int max_vectors(int rows) {
    const int fit = std::min(8, I8::kAccBudget / rows) / VPP * VPP;
    return fit > VPP ? fit : VPP;
}
// Rows of a tile: the config's, as far as the registers hold one panel's.
constexpr int kTileRows = std::max(1, std::min(kInt8MR, I8::kAccBudget / VPP));

// One product call's operands (Int8Kernels::gemm).
struct Product {
    int kp;
    const std::uint8_t* a;
    std::ptrdiff_t lda;
    const float* a_scale;
    const std::int32_t* a_zero;
    const std::int8_t* b;
    const std::int32_t* colsum;
    const float* b_scale;
    float* c;
    std::ptrdiff_t ldc;
    bool accumulate;
};

// Rows i0 .. i0+R-1 x columns j0 .. j0+n-1 (n <= V * W; j0 a multiple of
// NR, V a multiple of VPP, so the V registers cover whole panels, which
// exist even where n ends inside one). The R x V sums stay in registers
// over all of kp; the loop order keeps whichever operands are fewer
// (rows' broadcasts or columns' registers) live across the other.
template <int R, int V>
void tile(const Product& g, int i0, int j0, int n) {
    const std::size_t panel = std::size_t(g.kp) * NR;
    const std::int8_t* col[V];
    RNNKIT_UNROLL
    for (int v = 0; v < V; ++v) col[v] = g.b + std::size_t(j0 / NR + v / VPP) * panel + (v % VPP) * W * 4;
    const std::uint8_t* row[R];
    RNNKIT_UNROLL
    for (int i = 0; i < R; ++i) row[i] = g.a + (i0 + i) * g.lda;
    typename I8::ivec acc[R][V];
    RNNKIT_UNROLL
    for (int i = 0; i < R; ++i) {
        RNNKIT_UNROLL
        for (int v = 0; v < V; ++v) acc[i][v] = I8::zero();
    }

    const int quads = g.kp / 4;
    for (int q = 0; q < quads; ++q) {
        if constexpr (R > V) {
            typename I8::bop b[V];
            RNNKIT_UNROLL
            for (int v = 0; v < V; ++v) b[v] = I8::b_operand(col[v] + std::size_t(q) * kQuadStride);
            RNNKIT_UNROLL
            for (int i = 0; i < R; ++i) {
                const typename I8::aop a = I8::a_operand(row[i] + 4 * q);
                RNNKIT_UNROLL
                for (int v = 0; v < V; ++v) acc[i][v] = I8::dot(acc[i][v], a, b[v]);
            }
        } else {
            typename I8::aop a[R];
            RNNKIT_UNROLL
            for (int i = 0; i < R; ++i) a[i] = I8::a_operand(row[i] + 4 * q);
            RNNKIT_UNROLL
            for (int v = 0; v < V; ++v) {
                const typename I8::bop b = I8::b_operand(col[v] + std::size_t(q) * kQuadStride);
                RNNKIT_UNROLL
                for (int i = 0; i < R; ++i) acc[i][v] = I8::dot(acc[i][v], a[i], b);
            }
        }
    }

    RNNKIT_UNROLL
    for (int i = 0; i < R; ++i) {
        const typename I8::fvec as = I8::set1(g.a_scale[i0 + i]);
        const typename I8::ivec zp = I8::set1_i32(g.a_zero[i0 + i]);
        float* ci = g.c + (i0 + i) * g.ldc + j0;
        RNNKIT_UNROLL
        for (int v = 0; v < V; ++v) {
            const int left = n - v * W;
            const int j = j0 + v * W;
            if (left > 0) I8::store(ci + v * W, acc[i][v], zp, g.colsum + j, as, g.b_scale + j, left, g.accumulate);
        }
    }
}

// The last columns of a row band (0 < n < V * W): the fewest whole panels
// that cover them.
template <int R, int V>
void tile_tail(const Product& g, int i0, int j0, int n) {
    if constexpr (V > VPP) {
        if (n <= (V - VPP) * W) return tile_tail<R, V - VPP>(g, i0, j0, n);
    }
    tile<R, V>(g, i0, j0, n);
}

// R rows across all n columns, max_vectors(R) registers at a time.
template <int R>
void row_band(const Product& g, int i0, int n) {
    constexpr int V = max_vectors(R);
    int j = 0;
    for (; j + V * W <= n; j += V * W) tile<R, V>(g, i0, j, V * W);
    if (j < n) tile_tail<R, V>(g, i0, j, n - j);
}

// A band of r < R rows.
template <int R>
void short_band(const Product& g, int i0, int r, int n) {
    if constexpr (R > 1) {
        if (r < R) return short_band<R - 1>(g, i0, r, n);
    }
    row_band<R>(g, i0, n);
}

}  // namespace

void int8_gemm_x86(int m, int n, int kp, const std::uint8_t* a, std::ptrdiff_t lda, const float* a_scale,
                   const std::int32_t* a_zero, const std::int8_t* b, const std::int32_t* colsum, const float* b_scale, float* c, std::ptrdiff_t ldc,
                   bool accumulate) {
    if (m <= 0 || n <= 0) return;
    const Product g{kp, a, lda, a_scale, a_zero, b, colsum, b_scale, c, ldc, accumulate};
    int i = 0;
    for (; i + kTileRows <= m; i += kTileRows) row_band<kTileRows>(g, i, n);
    if (i < m) short_band<kTileRows>(g, i, m - i, n);
}

void int8_quantize_rows_x86(int m, int k, int kp, const float* a, std::ptrdiff_t lda, std::uint8_t* dst,
                            std::ptrdiff_t ld_dst, float* scale, std::int32_t* zero_point) {
    for (int i = 0; i < m; ++i) {
        const float* src = a + i * lda;
        std::uint8_t* out = dst + i * ld_dst;
        float lo = 0.0f, hi = 0.0f;
        // A non-finite value: zeros, zero point 0, a NaN scale
        // (lowp::quantize_row).
        if (!I8::min_max(k, src, lo, hi)) {
            std::memset(out, 0, std::size_t(kp));
            scale[i] = std::numeric_limits<float>::quiet_NaN();
            zero_point[i] = 0;
            continue;
        }
        // The row's parameters are the portable kernel's own (scalar).
        const lowp::RowQuant r = lowp::row_quant(lo, hi);
        I8::quantize(k, src, r.scale, r.zp, out);
        if (kp > k) std::memset(out + k, r.zp, std::size_t(kp - k));
        scale[i] = r.scale;
        zero_point[i] = r.zp;
    }
}

void int8_pack_panel_x86(int k, int kp, int n, const std::int8_t* q, std::ptrdiff_t rsb, std::ptrdiff_t csb,
                         std::int8_t* panel) {
    std::memset(panel, 0, std::size_t(kp) * NR);
    for (int j = 0; j < n; ++j) {
        const std::int8_t* src = q + j * csb;
        std::int8_t* dst = panel + 4 * j;
        int p = 0;
        // A column's k quad is 4 bytes in a row when its values are (the
        // weights' packer gives contiguous columns).
        if (rsb == 1)
            for (; p + 4 <= k; p += 4) std::memcpy(dst + std::size_t(p / 4) * kQuadStride, src + p, 4);
        for (; p < k; ++p) dst[std::size_t(p / 4) * kQuadStride + p % 4] = src[p * rsb];
    }
}

}  // namespace RNNKIT_NS
}  // namespace rnnkit

#endif  // RNNKIT_INT8_X86
