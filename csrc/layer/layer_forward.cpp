// Forward time loop of one layer direction: the plan (layer_plan.h) decides,
// this file does. The input projection of many steps as one GEMM, then per
// step one recurrent GEMM and the fused gate math per block of hidden units
// (the cell's step, cell_step.h), in the schedule the plan chose.
#include <algorithm>
#include <cmath>
#include <type_traits>
#include <vector>

#include "layer/cell_step.h"
#include "layer/forward_states.h"
#include "layer/layer_plan.h"
#include "layer/rnn.h"
#include "layer/step_barrier.h"
#include "layer/threading.h"

namespace rnnkit {

namespace {

// What every schedule works with: the plan, the states, the projection
// buffers and the per-thread scratch of the recurrent products.
template <typename T>
struct ForwardRun {
    const PackedRnn<T>& w;
    const ForwardArgs<T>& a;
    const ForwardPlan& plan;
    const StepRows& rows;
    const ForwardStates<T>& states;
    const ForwardStepFn<T> step;
    const int GH;
    AlignedBuffer<T> gx;
    const std::size_t scratch_per_thread;
    AlignedBuffer<T> scratch;
    // bf16/int8 products: each loop thread's converted h rows, and the
    // projection's converted x rows.
    std::vector<LowpRows> lowp_rows;
    LowpRows x_rows;

    ForwardRun(const PackedRnn<T>& w_, const ForwardArgs<T>& a_, const ForwardPlan& p, const StepRows& r,
               const ForwardStates<T>& st)
        : w(w_), a(a_), plan(p), rows(r), states(st), step(forward_step_of(w_)), GH(w_.G * w_.H),
          gx(std::size_t(p.projection_buffers) * p.chunk_rows * GH),
          scratch_per_thread(std::size_t(a_.batch) * w_.G * kUnitBlock),
          scratch(scratch_per_thread * p.threads.loop) {
        if (w_.products == Precision::full) return;
        lowp_rows.resize(p.threads.loop);
        for (LowpRows& r : lowp_rows) r.reserve(*w_.kset, w_.products, a_.batch, w_.H);
    }

    // Chunk c's projections (two buffers alternate where the schedule keeps two).
    T* gx_of(int c) { return gx.data() + std::size_t(c % plan.projection_buffers) * plan.chunk_rows * GH; }
    T* scratch_of(int tid) { return scratch.data() + scratch_per_thread * tid; }
    LowpRows* lowp_of(const T* scratch_t) {
        if (lowp_rows.empty()) return nullptr;
        return &lowp_rows[std::size_t(scratch_t - scratch.data()) / scratch_per_thread];
    }
    int nblocks() const { return w.layout.blocks(); }

    // Input projection of chunk c's packed rows: one (rows x I) x (I x GH) GEMM.
    void project_chunk(int c) {
        const ProjectionChunk& ch = plan.chunks[c];
        if constexpr (std::is_same_v<T, float>) {
            if (w.products != Precision::full) {
                lowp_gemm_parallel(*w.kset, int(ch.fill), a.x + ch.r_lo * w.I, w.I, w.wih_lp, gx_of(c), GH, false,
                                   x_rows, plan.threads.other);
                return;
            }
        }
        gemm_parallel(*w.kern, int(ch.fill), a.x + ch.r_lo * w.I, w.I, 1, w.wih_t, gx_of(c), GH, false,
                      plan.threads.other);
    }
    // Piece i of chunk c's projection (overlapped schedule).
    void project_piece(int c, int i) {
        const ProjectionPiece& pc = plan.pieces[i];
        gemm_serial(*w.kern, pc.rows, pc.j0, pc.j1, a.x + (plan.chunks[c].r_lo + pc.i0) * w.I, w.I, 1, w.wih_t,
                    gx_of(c) + std::size_t(pc.i0) * GH + pc.j0, GH, false);
    }
    // Step s of chunk c: the blocks [jb, je) of hidden units.
    void run_step(int c, int s, int jb, int je, T* scratch_t, int nth, TileFeed<T>* feed) {
        const int t = a.reverse ? a.steps - 1 - s : s;
        // Only the rows of the sequences still running at t.
        const ForwardStep<T> op{rows.rows(t), gx_of(c) + (rows.start(t) - plan.chunks[c].r_lo) * GH,
                                states.h_in(s, t), states.h_out(s, t), states.c_in(s, t), states.c_out(s, t),
                                states.workspace(t), states.rh(t), s % 2 == 1, feed, lowp_of(scratch_t)};
        step(w, op, scratch_t, jb, je, nth);
        states.step_done(t, op.h, jb, je);
    }
    // Chunk c's steps in one region of the loop's threads.
    void run_chunk(int c, TileFeed<T>* feed) {
        parallel_region(plan.threads.loop, [&](int tid, int nth) {
            int jb, je;
            split_range(nblocks(), tid, nth, jb, je);
            const ProjectionChunk& ch = plan.chunks[c];
            for (int s = ch.s0; s < ch.s0 + ch.n; ++s) {
                run_step(c, s, jb, je, scratch_of(tid), nth, feed);
                // The next step reads every unit of this step's h.
                region_barrier(nth);
            }
        });
    }
    // Fused projection: the feed of chunk c + 1's projection tiles, pieces
    // sized so that chunk c's steps take them all.
    TileFeed<T> feed_next(int c) {
        const Kernels<T>& kern = *w.kern;
        const ProjectionChunk& next = plan.chunks[c + 1];
        const int I = w.I, tr = kern.gemm_tile_rows, whole = int(next.fill) / tr * tr;
        T* gx_next = gx_of(c + 1);
        // Rows beyond whole tiles, on their own.
        if (whole < int(next.fill))
            gemm_serial(kern, int(next.fill) - whole, 0, GH, a.x + (next.r_lo + whole) * I, I, 1, w.wih_t,
                        gx_next + std::size_t(whole) * GH, GH, false);
        const double work = double(whole / tr) * ((GH + kern.gemm_nr - 1) / kern.gemm_nr) * I;
        const double calls = double(plan.chunks[c].n) * plan.calls_per_step;
        const int per_piece = calls > 0 ? int(std::min<double>(I, std::ceil(work / calls))) : I;
        return TileFeed<T>(kern, whole, a.x + next.r_lo * I, I, w.wih_t, gx_next, GH, std::max(1, per_piece));
    }
};

// The schedules (see plan_forward for when each runs).
template <typename T>
void run_plain(ForwardRun<T>& run) {
    for (int c = 0; c < int(run.plan.chunks.size()); ++c) {
        run.project_chunk(c);
        run.run_chunk(c, nullptr);
    }
}

template <typename T>
void run_fused_projection(ForwardRun<T>& run) {
    const int nchunks = int(run.plan.chunks.size());
    run.project_chunk(0);
    for (int c = 0; c < nchunks; ++c) {
        if (c + 1 == nchunks) {
            run.run_chunk(c, nullptr);
            break;
        }
        TileFeed<T> feed = run.feed_next(c);
        run.run_chunk(c, &feed);
        // Chunk c + 1's steps need all of its projections.
        feed.finish();
    }
}

template <typename T>
void run_overlapped(ForwardRun<T>& run) {
    const ForwardPlan& plan = run.plan;
    const int nchunks = int(plan.chunks.size());
    WorkQueue pieces;
    StepBarrier step_barrier(plan.threads.loop);
    run.project_chunk(0);
    parallel_region(plan.threads.loop, [&](int tid, int nth) {
        int jb, je;
        split_range(run.nblocks(), tid, nth, jb, je);
        for (int c = 0; c < nchunks; ++c) {
            // Pieces of chunk c + 1 may run while chunk c's steps do.
            const int limit = plan.first_piece[std::min(c + 2, nchunks)];
            auto next_piece = [&](int i) { run.project_piece(c + 1, i); };
            for (int s = plan.chunks[c].s0; s < plan.chunks[c].s0 + plan.chunks[c].n; ++s) {
                run.run_step(c, s, jb, je, run.scratch_of(tid), nth, nullptr);
                // The next step reads every unit of this step's h.
                step_barrier.arrive_and_wait([&] { return c + 1 < nchunks && pieces.run_one(limit, next_piece); });
            }
            // Chunk c + 1's steps need all of its projections.
            if (c + 1 < nchunks) pieces.finish(limit, next_piece);
        }
    });
}

}  // namespace

template <typename T>
void layer_forward(const PackedRnn<T>& w, const ForwardArgs<T>& a, TrainingContext<T>* ctx, int nthreads) {
    // Rows of each step; x, y and the workspace hold N packed rows.
    StepRows local_rows;
    StepRows& rows = ctx ? ctx->rows : local_rows;
    rows.init(a.steps, a.batch, a.batch_sizes);
    const LayerShape shape = layer_shape(w);
    const int mean_rows = int((rows.total() + a.steps - 1) / a.steps);
    const ForwardPlan plan =
        plan_forward(shape, rows, a.reverse, ctx != nullptr, thread_plan(shape, mean_rows, a.steps, nthreads));
    const ForwardStates<T> states(w, a, plan, rows, ctx);
    ForwardRun<T> run(w, a, plan, rows, states);
    switch (plan.schedule) {
        case Schedule::plain: run_plain(run); break;
        case Schedule::overlapped: run_overlapped(run); break;
        case Schedule::fused_projection: run_fused_projection(run); break;
    }
    states.write_outputs();
}

template void layer_forward<float>(const PackedRnn<float>&, const ForwardArgs<float>&, TrainingContext<float>*, int);
template void layer_forward<double>(const PackedRnn<double>&, const ForwardArgs<double>&, TrainingContext<double>*,
                                    int);

}  // namespace rnnkit
