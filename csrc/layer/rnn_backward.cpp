// Backward through time: per step only the fused gate gradients and
// dh_{t-1} = dgates x W_hh; the weight, input and bias gradients are each one
// large GEMM or reduction over all steps afterwards.
#include <algorithm>
#include <cstring>

#include "layer/gru_rbl.h"
#include "layer/rnn.h"
#include "layer/rnn_common.h"
#include "layer/threading.h"

namespace rnnkit {

// Values of the weight gradients' right-hand operand packed at once (2 MiB
// of float32); see by_k_blocks.
constexpr std::size_t kOperandChunkElems = std::size_t(1) << 19;

template <typename T>
void rnn_backward(const TrainingContext<T>& ctx, const BackwardArgs<T>& a, int nthreads) {
    const PackedRnn<T>& w = *ctx.weights;
    const Kernels<T>& kern = *w.kern;
    const int steps = ctx.steps, B = ctx.batch, I = w.I, H = w.H, G = w.G, GH = G * H;
    const std::size_t BH = std::size_t(B) * H;
    const bool lstm = w.cell == CellKind::lstm;
    const bool rbl = !w.linear_before_reset;
    const std::ptrdiff_t ld_ws = std::ptrdiff_t(kWorkspaceSlots) * H;
    const StepRows& step_rows = ctx.rows;
    const std::size_t N = step_rows.total();

    // Gate gradients of every step, by packed row. The GRU's recurrent side
    // sees a different n-gate gradient (times r) when linear before reset;
    // the sides of the LSTM and of the GRU reset before linear are identical.
    // The recurrent side's are kept for one step only (the step's product
    // reads them); after the loop dgx is turned into them in place.
    const bool same_sides = lstm || rbl;
    AlignedBuffer<T> dgx(N * GH), dgh_step(same_sides ? 0 : BH * G);
    // Running dh (recurrent part) and dc. A step updates the rows of the
    // sequences running at it; a row it leaves alone holds the gradient of
    // that sequence's final state (before its last step, forward) or of its
    // initial state (after its first step, reverse), both what it needs.
    AlignedBuffer<T> dh(BH), dc(lstm ? BH : 0);
    copy_or_zero(dh.data(), a.dh_n, BH);
    if (lstm) copy_or_zero(dc.data(), a.dc_n, BH);

    const ThreadPlan plan = thread_plan(w, int((N + steps - 1) / steps), steps, nthreads);
    const int loop_threads = plan.loop;
    nthreads = plan.other;
    const PackedMatrix<T>& whh = w.whh_for_backward(nthreads);
    const int nblocks = w.layout.blocks();
    const int npanels = (H + whh.nr - 1) / whh.nr;
    const PackedMatrix<T>* whn = rbl ? &w.whn_for_backward(nthreads) : nullptr;
    AlignedBuffer<T> rbl_scratch(rbl ? std::size_t(B) * kUnitBlock * loop_threads : 0);

    parallel_region(loop_threads, [&](int tid, int nth) {
        int jb, je, pb, pe;
        split_range(nblocks, tid, nth, jb, je);
        split_range(npanels, tid, nth, pb, pe);
        for (int s = steps - 1; s >= 0; --s) {
            const int t = ctx.reverse ? steps - 1 - s : s;
            const int m = step_rows.rows(t);
            const std::size_t r0 = step_rows.start(t);
            const T* ws = ctx.gates.data() + r0 * ld_ws;
            const T* dy = a.dy ? a.dy + r0 * H : nullptr;
            T* dgx_t = dgx.data() + r0 * GH;
            T* dgh_t = same_sides ? dgx_t : dgh_step.data();
            if (rbl) {
                const T* hp = ctx.h.data() + ctx.in_row(t) * H;
                gru_rbl_backward_step(w, whh, *whn, GruRblBackwardStep<T>{m, ws, hp, dy, dh.data(), dgx_t, s % 2 == 1},
                                      rbl_scratch.data() + std::size_t(B) * kUnitBlock * tid, jb, je, nth);
                continue;
            }
            for (int j = jb; j < je; ++j) {
                const int u0 = w.layout.block_start(j), units = w.layout.block_units(j);
                const T* wsb = ws + kWorkspaceSlots * u0;
                const T* dyb = dy ? dy + u0 : nullptr;
                if (lstm) {
                    LstmBwdArgs<T> b{m, units, wsb, ld_ws,
                                     ctx.c.data() + ctx.in_row(t) * H + u0, H,
                                     ctx.c.data() + ctx.out_row(t) * H + u0, H,
                                     dyb, H, dh.data() + u0, H, dc.data() + u0, H, dgx_t + G * u0, GH};
                    kern.lstm_postgemm_bwd(b);
                } else {
                    GruBwdArgs<T> b{m, units, wsb, ld_ws, ctx.h.data() + ctx.in_row(t) * H + u0, H,
                                    dyb, H, dh.data() + u0, H, dgx_t + G * u0, GH, dgh_t + G * u0, GH,
                                    dh.data() + u0, H};
                    kern.gru_postgemm_bwd(b);
                }
            }
            // The product below reads the gate gradients of every unit.
            region_barrier(nth);
            // dh_{t-1} = dgh_t x W_hh (GRU: added to the direct path dh * z).
            // Two panels at a time (the last three of an odd count, so a
            // single row never takes a panel alone), walked backwards on odd
            // steps (see walked).
            const int pairs = pe - pb == 1 ? 1 : (pe - pb) / 2;
            for (int k = 0; k < pairs; ++k) {
                const int q = walked(k, 0, pairs, s % 2);
                const int p0 = pb + 2 * q, p1 = q + 1 == pairs ? pe : p0 + 2;
                const int n0 = p0 * whh.nr, n1 = std::min(H, p1 * whh.nr);
                gemm_serial(kern, m, n0, n1, dgh_t, GH, 1, whh, dh.data() + n0, H, !lstm);
            }
            region_barrier(nth);
        }
    });
    std::memcpy(a.dh0, dh.data(), BH * sizeof(T));
    if (lstm) std::memcpy(a.dc0, dc.data(), BH * sizeof(T));

    const int rows = int(N);
    // dx = dgx x W_ih over all steps at once, W_ih transposed from the
    // forward pack a slice at a time.
    gemm_parallel_transposed_b(kern, rows, dgx.data(), GH, w.wih_t, a.dx, I, nthreads);

    // Weight and bias gradients are computed in internal row order straight
    // into the outputs, then reordered in place.
    // Bias gradients: column sums over all rows, columns split over threads.
    auto bias_grad = [&](const T* dg, T* out) {
        std::memset(out, 0, std::size_t(GH) * sizeof(T));
        const int col_chunks = (GH + 63) / 64;
        parallel_region(double(rows) * GH > 65536.0 ? nthreads : 1, [&](int tid, int nth) {
            int lo, hi;
            split_range(col_chunks, tid, nth, lo, hi);
            const int j0 = lo * 64, j1 = std::min(GH, hi * 64);
            if (j0 < j1) kern.column_sums(rows, j1 - j0, dg + j0, GH, out + j0);
        });
        rows_to_torch_order_in_place(w.layout, 1, out);
    };
    // dW_ih = dgx^T x X and dW_hh = dgh^T x H_prev, GEMMs whose depth is
    // every packed row. The right-hand operand is packed a few k blocks of
    // the GEMM (kern.gemm_kc rows each) at a time, each part's product added
    // on: the same sums in the same order as with all rows packed at once,
    // in a buffer of about kOperandChunkElems values (at least one k block)
    // instead of N rows. Narrow operands stay one part (few regions).
    PackedMatrix<T> operand;
    auto by_k_blocks = [&](int cols, auto block) {
        const int blocks = std::max<std::size_t>(1, kOperandChunkElems / (std::size_t(kern.gemm_kc) * cols));
        const int step = blocks >= (rows + kern.gemm_kc - 1) / kern.gemm_kc ? rows : blocks * kern.gemm_kc;
        for (int k0 = 0; k0 < rows; k0 += step) block(k0, std::min(step, rows - k0), k0 > 0);
    };
    by_k_blocks(I, [&](int k0, int kc, bool acc) {
        pack_matrix(kern, kc, I, ctx.x + std::size_t(k0) * I, I, 1, operand, nthreads);
        gemm_parallel(kern, GH, dgx.data() + std::size_t(k0) * GH, 1, GH, operand, a.dw_ih, I, acc, nthreads);
    });
    rows_to_torch_order_in_place(w.layout, I, a.dw_ih, nthreads);
    bias_grad(dgx.data(), a.db_ih);
    // From here on dgx holds the recurrent side's gradients.
    if (!same_sides) {
        parallel_region(double(rows) * H > 65536.0 ? nthreads : 1, [&](int tid, int nth) {
            int jb, je;
            split_range(w.layout.blocks(), tid, nth, jb, je);
            for (int j = jb; j < je; ++j) {
                const int u0 = w.layout.block_start(j);
                kern.gru_dgh_from_dgx(rows, w.layout.block_units(j), ctx.gates.data() + kWorkspaceSlots * u0, ld_ws,
                                      dgx.data() + G * u0, GH);
            }
        });
    }
    const T* dgh = dgx.data();
    // The states entering the steps are contiguous rows of the context
    // (reverse, or every step of B rows); otherwise step t's are the first
    // rows(t) of out(t-1), packed in runs.
    const bool contiguous = ctx.reverse || step_rows.uniform;
    const T* h_entering = ctx.h.data() + ctx.in_row(0) * H;
    auto h_run = [&](int k) -> std::pair<const T*, int> {
        if (contiguous) return {h_entering + std::size_t(k) * H, rows - k};
        const int t = step_rows.step_of(std::size_t(k));
        const int b = int(std::size_t(k) - step_rows.start(t));
        return {ctx.h.data() + (ctx.in_row(t) + b) * H, step_rows.rows(t) - b};
    };
    PackedMatrix<T> rh_packed;
    by_k_blocks(H, [&](int k0, int kc, bool acc) {
        pack_row_runs(kern, kc, H, H, [&](int k) { return h_run(k0 + k); }, operand, nthreads);
        const T* dg = dgh + std::size_t(k0) * GH;
        if (rbl) gru_rbl_grad_whh(w, kc, dg, operand, ctx.rh.data() + std::size_t(k0) * H, a.dw_hh, acc, rh_packed,
                                  nthreads);
        else gemm_parallel(kern, GH, dg, 1, GH, operand, a.dw_hh, H, acc, nthreads);
    });
    rows_to_torch_order_in_place(w.layout, H, a.dw_hh, nthreads);

    // The LSTM's two biases enter the same sum, and so do the GRU's reset
    // before linear: their gradients are equal.
    if (same_sides) std::memcpy(a.db_hh, a.db_ih, std::size_t(GH) * sizeof(T));
    else bias_grad(dgh, a.db_hh);
}

template void rnn_backward<float>(const TrainingContext<float>&, const BackwardArgs<float>&, int);
template void rnn_backward<double>(const TrainingContext<double>&, const BackwardArgs<double>&, int);

}  // namespace rnnkit
