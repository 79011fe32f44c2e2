// Single-layer, single-direction LSTM/GRU drivers over a whole sequence.
// Time-major: x (T, B, I), states (B, H), y (T, B, H); all C-contiguous.
// With batch_sizes, x and y are packed instead (PyTorch's PackedSequence
// data): step t has batch_sizes[t] rows, the first rows of the batch, at
// packed rows start(t) = sum(batch_sizes[:t]).
#pragma once
#include <algorithm>
#include <cstddef>
#include <memory>
#include <vector>

#include "layer/packed_weights.h"

namespace rnnkit {

// Rows of each step: `batch` everywhere, or batch_sizes[t] (non-increasing,
// each >= 1, batch_sizes[0] == batch). Sequence b has length(b) steps; the
// rows of step t are always the prefix [0, rows(t)) of the sorted batch.
struct StepRows {
    int batch = 0;
    bool uniform = true;                 // every step has `batch` rows
    std::vector<int> sizes;              // (T,)
    std::vector<std::size_t> starts;     // (T + 1,): packed row of each step

    void init(int steps, int batch_, const int* batch_sizes) {
        batch = batch_;
        if (batch_sizes) sizes.assign(batch_sizes, batch_sizes + steps);
        else sizes.assign(steps, batch_);
        starts.assign(steps + 1, 0);
        uniform = true;
        for (int t = 0; t < steps; ++t) {
            starts[t + 1] = starts[t] + std::size_t(sizes[t]);
            uniform = uniform && sizes[t] == batch_;
        }
    }
    int rows(int t) const { return sizes[t]; }
    std::size_t start(int t) const { return starts[t]; }
    std::size_t total() const { return starts.back(); }
    // Steps of sequence b: how many sizes exceed b.
    int length(int b) const {
        return int(std::partition_point(sizes.begin(), sizes.end(), [b](int s) { return s > b; }) - sizes.begin());
    }
    // The step whose rows hold packed row r.
    int step_of(std::size_t r) const {
        return int(std::upper_bound(starts.begin(), starts.end(), r) - starts.begin()) - 1;
    }
};

template <typename T>
struct ForwardArgs {
    int steps = 0, batch = 0;
    bool reverse = false;         // process t = T-1 .. 0
    const int* batch_sizes = nullptr;   // (steps,), or nullptr: `batch` rows every step
    const T* x = nullptr;
    const T* h0 = nullptr;        // nullptr: zeros
    const T* c0 = nullptr;        // LSTM only; nullptr: zeros
    T* y = nullptr;
    T* h_n = nullptr;
    T* c_n = nullptr;             // LSTM only
};

// What the backward pass needs, kept by a training forward.
// States are stored by rows of H values; in_row(t) is where the rows(t)
// states entering step t start, out_row(t) where the states it produces go.
// Forward: [h0 (B rows) | out(0) | out(1) | ...], out(t) of rows(t) rows;
// step t enters with the first rows(t) of out(t-1).
// Reverse: [out(0) (B rows) | in(0) | in(1) | ... | in(T-1)], in(t) of
// rows(t) rows; step t writes its rows(t) outputs into in(t-1), whose other
// rows (sequences that start at t-1) hold h0. The states entering the steps
// are then one packed (N, H) matrix, one GEMM operand for dW_hh.
// With rows(t) == B everywhere both are T + 1 slots of B rows.
template <typename T>
struct TrainingContext {
    std::shared_ptr<const PackedRnn<T>> weights;
    int steps = 0, batch = 0;
    bool reverse = false;
    StepRows rows;
    const T* x = nullptr;      // the input, (N, I) packed rows: the caller keeps it, unchanged, until backward
    AlignedBuffer<T> gates;    // (N, kWorkspaceSlots * H), internal layout, packed rows
    AlignedBuffer<T> h;        // (B + N, H) state rows
    AlignedBuffer<T> c;        // LSTM only, (B + N, H) state rows
    AlignedBuffer<T> rh;       // GRU reset before linear only: r * h_prev, (N, H) packed rows

    std::size_t in_row(int t) const {
        if (reverse) return std::size_t(batch) + rows.start(t);
        return t == 0 ? 0 : std::size_t(batch) + rows.start(t - 1);
    }
    std::size_t out_row(int t) const {
        if (reverse) return t == 0 ? 0 : std::size_t(batch) + rows.start(t - 1);
        return std::size_t(batch) + rows.start(t);
    }
};

template <typename T>
struct BackwardArgs {
    const T* dy = nullptr;        // (T, B, H) (packed: (N, H)) or nullptr
    const T* dh_n = nullptr;      // (B, H) or nullptr
    const T* dc_n = nullptr;      // LSTM only, or nullptr
    T* dx = nullptr;              // (T, B, I) (packed: (N, I))
    T* dh0 = nullptr;             // (B, H)
    T* dc0 = nullptr;             // LSTM only
    T* dw_ih = nullptr;           // (G*H, I), PyTorch order
    T* dw_hh = nullptr;           // (G*H, H)
    T* db_ih = nullptr;           // (G*H)
    T* db_hh = nullptr;           // (G*H)
};

// One layer direction over a whole sequence (rnnkit.layers stacks them).
// ctx == nullptr: inference (no per-step workspace). Otherwise ctx is filled
// for layer_backward (its weights field must already be set to w).
template <typename T>
void layer_forward(const PackedRnn<T>& w, const ForwardArgs<T>& args, TrainingContext<T>* ctx, int nthreads);

template <typename T>
void layer_backward(const TrainingContext<T>& ctx, const BackwardArgs<T>& args, int nthreads);

}  // namespace rnnkit
