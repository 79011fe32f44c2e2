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

    // Initial states: in training they live in the context's initial slots.
    const T* h_init = a.h0;
    const T* c_init = a.c0;
    AlignedBuffer<T> zeros;
    if (training) {
        ctx->steps = steps;
        ctx->batch = B;
        ctx->reverse = a.reverse;
        ctx->x.reset(std::size_t(steps) * B * I);
        std::memcpy(ctx->x.data(), a.x, ctx->x.size() * sizeof(T));
        ctx->gates.reset(std::size_t(steps) * B * ld_ws);
        ctx->h.reset((steps + 1) * BH);
        T* hi = ctx->h.data() + ctx->initial_slot() * BH;
        copy_or_zero(hi, a.h0, BH);
        h_init = hi;
        if (lstm) {
            ctx->c.reset((steps + 1) * BH);
            T* ci = ctx->c.data() + ctx->initial_slot() * BH;
            copy_or_zero(ci, a.c0, BH);
            c_init = ci;
        }
    } else if (!h_init || (lstm && !c_init)) {
        zeros.reset(BH);
        zeros.fill_zero();
        if (!h_init) h_init = zeros.data();
        if (!c_init) c_init = zeros.data();
    }
    // Inference keeps only two cell states, alternating between steps.
    AlignedBuffer<T> c_pingpong;
    if (lstm && !training) c_pingpong.reset(2 * BH);
    // GRU reset before linear: r * h_prev, kept for every step in training
    // (dW_hn needs it); in inference one step's, and its gates as scratch.
    AlignedBuffer<T> rh_step, ws_step;
    if (rbl && training) ctx->rh.reset(steps * BH);
    if (rbl && !training) {
        rh_step.reset(BH);
        ws_step.reset(std::size_t(B) * ld_ws);
    }

    auto h_out = [&](int t) -> T* {
        return training ? ctx->h.data() + ctx->out_slot(t) * BH : a.y + t * BH;
    };
    auto h_in = [&](int s, int t) -> const T* {
        return s == 0 ? h_init : h_out(a.reverse ? t + 1 : t - 1);
    };
    auto c_out = [&](int s, int t) -> T* {
        return training ? ctx->c.data() + ctx->out_slot(t) * BH : c_pingpong.data() + (s % 2) * BH;
    };
    auto c_in = [&](int s, int t) -> const T* {
        if (s == 0) return c_init;
        return training ? ctx->c.data() + ctx->prev_slot(t) * BH : c_pingpong.data() + ((s - 1) % 2) * BH;
    };

    const std::size_t by_size = kProjectionChunkElems / (std::size_t(B) * GH);
    const std::size_t by_rows = (kProjectionMinRows + B - 1) / B;
    const int chunk = int(std::max<std::size_t>(1, std::min<std::size_t>(steps, std::max(by_size, by_rows))));
    AlignedBuffer<T> gx(std::size_t(chunk) * B * GH);
    const int loop_threads = time_loop_threads(w, B, nthreads);
    const int nblocks = w.layout.blocks();
    const std::size_t scratch_per_thread = std::size_t(B) * G * kUnitBlock;
    AlignedBuffer<T> scratch(scratch_per_thread * loop_threads);

    for (int s0 = 0; s0 < steps; s0 += chunk) {
        const int n = std::min(chunk, steps - s0);
        const int t_lo = a.reverse ? steps - s0 - n : s0;
        // Input projection of the chunk's n steps: one (n*B x I) x (I x GH) GEMM.
        gemm_parallel(kern, n * B, a.x + std::size_t(t_lo) * B * I, I, 1, w.wih_t, gx.data(), GH, false, nthreads);

        parallel_region(loop_threads, [&](int tid, int nth) {
            int jb, je;
            split_range(nblocks, tid, nth, jb, je);
            T* gh = scratch.data() + scratch_per_thread * tid;
            for (int s = s0; s < s0 + n; ++s) {
                const int t = a.reverse ? steps - 1 - s : s;
                const T* hp = h_in(s, t);
                T* ho = h_out(t);
                const T* gxt = gx.data() + std::size_t(t - t_lo) * B * GH;
                T* ws = training ? ctx->gates.data() + std::size_t(t) * B * ld_ws : nullptr;
                if (rbl) {
                    T* rh = training ? ctx->rh.data() + t * BH : rh_step.data();
                    gru_rbl_forward_step(w, GruRblForwardStep<T>{B, gxt, hp, ho, rh, ws ? ws : ws_step.data()}, gh,
                                         jb, je, nth);
                    region_barrier(nth);
                    continue;
                }
                for (int j = jb; j < je; ++j) {
                    const int u0 = w.layout.block_start(j), units = w.layout.block_units(j);
                    const int ld = G * units;
                    // Recurrent product for this block's gates only.
                    gemm_serial(kern, B, G * u0, G * u0 + ld, hp, H, 1, w.whh_t, gh, ld, false);
                    if (lstm) {
                        LstmFwdArgs<T> f{B, units, gxt + G * u0, GH, gh, ld, w.bias.data() + G * u0,
                                         c_in(s, t) + u0, H, ho + u0, H, c_out(s, t) + u0, H,
                                         ws ? ws + kWorkspaceSlots * u0 : nullptr, ld_ws};
                        kern.lstm_postgemm_fwd(f);
                    } else {
                        GruFwdArgs<T> f{B, units, gxt + G * u0, GH, gh, ld, w.bias.data() + G * u0,
                                        w.bias_hn.data() + u0, hp + u0, H, ho + u0, H,
                                        ws ? ws + kWorkspaceSlots * u0 : nullptr, ld_ws};
                        kern.gru_postgemm_fwd(f);
                    }
                }
                // The next step reads every unit of this step's h.
                region_barrier(nth);
            }
        });
    }

    // Outputs and final states.
    const int t_last = a.reverse ? 0 : steps - 1;
    if (training) std::memcpy(a.y, ctx->h.data() + (a.reverse ? 0 : BH), std::size_t(steps) * BH * sizeof(T));
    copy_unless_same(a.h_n, h_out(t_last), BH);
    if (lstm) copy_unless_same(a.c_n, c_out(steps - 1, t_last), BH);
}

template void rnn_forward<float>(const PackedRnn<float>&, const ForwardArgs<float>&, TrainingContext<float>*, int);
template void rnn_forward<double>(const PackedRnn<double>&, const ForwardArgs<double>&, TrainingContext<double>*, int);

}  // namespace rnnkit
