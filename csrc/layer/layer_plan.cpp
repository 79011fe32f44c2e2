#include "layer/layer_plan.h"

#include <algorithm>

#include "layer/threading.h"

namespace rnnkit {

namespace {

// ---- thread plan ----------------------------------------------------------
// Each step ends in a barrier, and each thread then reads the units of h
// the others wrote: with n threads a step takes about work / n plus
// kStepSyncRoundTrips core-to-core round trips (measured on the VM the
// figures come from, 2 threads, LSTM/GRU 1000x8x32x64: 7-10 of them per
// step, 50 ns each when the host put its two vCPUs close, 330 ns when far
// apart). Steps with little recurrent work run on one thread; short ones on
// one thread too where the cores are far apart (measured then, LSTM
// 1000x8x32x64: 2 threads 5.7 ms, 1 thread 4.9). Threads split blocks of
// hidden units only (the batch is not split yet), so there is no point in
// more threads than blocks.
constexpr double kStepSyncRoundTrips = 8.0;
// One core's rough pace, for the estimate of a step's work: products at
// ~100 GFLOP/s, gate math ~1 ns per unit and row.
constexpr double kCoreFlopsPerNs = 100.0;
constexpr double kGateNsPerUnit = 1.0;
// Calls with less work than this keep their threads unmeasured: the
// measurement (a parallel region and 8 round trips) would be a real
// share of them.
constexpr double kMeasureMinCallNs = 5e5;
// Round trips are not expected above this (across sockets ~500 ns): steps
// that would gain more than kStepSyncRoundTrips of them are not measured.
constexpr double kFarRoundTripNs = 1000.0;

// ---- forward: chunks of the input projection ------------------------------
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

// ---- backward -------------------------------------------------------------
// Values of the weight gradients' right-hand operand packed at once (2 MiB
// of float32): see BackwardPlan::operand_rows_x.
constexpr std::size_t kOperandChunkElems = std::size_t(1) << 19;

// The next steps (in processing order) whose rows fit chunks of chunk_rows
// rows, at least one step each.
std::vector<ProjectionChunk> cut_chunks(const StepRows& rows, bool reverse, std::size_t chunk_rows) {
    const int steps = int(rows.sizes.size());
    std::vector<ProjectionChunk> chunks;
    for (int s0 = 0, n = 0; s0 < steps; s0 += n) {
        std::size_t fill = 0;
        for (n = 0; s0 + n < steps; ++n) {
            const int m = rows.rows(reverse ? steps - 1 - (s0 + n) : s0 + n);
            if (n > 0 && fill + m > chunk_rows) break;
            fill += m;
        }
        const int t_lo = reverse ? steps - s0 - n : s0;
        chunks.push_back({s0, n, fill, rows.start(t_lo)});
    }
    return chunks;
}

// Pieces of chunks 1, 2, ... for the overlapped schedule. A piece is one
// block of rows (as in gemm_parallel: every weight panel it loads serves
// them all) times a strip of 8 panels, walking down the rows of a strip
// first; the last 8 panels go in strips of 2, so the chunk's last pieces
// are short and the threads reach its end together.
void cut_pieces(const LayerShape& s, ForwardPlan& p) {
    const int nchunks = int(p.chunks.size()), GH = s.G * s.H;
    const int nr = s.gemm_nr, panels = (GH + nr - 1) / nr;
    const int block_rows = (s.gemm_mc + s.gemm_mr - 1) / s.gemm_mr * s.gemm_mr;
    p.first_piece.assign(nchunks + 1, 0);
    for (int c = 1; c < nchunks; ++c) {
        const int fill = int(p.chunks[c].fill);
        for (int p0 = 0; p0 < panels;) {
            const int p1 = std::min(panels, p0 + (panels - p0 > 8 ? 8 : 2));
            for (int i0 = 0; i0 < fill; i0 += block_rows)
                p.pieces.push_back({i0, std::min(block_rows, fill - i0), p0 * nr, std::min(GH, p1 * nr)});
            p0 = p1;
        }
        p.first_piece[c + 1] = int(p.pieces.size());
    }
}

}  // namespace

ThreadPlan thread_plan(const LayerShape& s, int batch, int steps, int nthreads) {
    const double step_flops = 2.0 * batch * s.G * double(s.H) * s.H;
    if (step_flops < 1.5e5) return {1, nthreads};
    const int n = std::max(1, std::min(nthreads, s.layout.blocks()));
    if (n == 1) return {1, nthreads};
    // Work per step on one core: recurrent and input products, gate math.
    const double work_ns = (step_flops + 2.0 * batch * s.G * double(s.H) * s.I) / kCoreFlopsPerNs +
                           kGateNsPerUnit * batch * s.H;
    // n threads pay off while work (1 - 1 / n) exceeds the sync cost;
    // only steps short enough for a far-apart pair to matter are measured.
    // Where short steps run on one thread because the cores are far apart,
    // the whole call does: the loop's thread would otherwise read the
    // projections another core wrote, a line at a time across the same distance.
    const double gain_ns = work_ns * (1.0 - 1.0 / n);
    if (gain_ns > kStepSyncRoundTrips * kFarRoundTripNs || work_ns * steps < kMeasureMinCallNs) return {n, nthreads};
    if (gain_ns > kStepSyncRoundTrips * core_round_trip_ns()) return {n, nthreads};
    return {1, 1};
}

const char* schedule_name(Schedule s) {
    switch (s) {
        case Schedule::plain: return "plain";
        case Schedule::overlapped: return "overlapped";
        case Schedule::fused_projection: return "fused_projection";
    }
    return "?";
}

// The schedules of the forward time loop. Every one computes the input
// projection of a chunk of steps as one GEMM ahead of those steps' recurrence
// (chunks of about an L2 of projections, see kProjectionChunkElems), and
// runs each step as one recurrent GEMM plus the fused gate math per block of
// hidden units, the blocks split over the loop's threads, a barrier between steps.
//
// - plain: chunk after chunk, the projection on all `other` threads, then
//   the chunk's steps in one parallel region of `loop` threads.
// - overlapped: with several loop threads, several chunks and short steps
//   (recurrent FLOPs <= kOverlapMaxStepFlops), a thread that finishes its
//   share of a step early computes pieces of the next chunk's projection
//   while it waits at the barrier (StepBarrier, WorkQueue); one region for
//   the whole sequence, the projections of two chunks alive at once.
// - fused_projection: one thread for everything, one row per step (B = 1,
//   no lengths), a GRU of PyTorch's form or an LSTM, an ISA with projection
//   tiles (gemm_tile_rows > 0), W_ih in cache (weights <= kCachedWeightBytes)
//   and within one k block (I <= gemm_kc), more steps than a tile has rows.
//   The recurrent product is then a matrix-vector product that waits on
//   W_hh's loads, and the next chunk's projection (chunks of tile_rows
//   steps, one tile per panel) runs in its idle FMA slots, fed piece by
//   piece (TileFeed); only the first chunk's is computed on its own (Zen 4,
//   AVX-512: LSTM 100x1x256x256 1.63 -> 1.48 ms, GRU 1.16 -> 1.05, LSTM
//   25x1x512x512 1.71 -> 1.59).
ForwardPlan plan_forward(const LayerShape& s, const StepRows& rows, bool reverse, bool training, ThreadPlan threads) {
    ForwardPlan p;
    const int steps = int(rows.sizes.size()), B = rows.batch, GH = s.G * s.H;
    p.threads = threads;
    p.training = training;
    p.state_pingpong = !training && reverse && !rows.uniform;
    const std::size_t whh_bytes = std::size_t(GH) * s.H * s.elem_bytes;
    const std::size_t weight_bytes = std::size_t(GH) * s.I * s.elem_bytes + whh_bytes;
    // Projection pieces and tiles are float/double kernels' work: a
    // low-precision layer projects whole chunks (plain schedule).
    const bool full = s.products == Precision::full;
    const bool fused = full && threads.loop == 1 && threads.other == 1 && s.gemm_tile_rows > 0 && B == 1 && rows.uniform &&
                       s.lbr && s.I <= s.gemm_kc && weight_bytes <= kCachedWeightBytes && steps > s.gemm_tile_rows;
    const std::size_t chunk_elems = kProjectionChunkElems / (whh_bytes > kStreamedRecurrentBytes ? 4 : 1);
    const std::size_t by_size = chunk_elems / (std::size_t(B) * GH);
    const std::size_t min_rows = weight_bytes > kCachedWeightBytes ? kProjectionMinRows : 1;
    const std::size_t by_rows = (min_rows + B - 1) / B;
    p.chunk_steps = fused ? s.gemm_tile_rows
                          : int(std::max<std::size_t>(1, std::min<std::size_t>(steps, std::max(by_size, by_rows))));
    // A chunk is chunk_steps steps of B rows; steps with fewer rows fit more.
    p.chunk_rows = std::size_t(p.chunk_steps) * B;
    p.chunks = cut_chunks(rows, reverse, p.chunk_rows);
    const double step_flops = 2.0 * B * s.H * GH;
    const bool overlap = full && threads.loop > 1 && p.chunks.size() > 1 && step_flops <= kOverlapMaxStepFlops;
    p.schedule = overlap ? Schedule::overlapped : fused ? Schedule::fused_projection : Schedule::plain;
    p.projection_buffers = overlap || fused ? 2 : 1;
    if (overlap) cut_pieces(s, p);
    else p.first_piece.assign(p.chunks.size() + 1, 0);
    for (int j = 0; fused && j < s.layout.blocks(); ++j)
        p.calls_per_step += rows_panels_calls(1, (s.G * s.layout.block_units(j) + s.gemm_nr - 1) / s.gemm_nr);
    return p;
}

BackwardPlan plan_backward(const LayerShape& s, const StepRows& rows, bool reverse, ThreadPlan threads) {
    BackwardPlan p;
    p.threads = threads;
    p.same_sides = s.cell == CellKind::lstm || !s.lbr;
    p.h_contiguous = reverse || rows.uniform;
    // dW_ih = dgx^T X and dW_hh = dgh^T H_prev are GEMMs whose depth is
    // every packed row. Their right-hand operand is packed a few k blocks
    // (gemm_kc rows each) at a time, each part's product added on: the same
    // sums in the same order as with all rows packed at once, in a buffer
    // of about kOperandChunkElems values (at least one k block) instead of
    // N rows. Narrow operands stay one part (few regions).
    const int N = int(rows.total());
    auto operand_rows = [N, &s](int cols) {
        const int blocks = std::max<std::size_t>(1, kOperandChunkElems / (std::size_t(s.gemm_kc) * cols));
        return blocks >= (N + s.gemm_kc - 1) / s.gemm_kc ? N : blocks * s.gemm_kc;
    };
    p.operand_rows_x = operand_rows(s.I);
    p.operand_rows_h = operand_rows(s.H);
    return p;
}

}  // namespace rnnkit
