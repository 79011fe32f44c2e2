// Backward through time of one layer direction: per step only the fused
// gate gradients and dh_{t-1} = dgates x W_hh (the cell's step,
// cell_step.h); the weight, input and bias gradients are each one large
// GEMM or reduction over all steps afterwards. The plan (layer_plan.h)
// decides threads and operand cuts; this file does.
#include <algorithm>
#include <cstring>
#include <stdexcept>
#include <type_traits>
#include <utility>
#include <vector>

#include "layer/cell_step.h"
#include "layer/gru_no_lbr.h"
#include "layer/layer_plan.h"
#include "layer/rnn.h"
#include "layer/rnn_common.h"
#include "layer/threading.h"

namespace rnnkit {

namespace {

// The backward products' weights of w, packed on first use.
template <typename T>
BackwardWeights<T> backward_weights(const PackedRnn<T>& w, int nthreads) {
    const bool n_apart = !w.linear_before_reset;
    if (w.products == Precision::bf16)
        return {nullptr, nullptr, &w.whh_lp_for_backward(nthreads), n_apart ? &w.whn_lp_for_backward(nthreads) : nullptr};
    return {&w.whh_for_backward(nthreads), n_apart ? &w.whn_for_backward(nthreads) : nullptr, nullptr, nullptr};
}

// The steps from the last to the first: dgx (N x GH) gets the input side's
// gate gradients of every row, dh0 and dc0 the initial states'.
template <typename T>
void backward_time_loop(const TrainingContext<T>& ctx, const BackwardArgs<T>& a, const BackwardPlan& plan, T* dgx) {
    const PackedRnn<T>& w = *ctx.weights;
    const int steps = ctx.steps, B = ctx.batch, H = w.H, GH = w.G * H;
    const std::size_t BH = std::size_t(B) * H;
    const bool lstm = w.cell == CellKind::lstm;
    const StepRows& rows = ctx.rows;
    // The recurrent side's gate gradients are kept for one step only (the
    // step's product reads them), where they differ from the input side's.
    AlignedBuffer<T> dgh_step(plan.same_sides ? 0 : BH * w.G);
    // Running dh (recurrent part) and dc. A step updates the rows of the
    // sequences running at it; a row it leaves alone holds the gradient of
    // that sequence's final state (before its last step, forward) or of its
    // initial state (after its first step, reverse), both what it needs.
    AlignedBuffer<T> dh(BH), dc(lstm ? BH : 0);
    copy_or_zero(dh.data(), a.dh_n, BH);
    if (lstm) copy_or_zero(dc.data(), a.dc_n, BH);

    const BackwardWeights<T> bw = backward_weights(w, plan.threads.other);
    const BackwardStepFn<T> step = backward_step_of(w);
    const int nblocks = w.layout.blocks(), npanels = (H + bw.nr() - 1) / bw.nr();
    const std::size_t scratch_per_thread = w.linear_before_reset ? 0 : std::size_t(B) * kUnitBlock;
    AlignedBuffer<T> scratch(scratch_per_thread * plan.threads.loop);
    // bf16 products: each loop thread's converted gate gradients.
    std::vector<LowpRows> lowp_rows(w.products == Precision::full ? 0 : plan.threads.loop);
    for (LowpRows& r : lowp_rows) r.reserve(*w.kset, w.products, B, GH);

    parallel_region(plan.threads.loop, [&](int tid, int nth) {
        int jb, je, pb, pe;
        split_range(nblocks, tid, nth, jb, je);
        split_range(npanels, tid, nth, pb, pe);
        for (int s = steps - 1; s >= 0; --s) {
            const int t = ctx.reverse ? steps - 1 - s : s;
            const std::size_t r0 = rows.start(t);
            T* dgx_t = dgx + r0 * GH;
            const BackwardStep<T> op{rows.rows(t), ctx.gates.data() + r0 * kWorkspaceSlots * H,
                                     ctx.h.data() + ctx.in_row(t) * H,
                                     lstm ? ctx.c.data() + ctx.in_row(t) * H : nullptr,
                                     lstm ? ctx.c.data() + ctx.out_row(t) * H : nullptr,
                                     a.dy ? a.dy + r0 * H : nullptr, dh.data(), dc.data(), dgx_t,
                                     plan.same_sides ? dgx_t : dgh_step.data(), s % 2 == 1,
                                     lowp_rows.empty() ? nullptr : &lowp_rows[tid]};
            step(w, bw, op, scratch.data() + scratch_per_thread * tid, jb, je, pb, pe, nth);
        }
    });
    std::memcpy(a.dh0, dh.data(), BH * sizeof(T));
    if (lstm) std::memcpy(a.dc0, dc.data(), BH * sizeof(T));
}

// Bias gradients: column sums of dg (rows x GH), columns split over
// threads, in PyTorch's order.
template <typename T>
void bias_gradient(const PackedRnn<T>& w, int rows, const T* dg, T* out, int nthreads) {
    const int GH = w.G * w.H;
    std::memset(out, 0, std::size_t(GH) * sizeof(T));
    const int col_chunks = (GH + 63) / 64;
    parallel_region(double(rows) * GH > 65536.0 ? nthreads : 1, [&](int tid, int nth) {
        int lo, hi;
        split_range(col_chunks, tid, nth, lo, hi);
        const int j0 = lo * 64, j1 = std::min(GH, hi * 64);
        if (j0 < j1) w.kern->column_sums(rows, j1 - j0, dg + j0, GH, out + j0);
    });
    rows_to_torch_order_in_place(w.layout, 1, out);
}

// GRU linear before reset: dgx turned, in place, into the recurrent side's
// gate gradients (the n gate's times r).
template <typename T>
void recurrent_side_in_place(const TrainingContext<T>& ctx, int rows, T* dgx, int nthreads) {
    const PackedRnn<T>& w = *ctx.weights;
    const int H = w.H, GH = w.G * H;
    parallel_region(double(rows) * H > 65536.0 ? nthreads : 1, [&](int tid, int nth) {
        int jb, je;
        split_range(w.layout.blocks(), tid, nth, jb, je);
        for (int j = jb; j < je; ++j) {
            const int u0 = w.layout.block_start(j);
            w.kern->gru_dgh_from_dgx(rows, w.layout.block_units(j), ctx.gates.data() + kWorkspaceSlots * u0,
                                     std::ptrdiff_t(kWorkspaceSlots) * H, dgx + w.G * u0, GH);
        }
    });
}

// Calls part(k0, kc, accumulate) for the rows [k0, k0 + kc) of `rows`, cut
// every `step` rows (see BackwardPlan::operand_rows_x).
template <typename Part>
void by_operand_parts(int rows, int step, Part part) {
    for (int k0 = 0; k0 < rows; k0 += step) part(k0, std::min(step, rows - k0), k0 > 0);
}

// bf16 products (design: Precisions): the products after the time loop
// take bf16 operands with float32 sums as the steps' do, each C element
// one sum in k order whatever the thread count (lowp_gemm.h).

// Converted rows of dx's left operand alive at a time (bytes).
constexpr std::size_t kLowpOperandBytes = std::size_t(8) << 20;

// dx = dgx x W_ih, dW_ih = dgx^T x X (internal row order).
void lowp_input_gradients(const TrainingContext<float>& ctx, const float* dgx, const BackwardArgs<float>& a,
                          int nthreads) {
    const PackedRnn<float>& w = *ctx.weights;
    const KernelSet& ks = *w.kset;
    const int I = w.I, GH = w.G * w.H, rows = int(ctx.rows.total());
    // W_ih (GH x I) transposed from the forward pack for this call only:
    // used once per pass, as the float path does.
    LowpMatrix wih;
    transpose_lowp(ks, w.wih_lp, wih, nthreads);
    LowpRows converted;
    const int part = int(std::max<std::size_t>(1, kLowpOperandBytes / (std::size_t(wih.Kp) * 2)));
    for (int r0 = 0; r0 < rows; r0 += part)
        lowp_gemm_parallel(ks, std::min(part, rows - r0), dgx + std::size_t(r0) * GH, GH, wih,
                           a.dx + std::size_t(r0) * I, I, false, converted, nthreads);
    std::vector<const float*> x_rows(rows);
    for (int k = 0; k < rows; ++k) x_rows[k] = ctx.x + std::size_t(k) * I;
    lowp_gemm_transposed_a(ks, GH, I, rows, dgx, GH, x_rows.data(), a.dw_ih, I, false, nthreads);
}

// dW_hh = dgh^T x H_prev (internal row order); GRU reset before linear:
// its n rows times r * h_prev instead.
void lowp_recurrent_weight_gradient(const TrainingContext<float>& ctx, const BackwardPlan& plan, const float* dgh,
                                    float* dw_hh, int nthreads) {
    const PackedRnn<float>& w = *ctx.weights;
    const KernelSet& ks = *w.kset;
    const int H = w.H, GH = w.G * H, rows = int(ctx.rows.total());
    // The state entering each packed row's step (see recurrent_weight_gradient).
    std::vector<const float*> h_rows(rows);
    const StepRows& step_rows = ctx.rows;
    if (plan.h_contiguous) {
        const float* h_entering = ctx.h.data() + ctx.in_row(0) * H;
        for (int k = 0; k < rows; ++k) h_rows[k] = h_entering + std::size_t(k) * H;
    } else {
        for (int t = 0; t < ctx.steps; ++t)
            for (int b = 0; b < step_rows.rows(t); ++b)
                h_rows[step_rows.start(t) + b] = ctx.h.data() + (ctx.in_row(t) + b) * H;
    }
    if (w.linear_before_reset) {
        lowp_gemm_transposed_a(ks, GH, H, rows, dgh, GH, h_rows.data(), dw_hh, H, false, nthreads);
        return;
    }
    lowp_gemm_transposed_a(ks, 2 * H, H, rows, dgh, GH, h_rows.data(), dw_hh, H, false, nthreads);
    for (int k = 0; k < rows; ++k) h_rows[k] = ctx.rh.data() + std::size_t(k) * H;
    lowp_gemm_transposed_a(ks, H, H, rows, dgh + 2 * H, GH, h_rows.data(), dw_hh + std::size_t(2) * H * H, H,
                           false, nthreads);
}

// dW_hh = dgh^T x H_prev over every packed row. The states entering the
// steps are contiguous rows of the context (reverse, or every step of B
// rows); otherwise step t's are the first rows(t) of out(t-1), packed in runs.
template <typename T>
void recurrent_weight_gradient(const TrainingContext<T>& ctx, const BackwardPlan& plan, const T* dgh, T* dw_hh,
                               PackedMatrix<T>& operand) {
    const PackedRnn<T>& w = *ctx.weights;
    const int H = w.H, GH = w.G * H, rows = int(ctx.rows.total()), nthreads = plan.threads.other;
    if constexpr (std::is_same_v<T, float>) {
        if (w.products != Precision::full) {
            lowp_recurrent_weight_gradient(ctx, plan, dgh, dw_hh, nthreads);
            rows_to_torch_order_in_place(w.layout, H, dw_hh, nthreads);
            return;
        }
    }
    const StepRows& step_rows = ctx.rows;
    const T* h_entering = ctx.h.data() + ctx.in_row(0) * H;
    auto h_run = [&](int k) -> std::pair<const T*, int> {
        if (plan.h_contiguous) return {h_entering + std::size_t(k) * H, rows - k};
        const int t = step_rows.step_of(std::size_t(k));
        const int b = int(std::size_t(k) - step_rows.start(t));
        return {ctx.h.data() + (ctx.in_row(t) + b) * H, step_rows.rows(t) - b};
    };
    PackedMatrix<T> rh_packed;
    by_operand_parts(rows, plan.operand_rows_h, [&](int k0, int kc, bool acc) {
        pack_row_runs(*w.kern, kc, H, H, [&](int k) { return h_run(k0 + k); }, operand, nthreads);
        const T* dg = dgh + std::size_t(k0) * GH;
        if (!w.linear_before_reset)
            gru_no_lbr_grad_whh(w, kc, dg, operand, ctx.rh.data() + std::size_t(k0) * H, dw_hh, acc, rh_packed,
                                nthreads);
        else gemm_parallel(*w.kern, GH, dg, 1, GH, operand, dw_hh, H, acc, nthreads);
    });
    rows_to_torch_order_in_place(w.layout, H, dw_hh, nthreads);
}

// dx and dW_ih (internal row order) in the products' precision.
template <typename T>
void input_gradients(const TrainingContext<T>& ctx, const BackwardPlan& plan, const T* dgx,
                     const BackwardArgs<T>& a, PackedMatrix<T>& operand, int nthreads) {
    const PackedRnn<T>& w = *ctx.weights;
    if constexpr (std::is_same_v<T, float>) {
        if (w.products != Precision::full) return lowp_input_gradients(ctx, dgx, a, nthreads);
    }
    const int I = w.I, GH = w.G * w.H, rows = int(ctx.rows.total());
    // dx = dgx x W_ih over all steps at once, W_ih transposed from the
    // forward pack a slice at a time.
    gemm_parallel_transposed_b(*w.kern, rows, dgx, GH, w.wih_t, a.dx, I, nthreads);
    // dW_ih = dgx^T x X.
    by_operand_parts(rows, plan.operand_rows_x, [&](int k0, int kc, bool acc) {
        pack_matrix(*w.kern, kc, I, ctx.x + std::size_t(k0) * I, I, 1, operand, nthreads);
        gemm_parallel(*w.kern, GH, dgx + std::size_t(k0) * GH, 1, GH, operand, a.dw_ih, I, acc, nthreads);
    });
}

}  // namespace

template <typename T>
void layer_backward(const TrainingContext<T>& ctx, const BackwardArgs<T>& a, int nthreads) {
    const PackedRnn<T>& w = *ctx.weights;
    if (w.products == Precision::int8)
        throw std::invalid_argument("layer_backward: weights with int8 products are for inference only");
    const int steps = ctx.steps, I = w.I, GH = w.G * w.H;
    const int rows = int(ctx.rows.total());
    const LayerShape shape = layer_shape(w);
    const BackwardPlan plan = plan_backward(shape, ctx.rows, ctx.reverse,
                                            thread_plan(shape, (rows + steps - 1) / steps, steps, nthreads));
    nthreads = plan.threads.other;
    // Gate gradients of every step, by packed row. The GRU's recurrent side
    // sees a different n-gate gradient (times r) when linear before reset;
    // the sides of the LSTM and of the GRU reset before linear are identical.
    AlignedBuffer<T> dgx(std::size_t(rows) * GH);
    backward_time_loop(ctx, a, plan, dgx.data());

    // Weight and bias gradients are computed in internal row order straight
    // into the outputs, then reordered in place.
    PackedMatrix<T> operand;
    input_gradients(ctx, plan, dgx.data(), a, operand, nthreads);
    rows_to_torch_order_in_place(w.layout, I, a.dw_ih, nthreads);
    bias_gradient(w, rows, dgx.data(), a.db_ih, nthreads);
    // From here on dgx holds the recurrent side's gradients.
    if (!plan.same_sides) recurrent_side_in_place(ctx, rows, dgx.data(), nthreads);
    recurrent_weight_gradient(ctx, plan, dgx.data(), a.dw_hh, operand);
    // The LSTM's two biases enter the same sum, and so do the GRU's reset
    // before linear: their gradients are equal.
    if (plan.same_sides) std::memcpy(a.db_hh, a.db_ih, std::size_t(GH) * sizeof(T));
    else bias_gradient(w, rows, dgx.data(), a.db_hh, nthreads);
}

template void layer_backward<float>(const TrainingContext<float>&, const BackwardArgs<float>&, int);
template void layer_backward<double>(const TrainingContext<double>&, const BackwardArgs<double>&, int);

}  // namespace rnnkit
