// GRU "reset before linear" (linear_before_reset = false, n = tanh(W_in x +
// b_in + W_hn (r * h) + b_hn)): its steps for the drivers' time loops. The n gate's recurrent product needs r
// of every hidden unit, so a step runs in two halves with a barrier between;
// each thread keeps its own run [jb, je) of unit blocks in both halves.
// Internal gate layout (GateLayout::n_apart): per row, r,z in blocks of
// kUnitBlock units (block j at 2 * j * kUnitBlock), then n in unit order at 2H.
#pragma once
#include "layer/packed_weights.h"

namespace rnnkit {

// Its forward and backward steps are in cell_step.h (gru_no_lbr_forward_step:
// scratch of rows * 2 * kUnitBlock values; gru_no_lbr_backward_step: of
// rows * kUnitBlock, needing no barrier after it, since every thread reads
// and writes only its own units of dh and the next step's gate gradients go
// elsewhere).

// dW_hh of a sequence in internal row order (G*H x H), or the part of it
// from some rows (added on with accumulate): the r,z rows are
// dgates_rz^T H_prev (h_prev: the packed states entering each row's step),
// the n rows dgates_n^T RH (rh: r * h_prev of every row, (rows, H)).
// rh_packed is the caller's, to reuse over calls.
template <typename T>
void gru_no_lbr_grad_whh(const PackedRnn<T>& w, int rows, const T* dgates, const PackedMatrix<T>& h_prev,
                         const T* rh, T* dw_hh_internal, bool accumulate, PackedMatrix<T>& rh_packed, int nthreads);

}  // namespace rnnkit
