#include "layer/packed_weights.h"

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstring>
#include <mutex>
#include <stdexcept>
#include <type_traits>
#include <vector>

#if defined(__unix__) || defined(__APPLE__)
#include <pthread.h>
#endif

#include "layer/block_cache.h"
#include "layer/threading.h"

namespace rnnkit {

namespace {

// One lock for the lazy backward packs of every PackedRnn (taken once per
// weight update, so never contended for long). A per-object lock held by
// another thread at a fork() would stay locked forever in the child; this
// one the forking thread takes first and both sides release after, with
// the block cache's lock: in the order a packing thread takes them (the
// pack allocates through the cache), so the fork cannot deadlock with it.
std::mutex& backward_pack_mutex() {
    static std::mutex* m = new std::mutex();   // never destroyed: see block_cache
    return *m;
}
#if defined(__unix__) || defined(__APPLE__)
void lock_for_fork() {
    backward_pack_mutex().lock();
    block_cache_fork_prepare();
}
void unlock_after_fork() {
    block_cache_fork_done();
    backward_pack_mutex().unlock();
}
[[maybe_unused]] const bool g_fork_handlers_registered =
    pthread_atfork(lock_for_fork, unlock_after_fork, unlock_after_fork) == 0;
#endif

// PyTorch-order rows -> internal-order rows (dense, row-major).
template <typename T>
void rows_to_internal(const GateLayout& lay, int cols, const T* torch_order, T* internal) {
    for (int g = 0; g < lay.G; ++g)
        for (int u = 0; u < lay.H; ++u) {
            const T* src = torch_order + std::size_t(g * lay.H + u) * cols;
            T* dst = internal + std::size_t(lay.internal_row(g, u)) * cols;
            for (int k = 0; k < cols; ++k) dst[k] = src[k];
        }
}

}  // namespace

template <typename T>
void rows_to_torch_order_in_place(const GateLayout& lay, int cols, T* m, int nthreads) {
    const int rows = lay.G * lay.H;
    // Torch row r takes internal row src[r]. Following each cycle of that
    // permutation moves every row once, with one row of scratch: no second
    // weight-sized buffer (the weight gradients are computed in place).
    std::vector<int> src(rows);
    for (int r = 0; r < rows; ++r) src[r] = lay.internal_row(r / lay.H, r % lay.H);
    // Threads take column ranges: the same cycles, disjoint bytes.
    const bool big = std::size_t(rows) * cols > (std::size_t(1) << 16);
    parallel_region(big ? nthreads : 1, [&](int tid, int nth) {
        int c0, c1;
        split_range(cols, tid, nth, c0, c1);
        if (c0 >= c1) return;
        const std::size_t bytes = std::size_t(c1 - c0) * sizeof(T);
        std::vector<T> held(c1 - c0);
        std::vector<char> moved(rows, 0);
        auto row = [&](int r) { return m + std::size_t(r) * cols + c0; };
        for (int start = 0; start < rows; ++start) {
            if (moved[start] || src[start] == start) continue;
            std::memcpy(held.data(), row(start), bytes);
            int r = start;
            for (;;) {
                moved[r] = 1;
                const int from = src[r];
                if (from == start) {
                    std::memcpy(row(r), held.data(), bytes);
                    break;
                }
                std::memcpy(row(r), row(from), bytes);
                r = from;
            }
        }
    });
}

namespace {

// PyTorch row of each internal gate row (column of the packed transposes).
template <typename T>
std::vector<int> torch_rows(const PackedRnn<T>& p) {
    std::vector<int> torch_row(std::size_t(p.G) * p.H);
    for (int g = 0; g < p.G; ++g)
        for (int u = 0; u < p.H; ++u) torch_row[p.layout.internal_row(g, u)] = g * p.H + u;
    return torch_row;
}

// A bias as given (PyTorch order), or nothing for one left out.
template <typename T>
void keep_bias(AlignedBuffer<T>& kept, const T* given, int n) {
    kept.reset(given ? std::size_t(n) : 0);
    if (given) std::memcpy(kept.data(), given, std::size_t(n) * sizeof(T));
}

// Fills the forward packs and biases of p (shape and form already set).
// Buffers of the right size are released and taken back through the block
// cache, so packing again into the same p needs no second copy of memory.
template <typename T>
void fill_packs(PackedRnn<T>& p, const T* w_ih, const T* w_hh, const T* b_ih, const T* b_hh, int nthreads) {
    const int H = p.H, I = p.I, GH = p.G * H;
    const bool lbr = p.linear_before_reset;
    // Pack the transposes straight from PyTorch's rows: internal column n
    // of W^T is PyTorch row torch_row[n], and a panel inside one gate's run
    // of a unit block reads consecutive rows.
    const std::vector<int> torch_row = torch_rows(p);
    auto ih_col = [&](int n) { return w_ih + std::size_t(torch_row[n]) * I; };
    auto hh_col = [&](int n) { return w_hh + std::size_t(torch_row[n]) * H; };
    auto hn_col = [&](int n) { return w_hh + std::size_t(2 * H + n) * H; };
    // Reset before linear: the first 2H internal columns (r, z) only, and
    // W_hn^T on its own, its columns in unit order.
    const int whh_cols = lbr ? GH : 2 * H;
    if constexpr (std::is_same_v<T, float>) {
        if (p.products != Precision::full) {
            pack_lowp_columns(*p.kset, p.products, I, GH, ih_col, p.wih_lp, nthreads);
            pack_lowp_columns(*p.kset, p.products, H, whh_cols, hh_col, p.whh_lp, nthreads);
            if (!lbr) pack_lowp_columns(*p.kset, p.products, H, H, hn_col, p.whn_lp, nthreads);
        }
    }
    if (p.products == Precision::full) {
        pack_columns(*p.kern, I, GH, ih_col, p.wih_t, nthreads);
        pack_columns(*p.kern, H, whh_cols, hh_col, p.whh_t, nthreads);
        if (!lbr) pack_columns(*p.kern, H, H, hn_col, p.whn_t, nthreads);
    }

    // Fold the biases that simply add into one vector; a GRU linear before
    // reset keeps b_hn apart because the reset gate multiplies it.
    const bool hn_apart = p.cell == CellKind::gru && lbr;
    std::vector<T> bsum(GH, T(0));
    for (int r = 0; r < GH; ++r) {
        const bool n_gate_apart = hn_apart && r >= 2 * H;
        bsum[r] = (b_ih ? b_ih[r] : T(0)) + (b_hh && !n_gate_apart ? b_hh[r] : T(0));
    }
    p.bias.reset(GH);
    rows_to_internal(p.layout, 1, bsum.data(), p.bias.data());
    p.bias_hn.reset(H);
    for (int u = 0; u < H; ++u) p.bias_hn.data()[u] = (hn_apart && b_hh) ? b_hh[2 * H + u] : T(0);
    keep_bias(p.b_ih_given, b_ih, GH);
    keep_bias(p.b_hh_given, b_hh, GH);
}

// Calls fn(k0, kc, j, nc, panel) for each panel of m: panel row p holds
// values (k0 + p, j .. j + nc - 1), then zero padding up to m.nr. The
// pack's own nr and kc, so a pack of any ISA is read right.
template <typename T, typename Fn>
void walk_panels(const PackedMatrix<T>& m, Fn fn) {
    for (int k0 = 0; k0 < m.K; k0 += m.kc) {
        const int kc = std::min(m.kc, m.K - k0);
        for (int j = 0; j < m.N; j += m.nr) fn(k0, kc, j, std::min(m.nr, m.N - j), m.panel(k0, j));
    }
}

// Writes packed matrix m (K x N) back as rows: column n of m is the K
// contiguous values at column(n).
template <typename T, typename ColumnFn>
void unpack_columns(const PackedMatrix<T>& m, ColumnFn column) {
    // A few panel rows at a time: they stay in L1 while each column takes
    // a few cache lines' worth of values.
    constexpr int kRows = 32;
    walk_panels(m, [&](int k0, int kc, int j, int nc, const T* panel) {
        for (int q0 = 0; q0 < kc; q0 += kRows) {
            const int q1 = std::min(kc, q0 + kRows);
            for (int jj = 0; jj < nc; ++jj) {
                T* dst = column(j + jj) + k0;
                for (int q = q0; q < q1; ++q) dst[q] = panel[std::size_t(q) * m.nr + jj];
            }
        }
    });
}

// Same bits: floats compared as the integers of their size, so -0.0 is
// not +0.0 and NaNs are equal only with the same payload.
template <typename T>
using Bits = std::conditional_t<sizeof(T) == 4, std::uint32_t, std::uint64_t>;

template <typename T>
Bits<T> bits_of(T v) {
    Bits<T> b;
    std::memcpy(&b, &v, sizeof b);
    return b;
}

constexpr int kMatchRows = 64;

// Whether one panel of m, packed by kern, holds bit for bit the columns at
// column(n). A panel whose columns lie at a constant stride (all but those
// around a gate-block edge) is packed from the caller's arrays as packing
// did, kMatchRows rows at a time into scratch that stays in L1, and
// compared as bytes (the zero padding alike): as fast as the kernel's
// packer, and nothing written to memory the size of the weights. Others
// are compared value by value.
template <typename T, typename ColumnFn>
bool panel_matches(const Kernels<T>& kern, const PackedMatrix<T>& m, ColumnFn& column, int k0, int kc, int j,
                   int nc, T* scratch, int chunk) {
    const T* panel = m.panel(k0, j);
    const T* first = column(j);
    const std::ptrdiff_t stride = nc > 1 ? column(j + 1) - first : 0;
    bool strided = kern.gemm_nr == m.nr;
    for (int jj = 2; jj < nc && strided; ++jj) strided = column(j + jj) == first + jj * stride;
    if (strided) {
        for (int q = 0; q < kc; q += chunk) {
            const int rows = std::min(chunk, kc - q);
            kern.pack_b_panel(rows, nc, first + k0 + q, 1, stride, scratch);
            if (std::memcmp(scratch, panel + std::size_t(q) * m.nr, std::size_t(rows) * m.nr * sizeof(T))) return false;
        }
        return true;
    }
    Bits<T> diff = 0;
    for (int q = 0; q < kc; ++q)
        for (int jj = 0; jj < nc; ++jj)
            diff |= bits_of(panel[std::size_t(q) * m.nr + jj]) ^ bits_of(column(j + jj)[k0 + q]);
    return diff == 0;
}

// Whether packed matrix m (K x N) holds the columns at column(n). Panels
// are shared out over threads as packing shares them; every thread stops
// once any has found a difference.
template <typename T, typename ColumnFn>
bool columns_match(const Kernels<T>& kern, const PackedMatrix<T>& m, ColumnFn column, int nthreads) {
    const int panels = (m.N + m.nr - 1) / m.nr, kblocks = (m.K + m.kc - 1) / m.kc;
    const int chunk = std::min(kMatchRows, std::min(m.kc, m.K));
    const bool big = std::size_t(m.K) * m.N > (std::size_t(1) << 16);
    const int team = big ? std::max(1, nthreads) : 1;
    // Allocated here: nothing may throw inside the parallel region.
    std::vector<T> scratch(std::size_t(team) * chunk * m.nr);
    std::atomic<bool> same{true};
    parallel_region(team, [&](int tid, int nth) {
        int lo, hi;
        split_range(kblocks * panels, tid, nth, lo, hi);
        T* mine = scratch.data() + std::size_t(tid) * chunk * m.nr;
        for (int item = lo; item < hi && same.load(std::memory_order_relaxed); ++item) {
            const int k0 = (item / panels) * m.kc, j = (item % panels) * m.nr;
            if (!panel_matches(kern, m, column, k0, std::min(m.kc, m.K - k0), j, std::min(m.nr, m.N - j), mine,
                               chunk))
                same.store(false, std::memory_order_relaxed);
        }
    });
    return same.load();
}

// A kept bias (empty: left out, zeros) against a given one (nullptr: zeros).
template <typename T>
bool bias_matches(const AlignedBuffer<T>& kept, const T* given, int n) {
    if (kept.size() && given) return std::memcmp(kept.data(), given, std::size_t(n) * sizeof(T)) == 0;
    const T* only = kept.size() ? kept.data() : given;
    for (int r = 0; only && r < n; ++r)
        if (bits_of(only[r]) != 0) return false;
    return true;
}

}  // namespace

template <typename T>
std::shared_ptr<PackedRnn<T>> pack_rnn(CellKind cell, Isa isa, int I, int H, const T* w_ih, const T* w_hh,
                                       const T* b_ih, const T* b_hh, int nthreads, bool linear_before_reset,
                                       Precision products) {
    if (!std::is_same_v<T, float> && products != Precision::full)
        throw std::invalid_argument("bfloat16 and int8 products take float32 weights");
    auto p = std::make_shared<PackedRnn<T>>();
    p->products = products;
    p->kset = &kernels_for(isa);
    p->cell = cell;
    p->isa = isa;
    p->kern = &kernels_of<T>(kernels_for(isa));
    p->I = I;
    p->H = H;
    p->G = gate_count(cell);
    p->linear_before_reset = cell == CellKind::lstm || linear_before_reset;
    p->layout = GateLayout{H, p->G, !p->linear_before_reset};
    fill_packs(*p, w_ih, w_hh, b_ih, b_hh, nthreads);
    return p;
}

template <typename T>
void repack_rnn(PackedRnn<T>& p, const T* w_ih, const T* w_hh, const T* b_ih, const T* b_hh, int nthreads) {
    fill_packs(p, w_ih, w_hh, b_ih, b_hh, nthreads);
    // The backward packs are derived from the forward ones: packed again,
    // into the same buffers, when a backward pass next asks for them.
    std::lock_guard<std::mutex> lock(backward_pack_mutex());
    p.bwd_packed_ = false;
}

template <typename T>
void unpack_rnn(const PackedRnn<T>& p, T* w_ih, T* w_hh) {
    const int H = p.H, I = p.I;
    const std::vector<int> torch_row = torch_rows(p);
    if constexpr (std::is_same_v<T, float>) {
        if (p.products != Precision::full) {
            unpack_lowp_columns(p.wih_lp, [&](int n) { return w_ih + std::size_t(torch_row[n]) * I; });
            unpack_lowp_columns(p.whh_lp, [&](int n) { return w_hh + std::size_t(torch_row[n]) * H; });
            if (!p.linear_before_reset)
                unpack_lowp_columns(p.whn_lp, [&](int n) { return w_hh + std::size_t(2 * H + n) * H; });
            return;
        }
    }
    unpack_columns(p.wih_t, [&](int n) { return w_ih + std::size_t(torch_row[n]) * I; });
    // Reset before linear: whh_t holds the r, z columns; whn_t the n rows in unit order.
    unpack_columns(p.whh_t, [&](int n) { return w_hh + std::size_t(torch_row[n]) * H; });
    if (!p.linear_before_reset) unpack_columns(p.whn_t, [&](int n) { return w_hh + std::size_t(2 * H + n) * H; });
}

template <typename T>
bool rnn_matches(const PackedRnn<T>& p, const T* w_ih, const T* w_hh, const T* b_ih, const T* b_hh, int nthreads) {
    const int H = p.H, I = p.I, GH = p.G * H;
    // The biases first: the cheapest to read.
    if (!bias_matches(p.b_ih_given, b_ih, GH) || !bias_matches(p.b_hh_given, b_hh, GH)) return false;
    const std::vector<int> torch_row = torch_rows(p);
    if constexpr (std::is_same_v<T, float>) {
        if (p.products != Precision::full) {
            const KernelSet& ks = *p.kset;
            return lowp_columns_match(ks, p.wih_lp, [&](int n) { return w_ih + std::size_t(torch_row[n]) * I; },
                                      nthreads) &&
                   lowp_columns_match(ks, p.whh_lp, [&](int n) { return w_hh + std::size_t(torch_row[n]) * H; },
                                      nthreads) &&
                   (p.linear_before_reset ||
                    lowp_columns_match(ks, p.whn_lp, [&](int n) { return w_hh + std::size_t(2 * H + n) * H; },
                                       nthreads));
        }
    }
    const Kernels<T>& kern = *p.kern;
    if (!columns_match(kern, p.wih_t, [&](int n) { return w_ih + std::size_t(torch_row[n]) * I; }, nthreads))
        return false;
    if (!columns_match(kern, p.whh_t, [&](int n) { return w_hh + std::size_t(torch_row[n]) * H; }, nthreads))
        return false;
    return p.linear_before_reset ||
           columns_match(kern, p.whn_t, [&](int n) { return w_hh + std::size_t(2 * H + n) * H; }, nthreads);
}

template <typename T>
void PackedRnn<T>::pack_backward(int nthreads) const {
    std::lock_guard<std::mutex> lock(backward_pack_mutex());
    if (bwd_packed_) return;
    // The forward packs hold W^T (internal gate order); the transpose of
    // W_hh^T is the (GH x H) B operand of the backward step product.
    if (products == Precision::bf16) {
        // The very bf16 values the forward products used.
        transpose_lowp(*kset, whh_lp, whh_n_lp_, nthreads);
        if (!linear_before_reset) transpose_lowp(*kset, whn_lp, whn_n_lp_, nthreads);
    } else {
        pack_transposed(*kern, whh_t, whh_n_, nthreads);
        if (!linear_before_reset) pack_transposed(*kern, whn_t, whn_n_, nthreads);
    }
    bwd_packed_ = true;
}

template <typename T>
const PackedMatrix<T>& PackedRnn<T>::whh_for_backward(int nthreads) const {
    pack_backward(nthreads);
    return whh_n_;
}

template <typename T>
const PackedMatrix<T>& PackedRnn<T>::whn_for_backward(int nthreads) const {
    pack_backward(nthreads);
    return whn_n_;
}

template <typename T>
const LowpMatrix& PackedRnn<T>::whh_lp_for_backward(int nthreads) const {
    pack_backward(nthreads);
    return whh_n_lp_;
}

template <typename T>
const LowpMatrix& PackedRnn<T>::whn_lp_for_backward(int nthreads) const {
    pack_backward(nthreads);
    return whn_n_lp_;
}

template struct PackedRnn<float>;
template struct PackedRnn<double>;
template std::shared_ptr<PackedRnn<float>> pack_rnn<float>(CellKind, Isa, int, int, const float*, const float*,
                                                           const float*, const float*, int, bool, Precision);
template std::shared_ptr<PackedRnn<double>> pack_rnn<double>(CellKind, Isa, int, int, const double*,
                                                             const double*, const double*, const double*, int, bool,
                                                             Precision);
template void repack_rnn<float>(PackedRnn<float>&, const float*, const float*, const float*, const float*, int);
template void repack_rnn<double>(PackedRnn<double>&, const double*, const double*, const double*, const double*, int);
template void unpack_rnn<float>(const PackedRnn<float>&, float*, float*);
template void unpack_rnn<double>(const PackedRnn<double>&, double*, double*);
template bool rnn_matches<float>(const PackedRnn<float>&, const float*, const float*, const float*, const float*,
                                 int);
template bool rnn_matches<double>(const PackedRnn<double>&, const double*, const double*, const double*,
                                  const double*, int);
template void rows_to_torch_order_in_place<float>(const GateLayout&, int, float*, int);
template void rows_to_torch_order_in_place<double>(const GateLayout&, int, double*, int);

}  // namespace rnnkit
