// bf16 product micro-kernels (product_table.h, Bf16Kernels::gemm) on x86:
// vdpbf16ps (Dot, AVX-512 BF16 only), or the bf16 values widened to
// float32 (a shift) and one FMA per product (AVX-512 or AVX2). Both add,
// per C element and k pair in increasing order, the odd product and then
// the even one, as the portable kernel does; a product of two bf16 values
// is exact in float32, so the bits are the same (vdpbf16ps treats
// denormal inputs and results as zero: denormals aside).
#pragma once
#include <array>
#include <cstring>
#include <utility>

#include "kernels/bf16_x86.h"
#include "kernels/lowp_scalar.h"

namespace rnnkit {
namespace RNNKIT_NS {
namespace bf16x86 {

// NR: panel width; MR: rows of a tile (capped by the registers); rows up to
// WideRows take up to WidePanels panels per call; Dot: vdpbf16ps.
template <int NR, int MR, int WideRows, int WidePanels, bool Dot>
struct Bf16Gemm {
    using L = Bf16Lanes;
    using F = typename L::F;
    using I = typename L::I;
    static constexpr int W = L::W;
    // Registers (16 columns on AVX-512, 8 on AVX2) per panel.
    static constexpr int NVP = NR / W;
    static_assert(NR % W == 0, "a panel is a whole number of registers wide");
    // Most rows one call keeps in registers: R x NVP accumulators, and at
    // least 4 registers for B and the broadcasts of A.
    static constexpr int kMaxRows = (L::kRegisters - 4) / NVP;
    static constexpr int kRows = MR < kMaxRows ? MR : kMaxRows;
    static constexpr int kWideRows = WideRows < kRows ? WideRows : kRows;
    static constexpr int kWideVecs = kWideRows > 0 && WidePanels > 1 ? NVP * WidePanels : NVP;
    static constexpr int kMaxVecs = kWideVecs > NVP ? kWideVecs : NVP;

    using Fn = void (*)(int kp, const bf16_t* a, std::ptrdiff_t lda, const bf16_t* b, std::ptrdiff_t pstride,
                        float* c, std::ptrdiff_t ldc, int n, bool accumulate);

    // C's start: its values (accumulate) or zero; and its store. Column
    // register v covers columns [v W, v W + W) of the n.
    template <int R, int V>
    static inline void load_c(F (&acc)[R][V], const float* c, std::ptrdiff_t ldc, int n, bool accumulate) {
        for (int r = 0; r < R; ++r)
            for (int v = 0; v < V; ++v)
                acc[r][v] = accumulate ? L::load_cols(c + r * ldc + v * W, lanes(n, v)) : L::zero();
    }
    template <int R, int V>
    static inline void store_c(F (&acc)[R][V], float* c, std::ptrdiff_t ldc, int n) {
        for (int r = 0; r < R; ++r)
            for (int v = 0; v < V; ++v) L::store_cols(c + r * ldc + v * W, acc[r][v], lanes(n, v));
    }
    static inline int lanes(int n, int v) { return n - v * W < W ? n - v * W : W; }
    // Where column register v of k pair 0 starts: panel v / NVP (pstride
    // values apart), register v % NVP of its pair row.
    static inline const bf16_t* column(const bf16_t* b, std::ptrdiff_t pstride, int v) {
        return b + (v / NVP) * pstride + (v % NVP) * 2 * W;
    }
    // Prefetches at k pair offset `off` of the panels a call of V column
    // registers reads. A tile (V <= NVP) fetches the same rows of the next
    // panel, which the driver's next tile of rows takes up (each panel of
    // a large B comes from L3 once; 32 and 64 x 1024 x 4096 on one core:
    // +5 to +20%); a wide call (a few rows) fetches its own panels kAhead pairs
    // ahead (1 row over 1024 x 4096: +3%). Prefetches do not fault, so the
    // one past the last panel is harmless.
    static constexpr int kAhead = 16;
    template <int V>
    static inline void prefetch(const bf16_t* b, std::ptrdiff_t pstride, std::ptrdiff_t off) {
        constexpr int panels = (V + NVP - 1) / NVP, lines = NR * 4 / 64;
        constexpr bool wide = V > NVP;
        for (int pp = 0; pp < panels; ++pp)
            for (int l = 0; l < lines; ++l) {
                const bf16_t* p = b + pp * pstride + off + l * 32;
                _mm_prefetch(reinterpret_cast<const char*>(wide ? p + kAhead * 2 * NR : p + pstride), _MM_HINT_T0);
            }
    }

#if defined(__AVX512BF16__)
    // R rows x V column registers, vdpbf16ps per (row, register, k pair):
    // the A pair broadcast as one 32-bit lane, the B register straight
    // from the panel. When the V B registers of a pair fit beside the
    // accumulators they are loaded once for all rows, else per use.
    static inline __m512bh a_pair(const bf16_t* p) {
        std::uint32_t pair;
        std::memcpy(&pair, p, 4);
        return (__m512bh)L::set1(pair);
    }
    template <int R, int V>
    static void dot_kernel(int kp, const bf16_t* a, std::ptrdiff_t lda, const bf16_t* b, std::ptrdiff_t pstride,
                           float* c, std::ptrdiff_t ldc, int n, bool accumulate) {
        constexpr bool kHoldB = R * V + V + 1 <= L::kRegisters;
        F acc[R][V];
        load_c(acc, c, ldc, n, accumulate);
        const bf16_t* bv[V];
        for (int v = 0; v < V; ++v) bv[v] = column(b, pstride, v);
        for (int q = 0; q < kp / 2; ++q) {
            const std::ptrdiff_t off = std::ptrdiff_t(q) * 2 * NR;
            prefetch<V>(b, pstride, off);
            if constexpr (kHoldB) {
                I bq[V];
                for (int v = 0; v < V; ++v) bq[v] = L::loadi(bv[v] + off);
                for (int r = 0; r < R; ++r) {
                    const __m512bh ap = a_pair(a + r * lda + 2 * q);
                    for (int v = 0; v < V; ++v) acc[r][v] = _mm512_dpbf16_ps(acc[r][v], ap, (__m512bh)bq[v]);
                }
            } else {
                for (int v = 0; v < V; ++v) {
                    const __m512bh bx = (__m512bh)L::loadi(bv[v] + off);
                    for (int r = 0; r < R; ++r) acc[r][v] = _mm512_dpbf16_ps(acc[r][v], a_pair(a + r * lda + 2 * q), bx);
                }
            }
        }
        store_c(acc, c, ldc, n);
    }
#endif

    // Pairs of A widened per chunk into a float32 buffer on the stack, so
    // each product's A operand is a plain broadcast (a load, no shifts per
    // use); KC pairs a chunk: R KiB of floats, within L1.
    static constexpr int KC = 128;
    static inline void widen_row(const bf16_t* a, int count, float* out) {
        int p = 0;
        for (; p + W <= count; p += W) L::storef(out + p, L::widen(a + p));
        for (; p < count; ++p) out[p] = lowp::from_bf16(a[p]);
    }

    // R rows x V column registers: each B register of a pair split into
    // its odd and even values as float32, then per row two FMAs (odd
    // product, even product). The B halves are held for all rows when they
    // fit beside the accumulators, else made per register.
    template <int R, int V>
    static void widen_kernel(int kp, const bf16_t* a, std::ptrdiff_t lda, const bf16_t* b, std::ptrdiff_t pstride,
                             float* c, std::ptrdiff_t ldc, int n, bool accumulate) {
        alignas(64) float aw[R][2 * KC];
        F acc[R][V];
        load_c(acc, c, ldc, n, accumulate);
        const int nq = kp / 2;
        for (int q0 = 0; q0 < nq; q0 += KC) {
            const int qn = nq - q0 < KC ? nq - q0 : KC;
            for (int r = 0; r < R; ++r) widen_row(a + r * lda + 2 * q0, 2 * qn, aw[r]);
            widen_chunk<R, V>(acc, aw, b + std::ptrdiff_t(q0) * 2 * NR, pstride, qn);
        }
        store_c(acc, c, ldc, n);
    }

    // qn pairs of one chunk. The sums go through a local copy: with the
    // array itself live across chunks, GCC stored every accumulator on
    // each k step.
    template <int R, int V>
    static inline void widen_chunk(F (&acc)[R][V], const float (&aw)[R][2 * KC], const bf16_t* b,
                                   std::ptrdiff_t pstride, int qn) {
        constexpr bool kHoldB = R * V + 2 * V + 2 <= L::kRegisters;
        F t[R][V];
        for (int r = 0; r < R; ++r)
            for (int v = 0; v < V; ++v) t[r][v] = acc[r][v];
        const bf16_t* bv[V];
        for (int v = 0; v < V; ++v) bv[v] = column(b, pstride, v);
        for (int q = 0; q < qn; ++q) {
            const std::ptrdiff_t off = std::ptrdiff_t(q) * 2 * NR;
            prefetch<V>(b, pstride, off);
            if constexpr (kHoldB) {
                F bo[V], be[V];
                for (int v = 0; v < V; ++v) {
                    const I x = L::loadi(bv[v] + off);
                    bo[v] = L::odd(x);
                    be[v] = L::even(x);
                }
                for (int r = 0; r < R; ++r) {
                    const F ao = L::bcast(&aw[r][2 * q + 1]), ae = L::bcast(&aw[r][2 * q]);
                    for (int v = 0; v < V; ++v) t[r][v] = L::fmadd(ae, be[v], L::fmadd(ao, bo[v], t[r][v]));
                }
            } else {
                for (int v = 0; v < V; ++v) {
                    const I x = L::loadi(bv[v] + off);
                    const F bo = L::odd(x), be = L::even(x);
                    for (int r = 0; r < R; ++r)
                        t[r][v] = L::fmadd(L::bcast(&aw[r][2 * q]), be, L::fmadd(L::bcast(&aw[r][2 * q + 1]), bo, t[r][v]));
                }
            }
        }
        for (int r = 0; r < R; ++r)
            for (int v = 0; v < V; ++v) acc[r][v] = t[r][v];
    }

    // The kernel of R rows and V registers, or none where V is more than
    // R rows take (wide calls are for rows up to kWideRows only).
    template <int R, int V>
    static constexpr Fn entry() {
        if constexpr (V > (R <= kWideRows ? kWideVecs : NVP)) return nullptr;
#if defined(__AVX512BF16__)
        else if constexpr (Dot) return &dot_kernel<R, V>;
#endif
        else return &widen_kernel<R, V>;
    }
    template <int R, int... V>
    static constexpr std::array<Fn, kMaxVecs> row_of(std::integer_sequence<int, V...>) {
        return {{entry<R, V + 1>()...}};
    }
    template <int... R>
    static constexpr std::array<std::array<Fn, kMaxVecs>, kRows> table_of(std::integer_sequence<int, R...>) {
        return {{row_of<R + 1>(std::make_integer_sequence<int, kMaxVecs>())...}};
    }
    static constexpr std::array<std::array<Fn, kMaxVecs>, kRows> kTable =
        table_of(std::make_integer_sequence<int, kRows>());

    // Any m x n: tiles of kRows rows (a tile of up to kWideRows rows spans
    // WidePanels panels), each call one kernel over all of kp.
    static void gemm(int m, int n, int kp, const bf16_t* a, std::ptrdiff_t lda, const bf16_t* b, float* c,
                     std::ptrdiff_t ldc, bool accumulate) {
        const std::ptrdiff_t pstride = std::ptrdiff_t(kp) * NR;
        for (int i0 = 0; i0 < m; i0 += kRows) {
            const int rows = m - i0 < kRows ? m - i0 : kRows;
            const int span = rows <= kWideRows ? kWideVecs * W : NR;
            for (int j0 = 0; j0 < n; j0 += span) {
                const int cols = n - j0 < span ? n - j0 : span;
                kTable[rows - 1][(cols + W - 1) / W - 1](kp, a + i0 * lda, lda, b + (j0 / NR) * pstride, pstride,
                                                         c + i0 * ldc + j0, ldc, cols, accumulate);
            }
        }
    }
};

}  // namespace bf16x86
}  // namespace RNNKIT_NS
}  // namespace rnnkit
