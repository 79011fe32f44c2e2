// GRU "reset before linear" (n = tanh(W_in x + b_in + W_hn (r * h) + b_hn))
// steps for the drivers' time loops. The n gate's recurrent product needs r
// of every hidden unit, so a step runs in two halves with a barrier between;
// each thread keeps its own run [jb, je) of unit blocks in both halves.
// Internal gate layout (GateLayout::n_apart): per row, r,z in blocks of
// kUnitBlock units (block j at 2 * j * kUnitBlock), then n in unit order at 2H.
#pragma once
#include "layer/packed_weights.h"

namespace rnnkit {

// One step's operands, `rows` batch rows, row strides G*H (gx, dgates),
// kWorkspaceSlots*H (ws) and H (the rest).
template <typename T>
struct GruRblForwardStep {
    int rows;
    const T* gx;        // input projection W_ih x (biases not yet added)
    const T* h_prev;
    T* h;
    T* rh;              // out: r * h_prev
    T* ws;              // out: r, z, n per block (scratch in inference)
    bool backwards;     // walk the blocks backwards (odd steps; see walked)
};

template <typename T>
struct GruRblBackwardStep {
    int rows;
    const T* ws;        // r, z, n of the step
    const T* h_prev;
    const T* dy;        // or nullptr
    T* dh;              // in: dh from the step after; out: dh_prev
    T* dgates;          // out: pre-activation gate gradients (both sides)
    bool backwards;     // walk the blocks backwards (odd steps; see walked)
};

// Called by every thread of a region of nth threads. scratch: this thread's
// rows * 2 * kUnitBlock values. Returns without a final barrier; the caller
// must wait for every thread's h before the next step.
template <typename T>
void gru_rbl_forward_step(const PackedRnn<T>& w, const GruRblForwardStep<T>& s, T* scratch, int jb, int je,
                          int nth);

// Backward of one step, called like the forward; w_rz, w_n: w.whh_for_backward
// and w.whn_for_backward, packed before the region. scratch: this thread's
// rows * kUnitBlock values. Needs no barrier after it: every thread reads and
// writes only its own units of dh, and the next step's gate gradients go
// elsewhere.
template <typename T>
void gru_rbl_backward_step(const PackedRnn<T>& w, const PackedMatrix<T>& w_rz, const PackedMatrix<T>& w_n,
                           const GruRblBackwardStep<T>& s, T* scratch, int jb, int je, int nth);

// dW_hh of a sequence in internal row order (G*H x H), or the part of it
// from some rows (added on with accumulate): the r,z rows are
// dgates_rz^T H_prev (h_prev: the packed states entering each row's step),
// the n rows dgates_n^T RH (rh: r * h_prev of every row, (rows, H)).
// rh_packed is the caller's, to reuse over calls.
template <typename T>
void gru_rbl_grad_whh(const PackedRnn<T>& w, int rows, const T* dgates, const PackedMatrix<T>& h_prev, const T* rh,
                      T* dw_hh_internal, bool accumulate, PackedMatrix<T>& rh_packed, int nthreads);

}  // namespace rnnkit
