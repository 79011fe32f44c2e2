// Register-blocked GEMM micro-kernel and B-panel packing for this ISA.
#include "kernels/kernels_isa.h"

#include <algorithm>

#if defined(_MSC_VER) && (defined(_M_X64) || defined(_M_IX86))
#include <xmmintrin.h>
#endif

namespace rnnkit {
namespace RNNKIT_NS {

namespace {

constexpr int NV = kGemmNV;

// A hint that the cache line at p is read soon (no effect where unsupported).
inline void prefetch_line(const void* p) {
#if defined(__GNUC__) || defined(__clang__)
    __builtin_prefetch(p, 0, 3);
#elif defined(_MSC_VER) && (defined(_M_X64) || defined(_M_IX86))
    _mm_prefetch(static_cast<const char*>(p), _MM_HINT_T0);
#else
    (void)p;
#endif
}

// M rows x (NV registers) columns of C kept in registers across the whole k
// loop; A is read in place (one broadcast per row and k), B from its packed
// panel. Each C element is one chain of FMAs in increasing k, so its value
// does not depend on where its row sits in the tile.
// The first tile over a panel may also prefetch the next panel, row by row
// as it consumes its own: a recurrent step meets each panel of W_hh once,
// fresh from L3, for only a few row tiles.
template <typename T, int M, bool Prefetch>
void ukernel_rows(int n, int k, const T* a, std::ptrdiff_t rsa, std::ptrdiff_t csa,
                  const T* b, const T* b_next, T* c, std::ptrdiff_t ldc, bool accumulate) {
    using V = Vec<T>;
    constexpr int W = V::width;
    constexpr int NR = NV * W;
    typename V::reg acc[M][NV];
    for (int i = 0; i < M; ++i)
        for (int j = 0; j < NV; ++j) acc[i][j] = V::zero();

    for (int p = 0; p < k; ++p) {
        typename V::reg bv[NV];
        for (int j = 0; j < NV; ++j) bv[j] = V::load(b + p * NR + j * W);
        if (Prefetch) {
            constexpr int kLine = 64 / int(sizeof(T));
            for (int off = 0; off < NR; off += kLine) prefetch_line(b_next + p * NR + off);
        }
        const T* ap = a + p * csa;
        for (int i = 0; i < M; ++i) {
            typename V::reg av = V::set1(ap[i * rsa]);
            for (int j = 0; j < NV; ++j) acc[i][j] = V::fmadd(av, bv[j], acc[i][j]);
        }
    }

    // Full tiles store whole registers; edge tiles go lane-count aware.
    for (int i = 0; i < M; ++i) {
        T* ci = c + i * ldc;
        for (int j = 0; j < NV; ++j) {
            int lanes = n - j * W;
            if (lanes <= 0) break;
            if (lanes > W) lanes = W;
            typename V::reg v = acc[i][j];
            if (accumulate) v = V::add(load_any(ci + j * W, lanes), v);
            store_any(ci + j * W, v, lanes);
        }
    }
}

// One k step of a TilePiece's MT x NV accumulators.
template <typename T, int MT>
inline void tile_step(typename Vec<T>::reg (&acc)[MT][kGemmNV], const TilePiece<T>& t, int p) {
    using V = Vec<T>;
    constexpr int NR = NV * V::width;
    typename V::reg bv[NV];
    for (int j = 0; j < NV; ++j) bv[j] = V::load(t.panel + p * NR + j * V::width);
    for (int i = 0; i < MT; ++i) {
        const typename V::reg av = V::set1(t.a[i * t.rsa + p]);
        for (int j = 0; j < NV; ++j) acc[i][j] = V::fmadd(av, bv[j], acc[i][j]);
    }
}

// R rows of A (R = 0..3) against P neighbouring panels (P = 2 or 3): a tile
// of a few rows over one panel has R * NV accumulator chains, too few to
// hide the FMA latency (AVX2: 2 rows, 4 chains where 8 are needed), and
// more loads per FMA; P panels multiply both. Panel q starts q * stride
// values after the first. Each C element is still one chain of FMAs in
// increasing k, the same sums as ukernel_rows.
// With MT > 0, a TilePiece of MT rows rides along: one of its k steps after
// every k / (its steps) of the rows' own, the rest after them. Its chains
// are those of ukernel_rows too (same operand order, resumed exactly).
template <typename T, int R, int P, int MT>
void ukernel_rows_panels(int n, int k, const T* a, std::ptrdiff_t rsa, std::ptrdiff_t csa, const T* b,
                         std::ptrdiff_t stride, T* c, std::ptrdiff_t ldc, bool accumulate, const TilePiece<T>* tile) {
    using V = Vec<T>;
    constexpr int W = V::width;
    constexpr int NR = NV * W;
    constexpr int RA = R > 0 ? R : 1, MA = MT > 0 ? MT : 1;
    typename V::reg acc[RA][P * NV];
    for (int i = 0; i < R; ++i)
        for (int j = 0; j < P * NV; ++j) acc[i][j] = V::zero();
    typename V::reg tacc[MA][NV];
    int kt = 0, kt_end = 0, every = k + 1;
    if (MT > 0) {
        kt = tile->k0;
        kt_end = tile->k1;
        for (int i = 0; i < MT; ++i)
            for (int j = 0; j < NV; ++j) {
                const int lanes = std::min(W, tile->n - j * W);
                tacc[i][j] = kt > 0 && lanes > 0 ? load_any(tile->c + i * tile->ldc + j * W, lanes) : V::zero();
            }
        if (kt_end > kt) every = std::max(1, k / (kt_end - kt));
    }
    for (int p = 0; p < k;) {
        for (const int pe = std::min(k, p + every); p < pe; ++p) {
            typename V::reg av[RA];
            for (int i = 0; i < R; ++i) av[i] = V::set1(a[i * rsa + p * csa]);
            for (int q = 0; q < P; ++q)
                for (int j = 0; j < NV; ++j) {
                    const typename V::reg bv = V::load(b + q * stride + p * NR + j * W);
                    for (int i = 0; i < R; ++i) acc[i][q * NV + j] = V::fmadd(av[i], bv, acc[i][q * NV + j]);
                }
        }
        if (MT > 0 && kt < kt_end) tile_step<T, MA>(tacc, *tile, kt++);
    }
    for (; MT > 0 && kt < kt_end; ++kt) tile_step<T, MA>(tacc, *tile, kt);
    for (int i = 0; i < R; ++i)
        for (int j = 0; j < P * NV; ++j) {
            int lanes = n - j * W;
            if (lanes <= 0) break;
            if (lanes > W) lanes = W;
            typename V::reg v = acc[i][j];
            if (accumulate) v = V::add(load_any(c + i * ldc + j * W, lanes), v);
            store_any(c + i * ldc + j * W, v, lanes);
        }
    // The piece's partial (or final) sums, its n columns only.
    for (int i = 0; i < MT; ++i)
        for (int j = 0; j < NV; ++j) {
            const int lanes = std::min(W, tile->n - j * W);
            if (lanes > 0) store_any(tile->c + i * tile->ldc + j * W, tacc[i][j], lanes);
        }
}

static_assert(kGemmPanelRows >= 1 && kGemmPanelRows <= 3 && kGemmSparePanelRows <= 3 &&
                  kGemmSparePanelRows < kGemmMR,
              "gemm_rows_panels takes 1 to 3 rows");
// pack_transposed keeps the NR rows of a panel of the transpose in one k block.
static_assert(kGemmKC % (kGemmNV * Vec<float>::width) == 0 && kGemmKC % (kGemmNV * Vec<double>::width) == 0,
              "KC is a multiple of NR");

template <typename T>
void ukernel_rows_multi(int rows, int panels, int n, int k, const T* a, std::ptrdiff_t rsa, std::ptrdiff_t csa,
                        const T* b, std::ptrdiff_t stride, T* c, std::ptrdiff_t ldc, bool accumulate) {
    switch (rows * 4 + panels) {
    case 1 * 4 + 3: ukernel_rows_panels<T, 1, 3, 0>(n, k, a, rsa, csa, b, stride, c, ldc, accumulate, nullptr); break;
    case 1 * 4 + 2: ukernel_rows_panels<T, 1, 2, 0>(n, k, a, rsa, csa, b, stride, c, ldc, accumulate, nullptr); break;
    case 2 * 4 + 3: ukernel_rows_panels<T, 2, 3, 0>(n, k, a, rsa, csa, b, stride, c, ldc, accumulate, nullptr); break;
    case 2 * 4 + 2: ukernel_rows_panels<T, 2, 2, 0>(n, k, a, rsa, csa, b, stride, c, ldc, accumulate, nullptr); break;
    case 3 * 4 + 3: ukernel_rows_panels<T, 3, 3, 0>(n, k, a, rsa, csa, b, stride, c, ldc, accumulate, nullptr); break;
    default: ukernel_rows_panels<T, 3, 2, 0>(n, k, a, rsa, csa, b, stride, c, ldc, accumulate, nullptr); break;
    }
}

// One row over 2 or 3 panels (or none) with a piece of a projection tile.
template <typename T>
void ukernel_rows_panels_tile(int rows, int panels, int n, int k, const T* a, std::ptrdiff_t csa, const T* b,
                              std::ptrdiff_t stride, T* c, const TilePiece<T>& piece) {
    constexpr int MT = kGemmTileRows > 0 ? kGemmTileRows : 1;
    if (rows == 0) ukernel_rows_panels<T, 0, 2, MT>(0, 0, a, 0, csa, b, stride, c, 0, false, &piece);
    else if (panels == 3) ukernel_rows_panels<T, 1, 3, MT>(n, k, a, 0, csa, b, stride, c, 0, false, &piece);
    else ukernel_rows_panels<T, 1, 2, MT>(n, k, a, 0, csa, b, stride, c, 0, false, &piece);
}

// Row counts 1..MR each get a fully unrolled instantiation, so a batch of 1
// (a matrix-vector product) does not pay for MR rows.
template <typename T, int M>
struct RowDispatch {
    static void run(int m, int n, int k, const T* a, std::ptrdiff_t rsa, std::ptrdiff_t csa,
                    const T* b, const T* b_next, T* c, std::ptrdiff_t ldc, bool accumulate) {
        if (m != M) RowDispatch<T, M - 1>::run(m, n, k, a, rsa, csa, b, b_next, c, ldc, accumulate);
        else if (b_next) ukernel_rows<T, M, true>(n, k, a, rsa, csa, b, b_next, c, ldc, accumulate);
        else ukernel_rows<T, M, false>(n, k, a, rsa, csa, b, nullptr, c, ldc, accumulate);
    }
};

template <typename T>
struct RowDispatch<T, 0> {
    static void run(int, int, int, const T*, std::ptrdiff_t, std::ptrdiff_t,
                    const T*, const T*, T*, std::ptrdiff_t, bool) {}
};

template <typename T>
void gemm_ukernel(int m, int n, int k, const T* a, std::ptrdiff_t rsa, std::ptrdiff_t csa,
                  const T* b_panel, const T* b_next, T* c, std::ptrdiff_t ldc, bool accumulate) {
    RowDispatch<T, kGemmMR>::run(m, n, k, a, rsa, csa, b_panel, b_next, c, ldc, accumulate);
}

template <typename T>
void pack_b_panel(int k, int n, const T* b, std::ptrdiff_t rsb, std::ptrdiff_t csb, T* panel) {
    constexpr int NR = NV * Vec<T>::width;
    // Rows of B contiguous: copy each k row of the panel straight across.
    if (csb == 1) {
        for (int p = 0; p < k; ++p) {
            T* dst = panel + p * NR;
            const T* src = b + p * rsb;
            int j = 0;
            for (; j < n; ++j) dst[j] = src[j];
            for (; j < NR; ++j) dst[j] = T(0);
        }
        return;
    }
    // Columns of B contiguous (B is a transposed weight matrix, or a packed
    // one read across): W x W blocks, a column's W values of k per
    // register, transposed in registers into W panel rows. Whole vectors
    // are read and written instead of one value at a time, and each group
    // of W columns streams down k, W sequential streams for the prefetcher.
    using V = Vec<T>;
    constexpr int W = V::width;
    if (rsb == 1) {
        for (int j0 = 0; j0 < NR; j0 += W) {
            const int cols = n - j0 < 0 ? 0 : (n - j0 < W ? n - j0 : W);
            T* out = panel + j0;
            int p0 = 0;
            for (; p0 + W <= k; p0 += W) {
                typename V::reg r[W];
                for (int i = 0; i < W; ++i) r[i] = i < cols ? V::load(b + (j0 + i) * csb + p0) : V::zero();
                V::transpose(r);
                for (int i = 0; i < W; ++i) V::store(out + (p0 + i) * NR, r[i]);
            }
            for (int p = p0; p < k; ++p)
                for (int i = 0; i < W; ++i) out[p * NR + i] = i < cols ? b[(j0 + i) * csb + p] : T(0);
        }
        return;
    }
    // Any other layout (not used by the drivers today): value by value.
    for (int p = 0; p < k; ++p)
        for (int j = 0; j < NR; ++j) panel[p * NR + j] = j < n ? b[p * rsb + j * csb] : T(0);
}

}  // namespace

template <typename T>
void fill_gemm(Kernels<T>& k) {
    k.gemm_mr = kGemmMR;
    k.gemm_nr = NV * Vec<T>::width;
    k.gemm_kc = kGemmKC;
    k.gemm_mc = kGemmMC;
    k.gemm_panel_rows = kGemmPanelRows;
    k.gemm_spare_panel_rows = kGemmSparePanelRows;
    k.gemm_ukernel = &gemm_ukernel<T>;
    k.gemm_rows_panels = &ukernel_rows_multi<T>;
    k.gemm_tile_rows = kGemmTileRows;
    k.gemm_rows_panels_tile = kGemmTileRows > 0 ? &ukernel_rows_panels_tile<T> : nullptr;
    k.pack_b_panel = &pack_b_panel<T>;
}

template void fill_gemm<float>(Kernels<float>&);
template void fill_gemm<double>(Kernels<double>&);

}  // namespace RNNKIT_NS
}  // namespace rnnkit
