// The interface between the portable drivers and the per-ISA leaf kernels:
// plain argument structs and a table of function pointers. Nothing here has
// code, so including it from objects of different ISAs is harmless.
#pragma once
#include <cstddef>

#include "kernels/product_table.h"

namespace rnnkit {

// The gates of one block of `units` hidden units are stored side by side:
// gate g of unit u sits at offset g * units + u inside the block, and rows
// (batch elements) are `ld*` apart. See layer/packed_weights.h.

// LSTM step, forward: a = gx + gh + bias; i,f,o = sigmoid, g = tanh;
// c = f * c_prev + i * g; h = o * tanh(c). ws (optional) receives i,f,g,o.
template <typename T> struct LstmFwdArgs {
    int rows, units;
    const T* gx; std::ptrdiff_t ld_gx;      // input projection, 4 gates
    const T* gh; std::ptrdiff_t ld_gh;      // recurrent product, 4 gates
    const T* bias;                          // 4 gates, b_ih + b_hh
    const T* c_prev; std::ptrdiff_t ld_c_prev;
    T* h; std::ptrdiff_t ld_h;
    T* c; std::ptrdiff_t ld_c;
    T* ws; std::ptrdiff_t ld_ws;            // nullptr in inference
};

// LSTM step, backward. dh = dy + dh_rec; writes the pre-activation gate
// gradients and replaces dc (in: from step t+1, out: for step t-1).
template <typename T> struct LstmBwdArgs {
    int rows, units;
    const T* ws; std::ptrdiff_t ld_ws;      // i,f,g,o of this step
    const T* c_prev; std::ptrdiff_t ld_c_prev;
    const T* c; std::ptrdiff_t ld_c;        // c_t
    const T* dy; std::ptrdiff_t ld_dy;      // may be nullptr
    const T* dh_rec; std::ptrdiff_t ld_dh_rec;
    T* dc; std::ptrdiff_t ld_dc;            // in/out
    T* dgates; std::ptrdiff_t ld_dgates;    // 4 gates
};

// GRU step, linear_before_reset = true (lbr, PyTorch's form), forward:
// r = sigmoid(gx_r + gh_r + b_r), z = sigmoid(gx_z + gh_z + b_z),
// n = tanh(gx_n + b_n + r * (gh_n + b_hn)), h = n + z * (h_prev - n).
// ws (optional) receives r, z, n and gh_n + b_hn.
template <typename T> struct GruFwdArgs {
    int rows, units;
    const T* gx; std::ptrdiff_t ld_gx;      // 3 gates
    const T* gh; std::ptrdiff_t ld_gh;      // 3 gates
    const T* bias;                          // 3 gates: b_ir+b_hr, b_iz+b_hz, b_in
    const T* bias_hn;                       // b_hn
    const T* h_prev; std::ptrdiff_t ld_h_prev;
    T* h; std::ptrdiff_t ld_h;
    T* ws; std::ptrdiff_t ld_ws;            // 4 slots
};

// GRU step, backward. dh = dy + dh_rec. Writes the gate gradients seen by
// the input side (dgx) and by the recurrent side (dgh, which differs in the
// n gate by the factor r), and dh_prev = dh * z (the direct path; the driver
// adds dgh x W_hh on top).
template <typename T> struct GruBwdArgs {
    int rows, units;
    const T* ws; std::ptrdiff_t ld_ws;
    const T* h_prev; std::ptrdiff_t ld_h_prev;
    const T* dy; std::ptrdiff_t ld_dy;      // may be nullptr
    const T* dh_rec; std::ptrdiff_t ld_dh_rec;
    T* dgx; std::ptrdiff_t ld_dgx;
    T* dgh; std::ptrdiff_t ld_dgh;
    T* dh_prev; std::ptrdiff_t ld_dh_prev;
};

// GRU step, linear_before_reset = false (no_lbr; Cho et al. 2014, ONNX's default):
// n = tanh(gx_n + (r * h_prev) W_hn^T + b_in + b_hn). The n gate's recurrent
// product needs r of every unit, so a step runs in two halves with the
// product in between, and so does its backward. Gate pointers address one
// block: r of unit u at u, z at units + u (ws: n at 2 * units + u).

// Forward, first half: r = sigmoid(gx_r + gh_r + b_r), z likewise. Writes
// r and z (to rz, r then z) and r * h_prev, the left operand of the n product.
template <typename T> struct GruNoLbrRzFwdArgs {
    int rows, units;
    const T* gx; std::ptrdiff_t ld_gx;      // r, z
    const T* gh; std::ptrdiff_t ld_gh;      // r, z: h_prev W_h[rz]^T
    const T* bias;                          // r, z: b_i + b_h
    const T* h_prev; std::ptrdiff_t ld_h_prev;
    T* rz; std::ptrdiff_t ld_rz;            // out: r, z
    T* rh; std::ptrdiff_t ld_rh;            // out: r * h_prev
};

// Forward, second half: n = tanh(gx_n + gh_n + b_n), h = n + z * (h_prev - n).
template <typename T> struct GruNoLbrNFwdArgs {
    int rows, units;
    const T* gx; std::ptrdiff_t ld_gx;      // n
    const T* gh; std::ptrdiff_t ld_gh;      // (r * h_prev) W_hn^T
    const T* bias;                          // b_in + b_hn
    const T* z; std::ptrdiff_t ld_z;
    const T* h_prev; std::ptrdiff_t ld_h_prev;
    T* h; std::ptrdiff_t ld_h;
    T* n; std::ptrdiff_t ld_n;              // out: n, or nullptr in inference
};

// Backward, first half. dh = dy + dh_rec; writes the pre-activation
// gradients of z and n and dh_prev = dh * z (the direct path; may alias
// dh_rec). The r gate waits for d(r * h_prev) = da_n W_hn.
template <typename T> struct GruNoLbrZnBwdArgs {
    int rows, units;
    const T* ws; std::ptrdiff_t ld_ws;      // r, z, n of this step
    const T* h_prev; std::ptrdiff_t ld_h_prev;
    const T* dy; std::ptrdiff_t ld_dy;      // may be nullptr
    const T* dh_rec; std::ptrdiff_t ld_dh_rec;
    T* da_z; std::ptrdiff_t ld_da_z;
    T* da_n; std::ptrdiff_t ld_da_n;
    T* dh_prev; std::ptrdiff_t ld_dh_prev;
};

// Backward, second half, given d_rh = d(r * h_prev): writes the r gate's
// pre-activation gradient and adds d_rh * r to dh_prev.
template <typename T> struct GruNoLbrRBwdArgs {
    int rows, units;
    const T* r; std::ptrdiff_t ld_r;
    const T* h_prev; std::ptrdiff_t ld_h_prev;
    const T* d_rh; std::ptrdiff_t ld_d_rh;
    T* da_r; std::ptrdiff_t ld_da_r;
    T* dh_prev; std::ptrdiff_t ld_dh_prev;  // in/out
};

// A piece of one micro-tile of another product, carried along by
// gemm_rows_panels_tile: C[tile_rows x n] = A[tile_rows x K] * panel over
// k in [k0, k1) only; for k0 > 0 the chain resumes from the partial sums
// the previous piece stored in C, and each piece stores its own, so the
// finished tile holds the sums gemm_ukernel forms in one call.
template <typename T> struct TilePiece {
    const T* a; std::ptrdiff_t rsa;        // a(i, p) = a[i * rsa + p]
    const T* panel;                         // K rows of nr values
    T* c; std::ptrdiff_t ldc;
    int n, k0, k1;                          // n <= nr columns
};

template <typename T> struct Kernels {
    const char* isa;
    int gemm_mr, gemm_nr;   // micro-tile rows and columns
    // Depth of one k block of packed B (a multiple of gemm_nr), and rows of A
    // per block in the drivers' loops: kernels/config_<isa>.h.
    int gemm_kc, gemm_mc;
    // Rows that gemm_rows_panels takes: all rows when there are at most
    // gemm_panel_rows, rows beyond whole tiles when at most gemm_spare_panel_rows.
    int gemm_panel_rows, gemm_spare_panel_rows;
    // C[m x n] (+)= A[m x k] * Bpanel[k x nr]; a(i, p) = a[i * rsa + p * csa];
    // m <= mr, n <= nr; the panel is k rows of nr values, zero padded.
    // b_next: the panel the caller reads next (prefetched meanwhile), or nullptr.
    void (*gemm_ukernel)(int m, int n, int k, const T* a, std::ptrdiff_t rsa, std::ptrdiff_t csa,
                         const T* b_panel, const T* b_next, T* c, std::ptrdiff_t ldc, bool accumulate);
    // C[m x n] (+)= A[m x k] * [panel 0 | ... | panel P-1] for a few rows,
    // m = `rows` (1 to 3), P = `panels` (2 or 3), n <= P * nr; panel q
    // starts at b + q * stride. A and C as for gemm_ukernel.
    void (*gemm_rows_panels)(int rows, int panels, int n, int k, const T* a, std::ptrdiff_t rsa,
                             std::ptrdiff_t csa, const T* b, std::ptrdiff_t stride, T* c, std::ptrdiff_t ldc,
                             bool accumulate);
    // Rows of a TilePiece on this ISA; 0 where gemm_rows_panels_tile is absent.
    int gemm_tile_rows;
    // gemm_rows_panels for rows = 1 (or 0: the piece alone) while it also
    // computes `piece`, their k loops interleaved: a one-row product waits on
    // loads of B with its FMA units mostly idle, and the piece's FMAs run in
    // those slots.
    void (*gemm_rows_panels_tile)(int rows, int panels, int n, int k, const T* a, std::ptrdiff_t csa,
                                  const T* b, std::ptrdiff_t stride, T* c, const TilePiece<T>& piece);
    // Copies the k x n (n <= nr) block b(p, j) = b[p * rsb + j * csb] into a
    // panel of k rows of nr values, padding columns n..nr-1 with zeros.
    // Fast where rows (csb == 1) or columns (rsb == 1) are contiguous.
    void (*pack_b_panel)(int k, int n, const T* b, std::ptrdiff_t rsb, std::ptrdiff_t csb, T* panel);
    void (*sigmoid)(std::ptrdiff_t n, const T* x, T* y);
    void (*tanh)(std::ptrdiff_t n, const T* x, T* y);
    void (*lstm_postgemm_fwd)(const LstmFwdArgs<T>& a);
    void (*lstm_postgemm_bwd)(const LstmBwdArgs<T>& a);
    void (*gru_postgemm_fwd)(const GruFwdArgs<T>& a);
    void (*gru_postgemm_bwd)(const GruBwdArgs<T>& a);
    // One block of GRU gate gradients, rows `ld_dg` apart, turned from the
    // input side's into the recurrent side's: the n gate times r (ws slot 0),
    // the same product gru_postgemm_bwd writes to dgh.
    void (*gru_dgh_from_dgx)(int rows, int units, const T* ws, std::ptrdiff_t ld_ws, T* dg, std::ptrdiff_t ld_dg);
    void (*gru_no_lbr_postgemm_fwd_rz)(const GruNoLbrRzFwdArgs<T>& a);
    void (*gru_no_lbr_postgemm_fwd_n)(const GruNoLbrNFwdArgs<T>& a);
    void (*gru_no_lbr_postgemm_bwd_zn)(const GruNoLbrZnBwdArgs<T>& a);
    void (*gru_no_lbr_postgemm_bwd_r)(const GruNoLbrRBwdArgs<T>& a);
    // sums[j] += sum over i (in increasing order) of a[i * lda + j].
    void (*column_sums)(int m, int n, const T* a, std::ptrdiff_t lda, T* sums);
};

// One ISA's kernels, a column per precision.
struct KernelSet {
    Kernels<float> f32;
    Kernels<double> f64;
    Bf16Kernels bf16;
    Int8Kernels int8;
};

}  // namespace rnnkit
