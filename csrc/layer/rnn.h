// Single-layer, single-direction LSTM/GRU drivers over a whole sequence.
// Time-major: x (T, B, I), states (B, H), y (T, B, H); all C-contiguous.
#pragma once
#include <memory>

#include "layer/packed_weights.h"

namespace rnnkit {

template <typename T>
struct ForwardArgs {
    int steps = 0, batch = 0;
    bool reverse = false;         // process t = T-1 .. 0
    const T* x = nullptr;
    const T* h0 = nullptr;        // nullptr: zeros
    const T* c0 = nullptr;        // LSTM only; nullptr: zeros
    T* y = nullptr;
    T* h_n = nullptr;
    T* c_n = nullptr;             // LSTM only
};

// What the backward pass needs, kept by a training forward.
// State slots: slot prev_slot(t) holds the state entering time t and
// out_slot(t) the state it produces; the initial state has its own slot, and
// states entering consecutive times are contiguous (one GEMM for dW_hh).
template <typename T>
struct TrainingContext {
    std::shared_ptr<const PackedRnn<T>> weights;
    int steps = 0, batch = 0;
    bool reverse = false;
    AlignedBuffer<T> x;        // copy of the input, (T, B, I)
    AlignedBuffer<T> gates;    // (T, B, kWorkspaceSlots * H), internal layout, by time
    AlignedBuffer<T> h;        // (T + 1, B, H) slots
    AlignedBuffer<T> c;        // LSTM only, (T + 1, B, H) slots
    AlignedBuffer<T> rh;       // GRU reset before linear only: r * h_prev, (T, B, H) by time

    int prev_slot(int t) const { return reverse ? t + 1 : t; }
    int out_slot(int t) const { return reverse ? t : t + 1; }
    int initial_slot() const { return reverse ? steps : 0; }
};

template <typename T>
struct BackwardArgs {
    const T* dy = nullptr;        // (T, B, H) or nullptr
    const T* dh_n = nullptr;      // (B, H) or nullptr
    const T* dc_n = nullptr;      // LSTM only, or nullptr
    T* dx = nullptr;              // (T, B, I)
    T* dh0 = nullptr;             // (B, H)
    T* dc0 = nullptr;             // LSTM only
    T* dw_ih = nullptr;           // (G*H, I), PyTorch order
    T* dw_hh = nullptr;           // (G*H, H)
    T* db_ih = nullptr;           // (G*H)
    T* db_hh = nullptr;           // (G*H)
};

// ctx == nullptr: inference (no per-step workspace). Otherwise ctx is filled
// for rnn_backward (its weights field must already be set to w).
template <typename T>
void rnn_forward(const PackedRnn<T>& w, const ForwardArgs<T>& args, TrainingContext<T>* ctx, int nthreads);

template <typename T>
void rnn_backward(const TrainingContext<T>& ctx, const BackwardArgs<T>& args, int nthreads);

}  // namespace rnnkit
