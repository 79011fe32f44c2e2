// Portable GEMM driver: blocking, packing of B and threading around the ISA
// micro-kernel. Every C element is reduced in the same k order whatever the
// thread count, so results are bitwise reproducible.
#pragma once
#include <algorithm>
#include <cstddef>
#include <utility>

#include "kernels/kernel_table.h"
#include "layer/buffer.h"
#include "layer/threading.h"

namespace rnnkit {

// The block sizes (the micro-tile MR x NR, the k block KC, the row block MC)
// are the kernels' own, per ISA: kernels/config_<isa>.h, read from the
// kernel table.

// B (K x N) in micro-kernel panels: for each k block of kc rows (the last
// one shorter), ceil(N / NR) panels of its rows x NR values, the last panel
// zero padded.
template <typename T>
struct PackedMatrix {
    int K = 0, N = 0, nr = 0, kc = 0;
    AlignedBuffer<T> data;

    int padded_n() const { return (N + nr - 1) / nr * nr; }
    // Panel holding columns [j, j + nr) of k block starting at k0 (j % nr == 0).
    std::size_t panel_offset(int k0, int j) const {
        const int rows = K - k0 < kc ? K - k0 : kc;
        return std::size_t(k0) * padded_n() + std::size_t(j / nr) * nr * rows;
    }
    const T* panel(int k0, int j) const { return data.data() + panel_offset(k0, j); }
    T* panel(int k0, int j) { return data.data() + panel_offset(k0, j); }
};

// Packs b(k, n) = b[k * rsb + n * csb], K x N, for these kernels.
template <typename T>
void pack_matrix(const Kernels<T>& kern, int K, int N, const T* b, std::ptrdiff_t rsb,
                 std::ptrdiff_t csb, PackedMatrix<T>& out, int nthreads);

// Packs b(k, n) = column(n)[k], K x N, where column(n) points at column n's
// K contiguous values (row n of a weight matrix whose transpose is packed).
// Panels whose columns lie at a constant stride go through the kernel's
// packer; others (around a gate-block edge) are gathered value by value.
template <typename T, typename ColumnFn>
void pack_columns(const Kernels<T>& kern, int K, int N, ColumnFn column, PackedMatrix<T>& out, int nthreads);

// Packs b(k, n) = row(k)[n], K x N, where run(k) returns {row(k), count}:
// row k's address and how many rows from k on follow it `ld` apart (a
// packed sequence's states, contiguous within each step). Each run goes
// through the kernel's packer at once.
template <typename T, typename RunFn>
void pack_row_runs(const Kernels<T>& kern, int K, int N, std::ptrdiff_t ld, RunFn run, PackedMatrix<T>& out,
                   int nthreads);

// Packs the transpose of an already packed matrix (src.N x src.K), for the
// same kernels (those of kern), without a dense copy in between: each
// NR x NR block of a source panel becomes an NR x NR block of a
// destination panel.
template <typename T>
void pack_transposed(const Kernels<T>& kern, const PackedMatrix<T>& src, PackedMatrix<T>& dst, int nthreads);
// Only rows row0 .. row0 + rows - 1 of src (columns of the transpose);
// row0 a multiple of src.nr.
template <typename T>
void pack_transposed(const Kernels<T>& kern, const PackedMatrix<T>& src, int row0, int rows, PackedMatrix<T>& dst,
                     int nthreads);

// The micro-tiles of a second product C = A * B (A rows contiguous, K <=
// b.kc, rows a multiple of kern.gemm_tile_rows), handed out piece by
// piece, tile after tile, to the kernel calls of one-row products
// (gemm_serial with a feed), which compute them in their idle FMA slots.
template <typename T>
class TileFeed {
public:
    TileFeed() = default;
    // k steps per piece: `per_piece`.
    TileFeed(const Kernels<T>& kern, int rows, const T* a, std::ptrdiff_t rsa, const PackedMatrix<T>& b, T* c,
             std::ptrdiff_t ldc, int per_piece)
        : kern_(&kern), a_(a), rsa_(rsa), b_(&b), c_(c), ldc_(ldc), tile_rows_(kern.gemm_tile_rows),
          row_tiles_(rows / kern.gemm_tile_rows), panels_((b.N + b.nr - 1) / b.nr), per_piece_(per_piece) {}
    // The next piece, or false when every tile is done.
    bool next(TilePiece<T>& piece) {
        if (tile_ >= row_tiles_ * panels_) return false;
        // Down the rows of one panel first: the panel stays in cache.
        const int ti = tile_ % row_tiles_, j = (tile_ / row_tiles_) * b_->nr;
        const int k1 = std::min(b_->K, k_ + per_piece_);
        const std::ptrdiff_t row = std::ptrdiff_t(ti) * tile_rows_;
        piece = TilePiece<T>{a_ + row * rsa_, rsa_, b_->panel(0, j), c_ + row * ldc_ + j, ldc_,
                             std::min(b_->nr, b_->N - j), k_, k1};
        k_ = k1;
        if (k_ == b_->K) {
            k_ = 0;
            ++tile_;
        }
        return true;
    }
    // Every piece not yet handed out, on its own.
    void finish() {
        per_piece_ = b_ ? b_->K : 0;
        TilePiece<T> piece;
        while (next(piece)) kern_->gemm_rows_panels_tile(0, 0, 0, 0, nullptr, 0, nullptr, 0, nullptr, piece);
    }

private:
    const Kernels<T>* kern_ = nullptr;
    const T* a_ = nullptr;
    std::ptrdiff_t rsa_ = 0;
    const PackedMatrix<T>* b_ = nullptr;
    T* c_ = nullptr;
    std::ptrdiff_t ldc_ = 0;
    int tile_rows_ = 0, row_tiles_ = 0, panels_ = 0, per_piece_ = 0;
    int tile_ = 0, k_ = 0;
};

// C[:, n0:n1] (+)= A (M x K) * B[:, n0:n1] on the calling thread; n0 is a
// multiple of the panel width; c points at element (0, n0). With a feed
// (M = 1, K <= b.kc, not accumulating), each gemm_rows_panels call also
// takes the feed's next piece.
template <typename T>
void gemm_serial(const Kernels<T>& kern, int M, int n0, int n1, const T* a, std::ptrdiff_t rsa,
                 std::ptrdiff_t csa, const PackedMatrix<T>& b, T* c, std::ptrdiff_t ldc, bool accumulate,
                 TileFeed<T>* feed = nullptr);

// How many gemm_rows_panels calls gemm_serial makes for `rows` rows (at
// most kern.gemm_panel_rows) over `panels` panels of one k block: the calls
// that take a feed's pieces.
int rows_panels_calls(int rows, int panels);

// Whole C = A * B (or C += A * B), split into tiles over `nthreads` threads.
template <typename T>
void gemm_parallel(const Kernels<T>& kern, int M, const T* a, std::ptrdiff_t rsa, std::ptrdiff_t csa,
                   const PackedMatrix<T>& b, T* c, std::ptrdiff_t ldc, bool accumulate, int nthreads);

// C (M x bt.K) = A (M x bt.N, row-major, lda) x bt^T, for a B whose
// transpose is what is packed (the forward pack of W_ih^T, when dx needs
// W_ih). The transpose is packed one slice of columns at a time (with a
// small A, two panels per thread at a time), so only a slice is ever
// alive; the sums are those of gemm_parallel on the whole transpose, in
// the same order.
template <typename T>
void gemm_parallel_transposed_b(const Kernels<T>& kern, int M, const T* a, std::ptrdiff_t lda,
                                const PackedMatrix<T>& bt, T* c, std::ptrdiff_t ldc, int nthreads);

// Sizes `out` for a K x N matrix in panels of width kern.gemm_nr and k
// blocks of kern.gemm_kc rows and calls fill(k0, j, kc, nc, panel) for
// every panel, the panels shared out over threads. Small matrices are
// packed on the calling thread: a parallel region costs more than copying
// them.
template <typename T, typename FillFn>
void for_each_panel(const Kernels<T>& kern, PackedMatrix<T>& out, int K, int N, int nthreads, FillFn fill) {
    const int nr = kern.gemm_nr, kc_max = kern.gemm_kc;
    out.K = K;
    out.N = N;
    out.nr = nr;
    out.kc = kc_max;
    out.data.reset(std::size_t(K) * out.padded_n());
    const int panels = out.padded_n() / nr;
    const int kblocks = (K + kc_max - 1) / kc_max;
    const bool big = std::size_t(K) * N > (std::size_t(1) << 16);
    parallel_region(big ? nthreads : 1, [&](int tid, int nth) {
        int lo, hi;
        split_range(kblocks * panels, tid, nth, lo, hi);
        for (int item = lo; item < hi; ++item) {
            const int k0 = (item / panels) * kc_max, j = (item % panels) * nr;
            const int kc = K - k0 < kc_max ? K - k0 : kc_max;
            const int nc = N - j < nr ? N - j : nr;
            fill(k0, j, kc, nc, out.panel(k0, j));
        }
    });
}

template <typename T, typename ColumnFn>
void pack_columns(const Kernels<T>& kern, int K, int N, ColumnFn column, PackedMatrix<T>& out, int nthreads) {
    const int nr = kern.gemm_nr;
    for_each_panel(kern, out, K, N, nthreads, [&](int k0, int j, int kc, int nc, T* panel) {
        const T* first = column(j);
        const std::ptrdiff_t stride = nc > 1 ? column(j + 1) - first : 0;
        bool strided = true;
        for (int jj = 2; jj < nc && strided; ++jj) strided = column(j + jj) == first + jj * stride;
        if (strided) {
            kern.pack_b_panel(kc, nc, first + k0, 1, stride, panel);
            return;
        }
        for (int p = 0; p < kc; ++p)
            for (int jj = 0; jj < nr; ++jj) panel[p * nr + jj] = jj < nc ? column(j + jj)[k0 + p] : T(0);
    });
}

template <typename T, typename RunFn>
void pack_row_runs(const Kernels<T>& kern, int K, int N, std::ptrdiff_t ld, RunFn run, PackedMatrix<T>& out,
                   int nthreads) {
    const int nr = kern.gemm_nr;
    for_each_panel(kern, out, K, N, nthreads, [&](int k0, int j, int kc, int nc, T* panel) {
        for (int p = 0; p < kc;) {
            const std::pair<const T*, int> r = run(k0 + p);
            const int count = r.second < kc - p ? r.second : kc - p;
            kern.pack_b_panel(count, nc, r.first + j, ld, 1, panel + std::size_t(p) * nr);
            p += count;
        }
    });
}

}  // namespace rnnkit
