#include "layer/packed_weights.h"

#include <cstring>
#include <mutex>
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

// Fills the forward packs and biases of p (shape and form already set).
// Buffers of the right size are released and taken back through the block
// cache, so packing again into the same p needs no second copy of memory.
template <typename T>
void fill_packs(PackedRnn<T>& p, const T* w_ih, const T* w_hh, const T* b_ih, const T* b_hh, int nthreads) {
    const int H = p.H, I = p.I, GH = p.G * H;
    const bool rbl = !p.linear_before_reset;
    // Pack the transposes straight from PyTorch's rows: internal column n
    // of W^T is PyTorch row torch_row[n], and a panel inside one gate's run
    // of a unit block reads consecutive rows.
    std::vector<int> torch_row(GH);
    for (int g = 0; g < p.G; ++g)
        for (int u = 0; u < H; ++u) torch_row[p.layout.internal_row(g, u)] = g * H + u;
    pack_columns(*p.kern, I, GH, [&](int n) { return w_ih + std::size_t(torch_row[n]) * I; }, p.wih_t, nthreads);
    // Reset before linear: the first 2H internal columns (r, z) only, and
    // W_hn^T on its own, its columns in unit order.
    const int whh_cols = rbl ? 2 * H : GH;
    pack_columns(*p.kern, H, whh_cols, [&](int n) { return w_hh + std::size_t(torch_row[n]) * H; }, p.whh_t,
                 nthreads);
    if (rbl)
        pack_columns(*p.kern, H, H, [&](int n) { return w_hh + std::size_t(2 * H + n) * H; }, p.whn_t, nthreads);

    // Fold the biases that simply add into one vector; a GRU linear before
    // reset keeps b_hn apart because the reset gate multiplies it.
    const bool hn_apart = p.cell == CellKind::gru && !rbl;
    std::vector<T> bsum(GH, T(0));
    for (int r = 0; r < GH; ++r) {
        const bool n_gate_apart = hn_apart && r >= 2 * H;
        bsum[r] = (b_ih ? b_ih[r] : T(0)) + (b_hh && !n_gate_apart ? b_hh[r] : T(0));
    }
    p.bias.reset(GH);
    rows_to_internal(p.layout, 1, bsum.data(), p.bias.data());
    p.bias_hn.reset(H);
    for (int u = 0; u < H; ++u) p.bias_hn.data()[u] = (hn_apart && b_hh) ? b_hh[2 * H + u] : T(0);
}

}  // namespace

template <typename T>
std::shared_ptr<PackedRnn<T>> pack_rnn(CellKind cell, Isa isa, int I, int H, const T* w_ih, const T* w_hh,
                                       const T* b_ih, const T* b_hh, int nthreads, bool linear_before_reset) {
    auto p = std::make_shared<PackedRnn<T>>();
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
void PackedRnn<T>::pack_backward(int nthreads) const {
    std::lock_guard<std::mutex> lock(backward_pack_mutex());
    if (bwd_packed_) return;
    // The forward packs hold W^T (internal gate order); the transpose of
    // W_hh^T is the (GH x H) B operand of the backward step product.
    pack_transposed(*kern, whh_t, whh_n_, nthreads);
    if (!linear_before_reset) pack_transposed(*kern, whn_t, whn_n_, nthreads);
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

template struct PackedRnn<float>;
template struct PackedRnn<double>;
template std::shared_ptr<PackedRnn<float>> pack_rnn<float>(CellKind, Isa, int, int, const float*, const float*,
                                                           const float*, const float*, int, bool);
template std::shared_ptr<PackedRnn<double>> pack_rnn<double>(CellKind, Isa, int, int, const double*,
                                                             const double*, const double*, const double*, int, bool);
template void repack_rnn<float>(PackedRnn<float>&, const float*, const float*, const float*, const float*, int);
template void repack_rnn<double>(PackedRnn<double>&, const double*, const double*, const double*, const double*, int);
template void rows_to_torch_order_in_place<float>(const GateLayout&, int, float*, int);
template void rows_to_torch_order_in_place<double>(const GateLayout&, int, double*, int);

}  // namespace rnnkit
