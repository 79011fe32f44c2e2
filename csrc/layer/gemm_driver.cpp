#include "layer/gemm_driver.h"

#include <algorithm>
#include <cstring>
#include <stdexcept>

#include "layer/threading.h"

namespace rnnkit {

template <typename T>
void pack_matrix(const Kernels<T>& kern, int K, int N, const T* b, std::ptrdiff_t rsb,
                 std::ptrdiff_t csb, PackedMatrix<T>& out, int nthreads) {
    for_each_panel(kern, out, K, N, nthreads, [&](int k0, int j, int kc, int nc, T* panel) {
        kern.pack_b_panel(kc, nc, b + k0 * rsb + j * csb, rsb, csb, panel);
    });
}

template <typename T>
void pack_transposed(const Kernels<T>& kern, const PackedMatrix<T>& src, int row0, int rows, PackedMatrix<T>& dst,
                     int nthreads) {
    const int nr = src.nr;
    // Destination panel: rows q0 .. q0+kc (source columns), columns
    // i0 .. i0+nr (source rows row0 + i0 ..). Source row i sits in the k
    // block starting at (i / KC) * KC; source column q in the panel
    // starting at (q / nr) * nr, where the rows of one k block lie nr
    // values apart and their columns contiguous. With row0 on the panel
    // grid (and KC a multiple of nr) the nr rows of a destination panel
    // share a k block: a B with contiguous columns for the kernel's packer,
    // one source panel's run of columns at a time.
    if (row0 % nr != 0 || src.kc % nr != 0 || kern.gemm_nr != nr)
        throw std::logic_error("pack_transposed: row0 off the panel grid");
    for_each_panel(kern, dst, src.N, rows, nthreads, [&](int q0, int i0, int kc, int nc, T* out) {
        const int first = row0 + i0, k0 = first / src.kc * src.kc;
        for (int q = 0; q < kc;) {
            const int j = (q0 + q) / nr * nr;
            const int run = std::min(kc - q, j + nr - (q0 + q));
            kern.pack_b_panel(run, nc, src.panel(k0, j) + std::size_t(first - k0) * nr + (q0 + q - j), 1, nr,
                              out + std::size_t(q) * nr);
            q += run;
        }
    });
}

template <typename T>
void pack_transposed(const Kernels<T>& kern, const PackedMatrix<T>& src, PackedMatrix<T>& dst, int nthreads) {
    pack_transposed(kern, src, 0, src.K, dst, nthreads);
}

namespace {

// A stored by columns far apart (dgates^T in the weight gradients, one
// (time, batch) row of all gates per k) puts every k of a micro-tile on its
// own page; gemm_serial copies such a block into a compact buffer first.
bool a_is_column_major(std::ptrdiff_t rsa, std::ptrdiff_t csa, int mc) { return rsa == 1 && csa > mc; }

// A left-hand operand this small is read from L2 however often it is read.
constexpr std::size_t kSmallOperandBytes = std::size_t(512) << 10;

// Rows of the next micro-tile when `left` rows remain. A short last tile
// has too few accumulator chains to hide the FMA latency, so the last full
// tile and a remainder too large for gemm_rows_panels are split evenly:
// 10 AVX2 rows as 5 + 5, not 6 + 4.
// Where a row sits in a tile does not change its sums.
inline int row_tile(int left, int mr) {
    if (left <= mr) return left;
    if (left < 2 * mr) return (left + 1) / 2;
    return mr;
}

// Panels per gemm_rows_panels call for `rows` rows when `left` panels
// remain: enough accumulator chains (rows x panels x NV registers, at most
// 12 of AVX2's 16), and no panel left alone where that can be helped (a
// GRU block of 3 x 32 columns as one group of 3).
inline int panel_group(int rows, int left) {
    if (left <= 2) return left;
    if (rows == 1) return left == 3 ? 3 : 2;
    if (rows == 2) return left == 4 ? 2 : 3;
    return 2;
}

}  // namespace

int rows_panels_calls(int rows, int panels) {
    int calls = 0;
    for (int left = panels; left > 0;) {
        const int group = panel_group(rows, left);
        calls += group > 1;
        left -= group;
    }
    return calls;
}

template <typename T>
void gemm_serial(const Kernels<T>& kern, int M, int n0, int n1, const T* a, std::ptrdiff_t rsa,
                 std::ptrdiff_t csa, const PackedMatrix<T>& b, T* c, std::ptrdiff_t ldc, bool accumulate,
                 TileFeed<T>* feed) {
    const int mr = kern.gemm_mr, nr = b.nr, mc_max = kern.gemm_mc;
    // A column-major A block is first copied, column by column, into a
    // compact MC x KC buffer that every panel then reads; the sums and their
    // order are unchanged.
    const bool pack_a = a_is_column_major(rsa, csa, mc_max) && n1 - n0 > 2 * nr;
    AlignedBuffer<T> a_block(pack_a ? std::size_t(mc_max) * b.kc : 0);
    // k blocks (those of the packed B) outermost: later blocks add onto what
    // earlier ones stored, so each element is summed in increasing k
    // whatever the tiling.
    for (int k0 = 0; k0 < b.K; k0 += b.kc) {
        const int kc = b.K - k0 < b.kc ? b.K - k0 : b.kc;
        const bool acc = accumulate || k0 > 0;
        for (int i0 = 0; i0 < M; i0 += mc_max) {
            const int i1 = M - i0 < mc_max ? M : i0 + mc_max;
            const T* ab = a + i0 * rsa + k0 * csa;
            std::ptrdiff_t cs = csa;
            if (pack_a) {
                T* dst = a_block.data();
                const int ib = i1 - i0;
                for (int k = 0; k < kc; ++k)
                    std::memcpy(dst + std::size_t(k) * ib, ab + k * csa, std::size_t(ib) * sizeof(T));
                ab = dst;
                cs = ib;
            }
            // Rows in micro-tiles over one panel at a time, except the few
            // the ISA hands to gemm_rows_panels, a few panels at a time.
            const int rows = i1 - i0, spare = rows % mr;
            const int rest = rows <= kern.gemm_panel_rows ? rows : spare <= kern.gemm_spare_panel_rows ? spare : 0;
            const int tiled = rows - rest;
            for (int j = n0; j < n1;) {
                const int group = rest ? panel_group(rest, (n1 - j + nr - 1) / nr) : 1;
                for (int q = 0; tiled > 0 && q < group; ++q) {
                    const int jq = j + q * nr;
                    const T* panel = b.panel(k0, jq);
                    const int nc = n1 - jq < nr ? n1 - jq : nr;
                    // With several row tiles per panel, the first fetches the
                    // next panel of this k block while the others reuse the
                    // current one from L1. A single row tile streams its panels
                    // faster without the extra loads (the hardware prefetcher
                    // follows a stream that simple).
                    const T* next = jq + nr < n1 && tiled > mr ? b.panel(k0, jq + nr) : nullptr;
                    for (int i = i0; i < i0 + tiled;) {
                        const int mc = row_tile(i0 + tiled - i, mr);
                        kern.gemm_ukernel(mc, nc, kc, ab + (i - i0) * rsa, rsa, cs, panel, i == i0 ? next : nullptr,
                                          c + i * ldc + (jq - n0), ldc, acc);
                        i += mc;
                    }
                }
                if (rest) {
                    // (A copied into a block was column-major: rsa == 1 there too.)
                    const T* ar = ab + tiled * rsa;
                    T* cr = c + (i0 + tiled) * ldc + (j - n0);
                    const int nc = std::min(n1 - j, group * nr);
                    TilePiece<T> piece;
                    if (group > 1 && feed && rest == 1 && !acc && feed->next(piece))
                        kern.gemm_rows_panels_tile(rest, group, nc, kc, ar, cs, b.panel(k0, j),
                                                   b.panel(k0, j + nr) - b.panel(k0, j), cr, piece);
                    else if (group > 1)
                        kern.gemm_rows_panels(rest, group, nc, kc, ar, rsa, cs, b.panel(k0, j),
                                              b.panel(k0, j + nr) - b.panel(k0, j), cr, ldc, acc);
                    else kern.gemm_ukernel(rest, nc, kc, ar, rsa, cs, b.panel(k0, j), nullptr, cr, ldc, acc);
                }
                j += group * nr;
            }
        }
    }
}

template <typename T>
void gemm_parallel(const Kernels<T>& kern, int M, const T* a, std::ptrdiff_t rsa, std::ptrdiff_t csa,
                   const PackedMatrix<T>& b, T* c, std::ptrdiff_t ldc, bool accumulate, int nthreads) {
    // Tiles of at most MC rows x 8 panels, rows shared out evenly (in
    // whole micro-tiles) so a short last row of tiles does not leave one
    // thread idle. Each thread takes a contiguous run of tiles, walking down
    // the columns first when there are enough of them: a product with few
    // rows (a short sequence's input projection) is then split by columns.
    // An A that gemm_serial copies into a compact block (the weight
    // gradients' dgates^T) is split by rows only: every tile of a row
    // stripe would copy the same block again.
    const int mr = kern.gemm_mr;
    const int tile_n = a_is_column_major(rsa, csa, kern.gemm_mc) ? b.padded_n() : 8 * b.nr;
    const int cols = (b.N + tile_n - 1) / tile_n;
    const double flops = 2.0 * M * b.N * b.K;
    const int nth = flops < 2e5 ? 1 : nthreads;
    int rows = (M + kern.gemm_mc - 1) / kern.gemm_mc;
    int tile_m = ((M + rows - 1) / rows + mr - 1) / mr * mr;
    // A tile count that the threads cannot share evenly (17 row tiles of a
    // 1600-row product on 2 threads) leaves one thread idle for a tile:
    // take slightly smaller tiles when a few more rows of them share evenly.
    for (int r = rows; (rows * cols) % nth != 0 && r < rows + 2 * nth; ++r) {
        const int tm = ((M + r - 1) / r + mr - 1) / mr * mr;
        const int rr = (M + tm - 1) / tm;
        if ((rr * cols) % nth == 0) {
            rows = rr;
            tile_m = tm;
        }
    }
    const bool by_columns = cols >= nth;
    parallel_region(nth, [&](int tid, int nt) {
        int lo, hi;
        split_range(rows * cols, tid, nt, lo, hi);
        for (int item = lo; item < hi; ++item) {
            const int ti = by_columns ? item % rows : item / cols, tj = by_columns ? item / rows : item % cols;
            const int i0 = ti * tile_m, j0 = tj * tile_n;
            if (i0 >= M) continue;
            const int mc = M - i0 < tile_m ? M - i0 : tile_m;
            const int j1 = b.N - j0 < tile_n ? b.N : j0 + tile_n;
            gemm_serial(kern, mc, j0, j1, a + i0 * rsa, rsa, csa, b, c + i0 * ldc + j0, ldc, accumulate);
        }
    });
}

template <typename T>
void gemm_parallel_transposed_b(const Kernels<T>& kern, int M, const T* a, std::ptrdiff_t lda,
                                const PackedMatrix<T>& bt, T* c, std::ptrdiff_t ldc, int nthreads) {
    // An A small enough to stay in L2 (a batch of one, a short sequence)
    // may be read once per two panels: each thread transposes two of its
    // own panels at a time into a buffer of its own and multiplies them,
    // without barriers, in a fraction of a full-width slice's memory.
    const int nr = bt.nr, panels = (bt.K + nr - 1) / nr;
    if (std::size_t(M) * lda * sizeof(T) <= kSmallOperandBytes) {
        const double flops = 2.0 * M * bt.N * bt.K;
        parallel_region(flops < 2e5 ? 1 : std::min(nthreads, panels), [&](int tid, int nth) {
            int p0, p1;
            split_range(panels, tid, nth, p0, p1);
            PackedMatrix<T> mine;
            for (int p = p0; p < p1; p += 2) {
                const int n0 = p * nr, nc = std::min(bt.K, std::min(p1, p + 2) * nr) - n0;
                pack_transposed(kern, bt, n0, nc, mine, 1);
                gemm_serial(kern, M, 0, nc, a, lda, 1, mine, c + n0, ldc, false);
            }
        });
        return;
    }
    // Otherwise slices as wide as gemm_parallel's column tiles, so A is read
    // as often as with the whole transpose; wider when there are too few
    // rows to give every thread a tile of each slice.
    const int row_tiles = (M + kern.gemm_mc - 1) / kern.gemm_mc;
    const int width = 8 * bt.nr * std::max(1, (nthreads + row_tiles - 1) / row_tiles);
    PackedMatrix<T> slice;
    for (int n0 = 0; n0 < bt.K; n0 += width) {
        const int nc = std::min(width, bt.K - n0);
        pack_transposed(kern, bt, n0, nc, slice, nthreads);
        gemm_parallel(kern, M, a, lda, 1, slice, c + n0, ldc, false, nthreads);
    }
}

#define RNNKIT_INSTANTIATE(T)                                                                          \
    template void pack_matrix<T>(const Kernels<T>&, int, int, const T*, std::ptrdiff_t, std::ptrdiff_t, \
                                 PackedMatrix<T>&, int);                                               \
    template void pack_transposed<T>(const Kernels<T>&, const PackedMatrix<T>&, PackedMatrix<T>&, int);  \
    template void gemm_parallel_transposed_b<T>(const Kernels<T>&, int, const T*, std::ptrdiff_t,      \
                                                const PackedMatrix<T>&, T*, std::ptrdiff_t, int);      \
    template void gemm_serial<T>(const Kernels<T>&, int, int, int, const T*, std::ptrdiff_t,           \
                                 std::ptrdiff_t, const PackedMatrix<T>&, T*, std::ptrdiff_t, bool,     \
                                 TileFeed<T>*);                                                        \
    template void gemm_parallel<T>(const Kernels<T>&, int, const T*, std::ptrdiff_t, std::ptrdiff_t,   \
                                   const PackedMatrix<T>&, T*, std::ptrdiff_t, bool, int);
RNNKIT_INSTANTIATE(float)
RNNKIT_INSTANTIATE(double)
#undef RNNKIT_INSTANTIATE

}  // namespace rnnkit
