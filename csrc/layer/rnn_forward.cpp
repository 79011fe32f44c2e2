// Forward time loop: the input projection of many steps as one GEMM, then per
// step one recurrent GEMM and the fused gate math per block of hidden units.
#include <algorithm>
#include <cstring>

#include "layer/gru_rbl.h"
#include "layer/rnn.h"
#include "layer/rnn_common.h"
#include "layer/threading.h"

namespace rnnkit {

namespace {

// Input projections computed ahead of the recurrence at a time (elements):
// about a core's L2, so each step reads its projections from there rather
// than from L3 or memory, and inference memory does not grow with T.
constexpr std::size_t kProjectionChunkElems = std::size_t(1) << 18;
// ...but at least this many rows per projection GEMM, so its weight panels
// are reused by enough rows to run at full speed.
constexpr std::size_t kProjectionMinRows = 256;

}  // namespace

template <typename T>
void rnn_forward(const PackedRnn<T>& w, const ForwardArgs<T>& a, TrainingContext<T>* ctx, int nthreads) {
    const Kernels<T>& kern = *w.kern;
    const int steps = a.steps, B = a.batch, I = w.I, H = w.H, G = w.G, GH = G * H;
    const std::size_t BH = std::size_t(B) * H;
    const bool lstm = w.cell == CellKind::lstm;
    const bool rbl = !w.linear_before_reset;
    const bool training = ctx != nullptr;
    const std::ptrdiff_t ld_ws = std::ptrdiff_t(kWorkspaceSlots) * H;

    // Rows of each step; x, y and the workspace hold N packed rows.
    StepRows local_rows;
    StepRows& step_rows = training ? ctx->rows : local_rows;
    step_rows.init(steps, B, a.batch_sizes);
    const std::size_t N = step_rows.total();

    // Initial states: in training they live in the context's state rows.
    const T* h_init = a.h0;
    const T* c_init = a.c0;
    AlignedBuffer<T> zeros;
    if (training) {
        ctx->steps = steps;
        ctx->batch = B;
        ctx->reverse = a.reverse;
        ctx->x.reset(N * I);
        std::memcpy(ctx->x.data(), a.x, ctx->x.size() * sizeof(T));
        ctx->gates.reset(N * ld_ws);
        // Forward: one block before out(0). Reverse: in each in(t), the rows
        // of the sequences that start at t (all of in(T-1)).
        auto place_initial = [&](T* store, const T* init) {
            if (!a.reverse) return copy_or_zero(store, init, BH);
            for (int t = 0; t < steps; ++t) {
                const int b0 = t + 1 < steps ? step_rows.rows(t + 1) : 0, b1 = step_rows.rows(t);
                if (b1 > b0)
                    copy_or_zero(store + (ctx->in_row(t) + b0) * H, init ? init + std::size_t(b0) * H : nullptr,
                                 std::size_t(b1 - b0) * H);
            }
        };
        ctx->h.reset(BH + N * H);
        place_initial(ctx->h.data(), a.h0);
        if (lstm) {
            ctx->c.reset(BH + N * H);
            place_initial(ctx->c.data(), a.c0);
        }
    } else if (!h_init || (lstm && !c_init)) {
        zeros.reset(BH);
        zeros.fill_zero();
        if (!h_init) h_init = zeros.data();
        if (!c_init) c_init = zeros.data();
    }
    // Inference keeps only two cell states, alternating between steps.
    // Reverse with a batch that grows step by step: two h buffers as well,
    // both starting as h0 (c0), so a sequence that starts at step t finds its
    // initial state in the rows it reads (earlier steps wrote fewer rows);
    // y gets a copy of each step's rows.
    const bool state_pingpong = !training && a.reverse && !step_rows.uniform;
    AlignedBuffer<T> c_pingpong, h_pingpong;
    if (lstm && !training) c_pingpong.reset(2 * BH);
    if (state_pingpong) {
        h_pingpong.reset(2 * BH);
        for (int k = 0; k < 2; ++k) {
            std::memcpy(h_pingpong.data() + k * BH, h_init, BH * sizeof(T));
            if (lstm) std::memcpy(c_pingpong.data() + k * BH, c_init, BH * sizeof(T));
        }
    }
    // GRU reset before linear: r * h_prev, kept for every step in training
    // (dW_hn needs it); in inference one step's, and its gates as scratch.
    AlignedBuffer<T> rh_step, ws_step;
    if (rbl && training) ctx->rh.reset(N * H);
    if (rbl && !training) {
        rh_step.reset(BH);
        ws_step.reset(std::size_t(B) * ld_ws);
    }

    auto h_out = [&](int s, int t) -> T* {
        if (training) return ctx->h.data() + ctx->out_row(t) * H;
        if (state_pingpong) return h_pingpong.data() + (s % 2) * BH;
        return a.y + step_rows.start(t) * H;
    };
    auto h_in = [&](int s, int t) -> const T* {
        if (training) return ctx->h.data() + ctx->in_row(t) * H;
        return s == 0 ? h_init : h_out(s - 1, a.reverse ? t + 1 : t - 1);
    };
    auto c_out = [&](int s, int t) -> T* {
        return training ? ctx->c.data() + ctx->out_row(t) * H : c_pingpong.data() + (s % 2) * BH;
    };
    auto c_in = [&](int s, int t) -> const T* {
        if (training) return ctx->c.data() + ctx->in_row(t) * H;
        return s == 0 ? c_init : c_pingpong.data() + ((s - 1) % 2) * BH;
    };

    // y's copy of the blocks [jb, je) of step t, when the states live in the
    // ping-pong buffers (each thread copies the units it computed).
    auto copy_to_y = [&](int t, const T* ho, int jb, int je) {
        if (jb >= je) return;
        const int u0 = w.layout.block_start(jb), u1 = w.layout.block_start(je - 1) + w.layout.block_units(je - 1);
        T* yt = a.y + step_rows.start(t) * H;
        for (int r = 0; r < step_rows.rows(t); ++r)
            std::memcpy(yt + std::size_t(r) * H + u0, ho + std::size_t(r) * H + u0, std::size_t(u1 - u0) * sizeof(T));
    };

    const std::size_t by_size = kProjectionChunkElems / (std::size_t(B) * GH);
    const std::size_t by_rows = (kProjectionMinRows + B - 1) / B;
    const int chunk = int(std::max<std::size_t>(1, std::min<std::size_t>(steps, std::max(by_size, by_rows))));
    // A chunk is `chunk` steps of B rows; steps with fewer rows fit more.
    const std::size_t chunk_rows = std::size_t(chunk) * B;
    AlignedBuffer<T> gx(chunk_rows * GH);
    const int loop_threads = time_loop_threads(w, int((N + steps - 1) / steps), nthreads);
    const int nblocks = w.layout.blocks();
    const std::size_t scratch_per_thread = std::size_t(B) * G * kUnitBlock;
    AlignedBuffer<T> scratch(scratch_per_thread * loop_threads);

    for (int s0 = 0, n = 0; s0 < steps; s0 += n) {
        // The next steps (in processing order) whose rows fit the chunk, at least one.
        std::size_t fill = 0;
        for (n = 0; s0 + n < steps; ++n) {
            const int m = step_rows.rows(a.reverse ? steps - 1 - (s0 + n) : s0 + n);
            if (n > 0 && fill + m > chunk_rows) break;
            fill += m;
        }
        const int t_lo = a.reverse ? steps - s0 - n : s0;
        const std::size_t r_lo = step_rows.start(t_lo);
        // Input projection of the chunk's packed rows: one (rows x I) x (I x GH) GEMM.
        gemm_parallel(kern, int(fill), a.x + r_lo * I, I, 1, w.wih_t, gx.data(), GH, false, nthreads);

        parallel_region(loop_threads, [&](int tid, int nth) {
            int jb, je;
            split_range(nblocks, tid, nth, jb, je);
            T* gh = scratch.data() + scratch_per_thread * tid;
            for (int s = s0; s < s0 + n; ++s) {
                const int t = a.reverse ? steps - 1 - s : s;
                // Only the rows of the sequences still running at t.
                const int m = step_rows.rows(t);
                const T* hp = h_in(s, t);
                T* ho = h_out(s, t);
                const T* gxt = gx.data() + (step_rows.start(t) - r_lo) * GH;
                T* ws = training ? ctx->gates.data() + step_rows.start(t) * ld_ws : nullptr;
                if (rbl) {
                    T* rh = training ? ctx->rh.data() + step_rows.start(t) * H : rh_step.data();
                    gru_rbl_forward_step(w, GruRblForwardStep<T>{m, gxt, hp, ho, rh, ws ? ws : ws_step.data()}, gh,
                                         jb, je, nth);
                    if (state_pingpong) copy_to_y(t, ho, jb, je);
                    region_barrier(nth);
                    continue;
                }
                for (int j = jb; j < je; ++j) {
                    const int u0 = w.layout.block_start(j), units = w.layout.block_units(j);
                    const int ld = G * units;
                    // Recurrent product for this block's gates only.
                    gemm_serial(kern, m, G * u0, G * u0 + ld, hp, H, 1, w.whh_t, gh, ld, false);
                    if (lstm) {
                        LstmFwdArgs<T> f{m, units, gxt + G * u0, GH, gh, ld, w.bias.data() + G * u0,
                                         c_in(s, t) + u0, H, ho + u0, H, c_out(s, t) + u0, H,
                                         ws ? ws + kWorkspaceSlots * u0 : nullptr, ld_ws};
                        kern.lstm_postgemm_fwd(f);
                    } else {
                        GruFwdArgs<T> f{m, units, gxt + G * u0, GH, gh, ld, w.bias.data() + G * u0,
                                        w.bias_hn.data() + u0, hp + u0, H, ho + u0, H,
                                        ws ? ws + kWorkspaceSlots * u0 : nullptr, ld_ws};
                        kern.gru_postgemm_fwd(f);
                    }
                }
                if (state_pingpong) copy_to_y(t, ho, jb, je);
                // The next step reads every unit of this step's h.
                region_barrier(nth);
            }
        });
    }

    // Outputs: training keeps them among the state rows.
    if (training && !a.reverse) std::memcpy(a.y, ctx->h.data() + BH, N * H * sizeof(T));
    if (training && a.reverse)
        for (int t = 0; t < steps; ++t)
            std::memcpy(a.y + step_rows.start(t) * H, h_out(0, t), std::size_t(step_rows.rows(t)) * H * sizeof(T));
    // Final states: each sequence's state after its own last step (reverse:
    // after t = 0, the last step of all). Rows ending at the same step are
    // copied together; a sequence's rows are not written after its end.
    for (int b = 0; b < B;) {
        const int s_end = a.reverse ? steps - 1 : step_rows.length(b) - 1;
        const int t_end = a.reverse ? 0 : s_end;
        const int b_end = step_rows.rows(t_end);
        const std::size_t off = std::size_t(b) * H, len = std::size_t(b_end - b) * H;
        copy_unless_same(a.h_n + off, h_out(s_end, t_end) + off, len);
        if (lstm) copy_unless_same(a.c_n + off, c_out(s_end, t_end) + off, len);
        b = b_end;
    }
}

template void rnn_forward<float>(const PackedRnn<float>&, const ForwardArgs<float>&, TrainingContext<float>*, int);
template void rnn_forward<double>(const PackedRnn<double>&, const ForwardArgs<double>&, TrainingContext<double>*, int);

}  // namespace rnnkit
