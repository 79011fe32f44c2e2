// One time step of one cell, forward or backward, as the time loops call
// it: every thread of a region of nth threads calls it for its run [jb, je)
// of unit blocks (backward: also its run [pb, pe) of W_hh panels). All
// cells share one signature per direction, so a loop picks its cell once
// per call (a function pointer) and a new cell is a new step file.
#pragma once
#include "layer/packed_weights.h"
#include "layer/step_product.h"

namespace rnnkit {

// A forward step's operands, `rows` batch rows, row strides G*H (gx),
// kWorkspaceSlots*H (ws) and H (the rest).
template <typename T>
struct ForwardStep {
    int rows;
    const T* gx;          // input projection W_ih x of the step (biases not yet added)
    const T* h_prev;
    T* h;
    const T* c_prev;      // LSTM only
    T* c;                 // LSTM only
    T* ws;                // training: the step's workspace; GRU reset before linear: scratch; else nullptr
    T* rh;                // GRU reset before linear only: out, r * h_prev
    bool backwards;       // walk the blocks backwards (odd steps; see walked)
    TileFeed<T>* feed;    // fused projection: pieces for the recurrent products' calls; else nullptr
    LowpRows* lowp;       // bf16/int8 products: this thread's converted operand rows (room for H); else nullptr
};

// scratch: this thread's rows * G * kUnitBlock values. Returns without a
// final barrier; the caller waits for every thread's h before the next step.
template <typename T>
using ForwardStepFn = void (*)(const PackedRnn<T>& w, const ForwardStep<T>& s, T* scratch, int jb, int je, int nth);

// A backward step's operands (same strides; dgx, dgh G*H).
template <typename T>
struct BackwardStep {
    int rows;
    const T* ws;          // the step's workspace
    const T* h_prev;
    const T* c_prev;      // LSTM only
    const T* c;           // LSTM only
    const T* dy;          // or nullptr
    T* dh;                // in: dh from the step after; out: dh_prev (this step's rows)
    T* dc;                // LSTM only, in and out like dh
    T* dgx;               // out: input side's gate gradients
    T* dgh;               // out: recurrent side's (the same buffer where they are equal)
    bool backwards;       // walk the blocks or panels backwards (odd steps)
    LowpRows* lowp;       // bf16 products: this thread's converted gate gradients (room for G*H); else nullptr
};

// The backward products' weights, packed before the region:
// w.whh_for_backward, and for the GRU reset before linear w.whn_for_backward;
// bf16 products: w.whh_lp_for_backward and w.whn_lp_for_backward instead
// (the others then nullptr).
template <typename T>
struct BackwardWeights {
    const PackedMatrix<T>* whh;
    const PackedMatrix<T>* whn;
    const LowpMatrix* whh_lp;
    const LowpMatrix* whn_lp;
    // Panel width of the dh products' weights.
    int nr() const { return whh_lp ? whh_lp->nr : whh->nr; }
};

// scratch: this thread's rows * kUnitBlock values (GRU reset before linear
// only). Leaves dh_prev complete for the next step's threads.
template <typename T>
using BackwardStepFn = void (*)(const PackedRnn<T>& w, const BackwardWeights<T>& bw, const BackwardStep<T>& s,
                                T* scratch, int jb, int je, int pb, int pe, int nth);

template <typename T>
void lstm_forward_step(const PackedRnn<T>& w, const ForwardStep<T>& s, T* scratch, int jb, int je, int nth);
template <typename T>
void gru_lbr_forward_step(const PackedRnn<T>& w, const ForwardStep<T>& s, T* scratch, int jb, int je, int nth);
template <typename T>
void gru_no_lbr_forward_step(const PackedRnn<T>& w, const ForwardStep<T>& s, T* scratch, int jb, int je, int nth);

template <typename T>
void lstm_backward_step(const PackedRnn<T>& w, const BackwardWeights<T>& bw, const BackwardStep<T>& s, T* scratch,
                        int jb, int je, int pb, int pe, int nth);
template <typename T>
void gru_lbr_backward_step(const PackedRnn<T>& w, const BackwardWeights<T>& bw, const BackwardStep<T>& s,
                           T* scratch, int jb, int je, int pb, int pe, int nth);
template <typename T>
void gru_no_lbr_backward_step(const PackedRnn<T>& w, const BackwardWeights<T>& bw, const BackwardStep<T>& s,
                              T* scratch, int jb, int je, int pb, int pe, int nth);

// The step functions of w's cell.
template <typename T>
ForwardStepFn<T> forward_step_of(const PackedRnn<T>& w) {
    if (w.cell == CellKind::lstm) return &lstm_forward_step<T>;
    return w.linear_before_reset ? &gru_lbr_forward_step<T> : &gru_no_lbr_forward_step<T>;
}
template <typename T>
BackwardStepFn<T> backward_step_of(const PackedRnn<T>& w) {
    if (w.cell == CellKind::lstm) return &lstm_backward_step<T>;
    return w.linear_before_reset ? &gru_lbr_backward_step<T> : &gru_no_lbr_backward_step<T>;
}

// dh_prev (+)= dgh x W_hh for this thread's panels [pb, pe) of dh, between
// two barriers: the product reads the gate gradients of every unit, and the
// next step reads every unit of dh. Shared by the cells whose recurrent
// product is one GEMM (LSTM, GRU linear before reset).
template <typename T>
void recurrent_dh_product(const PackedRnn<T>& w, const BackwardWeights<T>& bw, const BackwardStep<T>& s,
                          bool accumulate, int pb, int pe, int nth);

}  // namespace rnnkit
