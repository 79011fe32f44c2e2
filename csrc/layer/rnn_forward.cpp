// Forward time loop: the input projection of many steps as one GEMM, then per
// step one recurrent GEMM and the fused gate math per block of hidden units.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "layer/gru_rbl.h"
#include "layer/rnn.h"
#include "layer/rnn_common.h"
#include "layer/step_barrier.h"
#include "layer/threading.h"

namespace rnnkit {

namespace {

// Input projections computed ahead of the recurrence at a time (elements):
// about a core's L2, so each step reads its projections from there rather
// than from L3 or memory, and inference memory does not grow with T...
constexpr std::size_t kProjectionChunkElems = std::size_t(1) << 18;
// ...a quarter of that when W_hh is larger than half an L2: every step
// then streams W_hh through L2 and pushes older projections out (LSTM
// 50x32x512x512: chunks of one step 5% faster than of four).
constexpr std::size_t kStreamedRecurrentBytes = std::size_t(512) << 10;
// Weights up to this size (W_ih and W_hh together, bytes) stay in L3 from
// one chunk to the next, so a chunk of few rows reads W_ih from there.
constexpr std::size_t kCachedWeightBytes = std::size_t(10) << 20;
// Larger W_ih come from memory for every chunk: at least this many rows
// then share each load of its panels (LSTM 25x64x1024x1024: chunks of 64
// rows 4% slower than of 256).
constexpr std::size_t kProjectionMinRows = 256;
// Steps up to this many recurrent FLOPs are short enough that the threads'
// wait at each step's barrier is a real share of the time: only there does
// computing the next chunk's projection in those waits pay (measured at 2
// threads: +5-13% for 1000x8x32x64, -2% for 50x32x512x512, where the
// finer projection pieces cost more than the short waits give back).
constexpr double kOverlapMaxStepFlops = 2e7;

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
        ctx->x = a.x;
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

    const std::size_t whh_bytes = std::size_t(GH) * H * sizeof(T);
    const std::size_t weight_bytes = std::size_t(GH) * I * sizeof(T) + whh_bytes;
    const std::size_t chunk_elems = kProjectionChunkElems / (whh_bytes > kStreamedRecurrentBytes ? 4 : 1);
    const std::size_t by_size = chunk_elems / (std::size_t(B) * GH);
    const std::size_t min_rows = weight_bytes > kCachedWeightBytes ? kProjectionMinRows : 1;
    const std::size_t by_rows = (min_rows + B - 1) / B;
    const ThreadPlan plan = thread_plan(w, int((N + steps - 1) / steps), steps, nthreads);
    const int loop_threads = plan.loop;
    nthreads = plan.other;
    // One thread, one row per step: the recurrent product is a matrix-vector
    // product that waits on W_hh's loads, and the next chunk's projection
    // (one tile of tile_rows steps per panel) runs in its idle FMA slots, fed
    // piece by piece; only the first chunk's is computed on its own (Zen 4,
    // AVX-512: LSTM 100x1x256x256 1.63 -> 1.48 ms, GRU 1.16 -> 1.05, LSTM
    // 25x1x512x512 1.71 -> 1.59). W_ih must stay in cache (each tile reads
    // a panel of it) and fit one k block.
    const bool fused = loop_threads == 1 && nthreads == 1 && kern.gemm_tile_rows > 0 && B == 1 &&
                       step_rows.uniform && !rbl && I <= kern.gemm_kc && weight_bytes <= kCachedWeightBytes &&
                       steps > kern.gemm_tile_rows;
    const int chunk = fused ? kern.gemm_tile_rows
                            : int(std::max<std::size_t>(1, std::min<std::size_t>(steps, std::max(by_size, by_rows))));
    // A chunk is `chunk` steps of B rows; steps with fewer rows fit more.
    const std::size_t chunk_rows = std::size_t(chunk) * B;
    struct Chunk {
        int s0, n;               // steps s0 .. s0 + n - 1 in processing order
        std::size_t fill, r_lo;  // their packed rows: fill rows from r_lo on
    };
    std::vector<Chunk> chunks;
    for (int s0 = 0, n = 0; s0 < steps; s0 += n) {
        // The next steps (in processing order) whose rows fit the chunk, at least one.
        std::size_t fill = 0;
        for (n = 0; s0 + n < steps; ++n) {
            const int m = step_rows.rows(a.reverse ? steps - 1 - (s0 + n) : s0 + n);
            if (n > 0 && fill + m > chunk_rows) break;
            fill += m;
        }
        const int t_lo = a.reverse ? steps - s0 - n : s0;
        chunks.push_back({s0, n, fill, step_rows.start(t_lo)});
    }
    const int nchunks = int(chunks.size());
    // With several threads, a thread that finishes its share of a short step
    // early computes pieces of the next chunk's input projection while it
    // waits: the projections of two chunks are then alive at once.
    const double step_flops = 2.0 * B * H * GH;
    const bool overlap = loop_threads > 1 && nchunks > 1 && step_flops <= kOverlapMaxStepFlops;
    const bool two_chunks = overlap || fused;
    AlignedBuffer<T> gx_buf((two_chunks ? 2 : 1) * chunk_rows * GH);
    auto gx_of = [&](int c) { return gx_buf.data() + (two_chunks ? std::size_t(c % 2) * chunk_rows * GH : 0); };
    // Projection pieces (only with overlap) of chunks 1, 2, ..., numbered chunk after chunk
    // (first_piece[c] .. first_piece[c + 1] - 1). A piece is one block of
    // rows (as in gemm_parallel: every weight panel it loads serves them all)
    // times a strip of 8 panels, walking down the rows of a strip first; the
    // last 8 panels go in strips of 2, so the chunk's last pieces are short
    // and the threads reach its end together.
    struct Piece {
        int i0, rows, j0, j1;
    };
    std::vector<Piece> piece_list;
    std::vector<int> first_piece(nchunks + 1, 0);
    const int nr = kern.gemm_nr, panels = (GH + nr - 1) / nr;
    const int block_rows = (kern.gemm_mc + kern.gemm_mr - 1) / kern.gemm_mr * kern.gemm_mr;
    for (int c = 1; overlap && c < nchunks; ++c) {
        for (int p0 = 0; p0 < panels;) {
            const int width = panels - p0 > 8 ? 8 : 2;
            const int p1 = std::min(panels, p0 + width);
            for (int i0 = 0; i0 < int(chunks[c].fill); i0 += block_rows)
                piece_list.push_back({i0, std::min(block_rows, int(chunks[c].fill) - i0), p0 * nr, std::min(GH, p1 * nr)});
            p0 = p1;
        }
        first_piece[c + 1] = int(piece_list.size());
    }
    auto projection_piece = [&](int c, int i) {
        const Piece& pc = piece_list[i];
        gemm_serial(kern, pc.rows, pc.j0, pc.j1, a.x + (chunks[c].r_lo + pc.i0) * I, I, 1, w.wih_t,
                    gx_of(c) + std::size_t(pc.i0) * GH + pc.j0, GH, false);
    };
    WorkQueue pieces;
    StepBarrier step_barrier(loop_threads);

    const int nblocks = w.layout.blocks();
    const std::size_t scratch_per_thread = std::size_t(B) * G * kUnitBlock;
    AlignedBuffer<T> scratch(scratch_per_thread * loop_threads);

    // The fused mode's feed of projection pieces while one is running.
    TileFeed<T> feed;
    TileFeed<T>* feed_now = nullptr;

    // Step s of chunk c on thread tid: the blocks [jb, je) of hidden units.
    auto run_step = [&](int c, int s, int jb, int je, T* gh, int nth) {
        const int t = a.reverse ? steps - 1 - s : s;
        // Only the rows of the sequences still running at t.
        const int m = step_rows.rows(t);
        const T* hp = h_in(s, t);
        T* ho = h_out(s, t);
        const T* gxt = gx_of(c) + (step_rows.start(t) - chunks[c].r_lo) * GH;
        T* ws = training ? ctx->gates.data() + step_rows.start(t) * ld_ws : nullptr;
        if (rbl) {
            T* rh = training ? ctx->rh.data() + step_rows.start(t) * H : rh_step.data();
            gru_rbl_forward_step(w, GruRblForwardStep<T>{m, gxt, hp, ho, rh, ws ? ws : ws_step.data(), s % 2 == 1}, gh,
                                 jb, je, nth);
        } else {
            for (int k = jb; k < je; ++k) {
                const int j = walked(k, jb, je, s % 2);
                const int u0 = w.layout.block_start(j), units = w.layout.block_units(j);
                const int ld = G * units;
                // Recurrent product for this block's gates only.
                gemm_serial(kern, m, G * u0, G * u0 + ld, hp, H, 1, w.whh_t, gh, ld, false, feed_now);
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
        }
        if (state_pingpong) copy_to_y(t, ho, jb, je);
    };
    // Fused: the feed of chunk c + 1's projection tiles, pieces sized so
    // that chunk c's steps take them all.
    int calls_per_step = 0;
    for (int j = 0; fused && j < nblocks; ++j)
        calls_per_step += rows_panels_calls(1, (G * w.layout.block_units(j) + kern.gemm_nr - 1) / kern.gemm_nr);
    auto start_feed = [&](int c) {
        const Chunk& next = chunks[c + 1];
        const int tr = kern.gemm_tile_rows, whole = int(next.fill) / tr * tr;
        T* gx_next = gx_of(c + 1);
        // Rows beyond whole tiles, on their own.
        if (whole < int(next.fill))
            gemm_serial(kern, int(next.fill) - whole, 0, GH, a.x + (next.r_lo + whole) * I, I, 1, w.wih_t,
                        gx_next + std::size_t(whole) * GH, GH, false);
        const double work = double(whole / tr) * ((GH + kern.gemm_nr - 1) / kern.gemm_nr) * I;
        const double calls = double(chunks[c].n) * calls_per_step;
        const int per_piece = calls > 0 ? int(std::min<double>(I, std::ceil(work / calls))) : I;
        feed = TileFeed<T>(kern, whole, a.x + next.r_lo * I, I, w.wih_t, gx_next, GH, std::max(1, per_piece));
        feed_now = &feed;
    };
    auto project_chunk = [&](int c) {
        const Chunk& ch = chunks[c];
        // Input projection of the chunk's packed rows: one (rows x I) x (I x GH) GEMM.
        gemm_parallel(kern, int(ch.fill), a.x + ch.r_lo * I, I, 1, w.wih_t, gx_of(c), GH, false, nthreads);
    };

    if (!overlap) {
        for (int c = 0; c < nchunks; ++c) {
            if (!fused || c == 0) project_chunk(c);
            if (fused && c + 1 < nchunks) start_feed(c);
            parallel_region(loop_threads, [&](int tid, int nth) {
                int jb, je;
                split_range(nblocks, tid, nth, jb, je);
                T* gh = scratch.data() + scratch_per_thread * tid;
                for (int s = chunks[c].s0; s < chunks[c].s0 + chunks[c].n; ++s) {
                    run_step(c, s, jb, je, gh, nth);
                    // The next step reads every unit of this step's h.
                    region_barrier(nth);
                }
            });
            // Chunk c + 1's steps need all of its projections.
            if (feed_now) feed.finish();
            feed_now = nullptr;
        }
    } else {
        project_chunk(0);
        parallel_region(loop_threads, [&](int tid, int nth) {
            int jb, je;
            split_range(nblocks, tid, nth, jb, je);
            T* gh = scratch.data() + scratch_per_thread * tid;
            for (int c = 0; c < nchunks; ++c) {
                // Pieces of chunk c + 1 may run while chunk c's steps do.
                const int limit = first_piece[std::min(c + 2, nchunks)];
                auto next_piece = [&](int i) { projection_piece(c + 1, i); };
                for (int s = chunks[c].s0; s < chunks[c].s0 + chunks[c].n; ++s) {
                    run_step(c, s, jb, je, gh, nth);
                    // The next step reads every unit of this step's h.
                    step_barrier.arrive_and_wait([&] { return c + 1 < nchunks && pieces.run_one(limit, next_piece); });
                }
                // Chunk c + 1's steps need all of its projections.
                if (c + 1 < nchunks) pieces.finish(limit, next_piece);
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
