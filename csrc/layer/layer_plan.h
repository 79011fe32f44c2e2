// The decisions of one layer call, made before any work: how many threads
// run the time loop, which schedule runs it, how the input projection is cut
// into chunks and pieces, how the backward pass cuts its weight-gradient
// operands. Pure functions of the shapes (oneDNN's rnn_conf_t), so tests can
// make a plan and print it without running anything.
#pragma once
#include <cstddef>
#include <vector>

#include "layer/packed_weights.h"
#include "layer/rnn.h"

namespace rnnkit {

// What the plan reads of a layer: its shape and its kernels' blocking.
struct LayerShape {
    CellKind cell = CellKind::lstm;
    bool lbr = true;                  // GRU linear before reset (always true for the LSTM)
    int I = 0, H = 0, G = 0;
    GateLayout layout;
    std::size_t elem_bytes = 0;       // sizeof(T)
    int gemm_mr = 0, gemm_nr = 0;     // micro-tile rows and columns
    int gemm_tile_rows = 0;           // rows of a projection tile (0: no tiles on this ISA)
    int gemm_kc = 0, gemm_mc = 0;     // GEMM k block depth and row block height
    Precision products = Precision::full;  // the products' operands (elem_bytes: their weights' size)
};

template <typename T>
LayerShape layer_shape(const PackedRnn<T>& w) {
    const std::size_t weight_bytes = w.products == Precision::full ? sizeof(T) : w.products == Precision::bf16 ? 2 : 1;
    return LayerShape{w.cell, w.linear_before_reset, w.I, w.H, w.G, w.layout, weight_bytes,
                      w.kern->gemm_mr, w.kern->gemm_nr, w.kern->gemm_tile_rows, w.kern->gemm_kc, w.kern->gemm_mc,
                      w.products};
}

// Threads of a call: `loop` for its time loop, `other` for the rest of its
// parallel work (input projections, weight gradients).
struct ThreadPlan {
    int loop, other;
};

// The thread plan of a call of `batch` rows per step (on average) over
// `steps` steps. Not pure: where the answer depends on how far apart the
// cores are, it measures that (core_round_trip_ns, cached).
ThreadPlan thread_plan(const LayerShape& s, int batch, int steps, int nthreads);

enum class Schedule { plain, overlapped, fused_projection };
const char* schedule_name(Schedule s);

// Steps s0 .. s0 + n - 1 (processing order) whose input projections are
// computed together: `fill` packed rows from packed row r_lo on.
struct ProjectionChunk {
    int s0, n;
    std::size_t fill, r_lo;
};

// One piece of a chunk's projection computed in the overlapped schedule's
// barrier waits: rows [i0, i0 + rows) of the chunk, columns [j0, j1).
struct ProjectionPiece {
    int i0, rows, j0, j1;
};

struct ForwardPlan {
    ThreadPlan threads{1, 1};
    Schedule schedule = Schedule::plain;
    bool training = false;
    // Inference, reverse, with lengths: h alternates between two buffers
    // (see ForwardStates) and y gets a copy of each step's rows.
    bool state_pingpong = false;
    int chunk_steps = 1;             // steps of B rows per chunk
    std::size_t chunk_rows = 0;      // rows of one projection buffer
    int projection_buffers = 1;      // 2 where one chunk's projection is made while another's steps run
    std::vector<ProjectionChunk> chunks;
    // Overlapped: pieces of chunks 1, 2, ..., chunk c's are
    // pieces[first_piece[c] .. first_piece[c + 1]).
    std::vector<ProjectionPiece> pieces;
    std::vector<int> first_piece;
    // Fused projection: gemm_rows_panels calls per step, that take the feed's pieces.
    int calls_per_step = 0;
};

// The plan of a forward call over `rows` (already initialised).
ForwardPlan plan_forward(const LayerShape& s, const StepRows& rows, bool reverse, bool training, ThreadPlan threads);

struct BackwardPlan {
    ThreadPlan threads{1, 1};
    // The gate gradients of both sides of the products are the same (LSTM,
    // GRU reset before linear): one buffer, and db_hh = db_ih.
    bool same_sides = true;
    // Rows of the weight gradients' right-hand operand packed at a time,
    // for dW_ih (operand X) and dW_hh (operand H_prev): all rows, or a
    // multiple of gemm_kc.
    int operand_rows_x = 0, operand_rows_h = 0;
    // The states entering the steps are contiguous rows of the context.
    bool h_contiguous = true;
};

BackwardPlan plan_backward(const LayerShape& s, const StepRows& rows, bool reverse, ThreadPlan threads);

}  // namespace rnnkit
