// Weights of one LSTM/GRU layer direction, packed once for the kernels of
// one ISA and reused by every call.
//
// Gate layout. Hidden units are cut into blocks of kUnitBlock; inside a
// block the G gates of the same units sit side by side (gate g of unit u at
// g * units + u). A thread that owns a block computes all its gates with one
// GEMM and applies the fused gate math to them straight away, in L1. Every
// internal gate vector (projections, biases, workspace, gate gradients) uses
// this layout; PyTorch's layout is restored only at the edges.
#pragma once
#include <memory>
#include <mutex>

#include "dispatch.h"
#include "layer/gemm_driver.h"
#include "layer/lowp_gemm.h"

namespace rnnkit {

enum class CellKind { lstm, gru };

inline int gate_count(CellKind c) { return c == CellKind::lstm ? 4 : 3; }
// Values per unit kept for backward: LSTM i,f,g,o; GRU r,z,n,(W_hn h + b_hn)
// (reset before linear: r,z,n and a spare slot).
constexpr int kWorkspaceSlots = 4;
// Units per block: a multiple of every panel width divided by the gate count
// (G * 32 is a multiple of 32, 16 and 8), and small enough that two threads
// share even H = 64.
constexpr int kUnitBlock = 32;

struct GateLayout {
    int H = 0, G = 0;
    // GRU reset before linear: the n gate leaves the blocks and follows them
    // in unit order (internal rows (G-1)*H + u). Its recurrent product, which
    // needs r of every unit first, is then a matrix of its own, and r,z and n
    // each span one range that a single GEMM reads or writes.
    bool n_apart = false;
    int block_gates() const { return n_apart ? G - 1 : G; }
    int blocks() const { return (H + kUnitBlock - 1) / kUnitBlock; }
    int block_start(int j) const { return j * kUnitBlock; }
    int block_units(int j) const { return H - j * kUnitBlock < kUnitBlock ? H - j * kUnitBlock : kUnitBlock; }
    // Internal position of PyTorch's gate row g * H + u.
    int internal_row(int g, int u) const {
        if (n_apart && g == G - 1) return (G - 1) * H + u;
        const int u0 = u / kUnitBlock * kUnitBlock;
        const int units = H - u0 < kUnitBlock ? H - u0 : kUnitBlock;
        return block_gates() * u0 + g * units + (u - u0);
    }
};

template <typename T>
struct PackedRnn {
    CellKind cell;
    Isa isa;
    const Kernels<T>* kern;
    int I, H, G;
    // GRU form: true = linear before reset (PyTorch's), false = reset
    // before linear (layout.n_apart). Always true for the LSTM.
    bool linear_before_reset = true;
    GateLayout layout;
    // B operands of the forward products: W_ih^T (I x GH), W_hh^T (H x GH);
    // GRU reset before linear: W_h[rz]^T (H x 2H) and W_hn^T (H x H) apart.
    PackedMatrix<T> wih_t, whh_t, whn_t;
    // Internal layout. LSTM and GRU reset before linear: b_ih + b_hh.
    // GRU linear before reset: r, z: b_ih + b_hh; n: b_in.
    AlignedBuffer<T> bias;
    AlignedBuffer<T> bias_hn;   // GRU linear before reset only: b_hn, applied inside r * (...)
    // The biases as given, PyTorch order (G*H each), empty where left out:
    // the folded ones above lose b_ih and b_hh apart, which unpacking and
    // matching need back exactly. Small next to the weights.
    AlignedBuffer<T> b_ih_given, b_hh_given;
    // What the products take (design: Precisions). A float layer may keep
    // its weights as bf16 or int8 panels instead (wih_lp, whh_lp, whn_lp:
    // the same matrices as wih_t, whh_t, whn_t, which then stay empty);
    // its states, gate math and sums stay float32.
    Precision products = Precision::full;
    const KernelSet* kset = nullptr;
    LowpMatrix wih_lp, whh_lp, whn_lp;

    // B operand of the backward step product, W_hh (GH x H), packed on first
    // use: inference never pays for it. (dx's W_ih is transposed from wih_t
    // a slice at a time instead: it is used once per backward pass.)
    const PackedMatrix<T>& whh_for_backward(int nthreads) const;
    // GRU reset before linear: W_hn (H x H); whh_for_backward is W_h[rz].
    const PackedMatrix<T>& whn_for_backward(int nthreads) const;
    // The same two for bf16 products (products == bf16; the two above are
    // then empty): the transposes of whh_lp and whn_lp, as bf16 panels.
    const LowpMatrix& whh_lp_for_backward(int nthreads) const;
    const LowpMatrix& whn_lp_for_backward(int nthreads) const;

private:
    template <typename U>
    friend void repack_rnn(PackedRnn<U>&, const U*, const U*, const U*, const U*, int);
    // Guarded by one lock for all weights (backward_pack_mutex in the .cpp),
    // which a fork() cannot leave held in the child.
    mutable bool bwd_packed_ = false;
    mutable PackedMatrix<T> whh_n_, whn_n_;
    mutable LowpMatrix whh_n_lp_, whn_n_lp_;
    void pack_backward(int nthreads) const;
};

// Weights in PyTorch layout, C-contiguous: w_ih (G*H, I), w_hh (G*H, H),
// biases (G*H) or nullptr for zeros. linear_before_reset picks the GRU's
// form (ignored for the LSTM). products: bf16 or int8 for float only
// (std::invalid_argument for double).
template <typename T>
std::shared_ptr<PackedRnn<T>> pack_rnn(CellKind cell, Isa isa, int I, int H, const T* w_ih, const T* w_hh,
                                       const T* b_ih, const T* b_hh, int nthreads, bool linear_before_reset = true,
                                       Precision products = Precision::full);

// New weights of the same shape and form packed into p's own buffers (an
// optimizer step). The caller makes sure no forward or backward pass is
// using p meanwhile.
template <typename T>
void repack_rnn(PackedRnn<T>& p, const T* w_ih, const T* w_hh, const T* b_ih, const T* b_hh, int nthreads);

// The exact inverse of packing: p's weights in PyTorch layout, C-contiguous,
// w_ih (G*H, I) and w_hh (G*H, H). Packing only copies and permutes values
// (padding aside), so these hold the very bits that were packed, whatever
// the ISA (its panel width and k block are read from p's own packs).
template <typename T>
void unpack_rnn(const PackedRnn<T>& p, T* w_ih, T* w_hh);

// Whether p was packed from exactly these weights (PyTorch layout,
// C-contiguous; biases nullptr for zeros, as in pack_rnn), bit for bit:
// -0.0 differs from +0.0 and one NaN payload from another. Stops at the
// first difference. A staleness check without a copy of the weights.
template <typename T>
bool rnn_matches(const PackedRnn<T>& p, const T* w_ih, const T* w_hh, const T* b_ih, const T* b_hh,
                 int nthreads = 1);

// Rows of an internal-layout (G*H x cols) matrix put back in PyTorch order, in place.
template <typename T>
void rows_to_torch_order_in_place(const GateLayout& lay, int cols, T* m, int nthreads = 1);

}  // namespace rnnkit
