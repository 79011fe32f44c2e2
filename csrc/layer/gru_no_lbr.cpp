#include "layer/gru_no_lbr.h"

#include "layer/cell_step.h"
#include "layer/rnn_common.h"
#include "layer/threading.h"

namespace rnnkit {

template <typename T>
void gru_no_lbr_forward_step(const PackedRnn<T>& w, const ForwardStep<T>& s, T* scratch, int jb, int je, int nth) {
    const Kernels<T>& kern = *w.kern;
    const int H = w.H, GH = w.G * H;
    const std::ptrdiff_t ld_ws = std::ptrdiff_t(kWorkspaceSlots) * H;
    // r and z of the thread's blocks, each from one product with its 2 * units
    // columns of W_h[rz]^T (block starts are multiples of every panel width).
    const StepOperand<T> h_prev = step_operand(w, StepWeights::hh, s.rows, s.h_prev, H, s.lowp);
    for (int k = jb; k < je; ++k) {
        const int j = walked(k, jb, je, s.backwards);
        const int u0 = w.layout.block_start(j), units = w.layout.block_units(j);
        step_product(w, StepWeights::hh, s.rows, 2 * u0, 2 * (u0 + units), h_prev, scratch, 2 * units, false);
        GruNoLbrRzFwdArgs<T> a{s.rows, units, s.gx + 2 * u0, GH, scratch, 2 * units, w.bias.data() + 2 * u0,
                             s.h_prev + u0, H, s.ws + kWorkspaceSlots * u0, ld_ws, s.rh + u0, H};
        kern.gru_no_lbr_postgemm_fwd_rz(a);
    }
    // The n products below read r * h_prev of every unit.
    region_barrier(nth);
    const StepOperand<T> rh = step_operand(w, StepWeights::hn, s.rows, s.rh, H, s.lowp);
    for (int k = jb; k < je; ++k) {
        const int j = walked(k, jb, je, s.backwards);
        const int u0 = w.layout.block_start(j), units = w.layout.block_units(j);
        T* wsb = s.ws + kWorkspaceSlots * u0;
        step_product(w, StepWeights::hn, s.rows, u0, u0 + units, rh, scratch, units, false);
        GruNoLbrNFwdArgs<T> a{s.rows, units, s.gx + 2 * H + u0, GH, scratch, units, w.bias.data() + 2 * H + u0,
                            wsb + units, ld_ws, s.h_prev + u0, H, s.h + u0, H, wsb + 2 * units, ld_ws};
        kern.gru_no_lbr_postgemm_fwd_n(a);
    }
}

template <typename T>
void gru_no_lbr_backward_step(const PackedRnn<T>& w, const BackwardWeights<T>& bw, const BackwardStep<T>& s,
                              T* scratch, int jb, int je, int, int, int nth) {
    const Kernels<T>& kern = *w.kern;
    const int H = w.H, GH = w.G * H;
    const std::ptrdiff_t ld_ws = std::ptrdiff_t(kWorkspaceSlots) * H;
    T* dg_n = s.dgx + 2 * H;
    // z and n gradients and the direct path dh * z, per block.
    for (int j = jb; j < je; ++j) {
        const int u0 = w.layout.block_start(j), units = w.layout.block_units(j);
        GruNoLbrZnBwdArgs<T> a{s.rows, units, s.ws + kWorkspaceSlots * u0, ld_ws, s.h_prev + u0, H,
                             s.dy ? s.dy + u0 : nullptr, H, s.dh + u0, H, s.dgx + 2 * u0 + units, GH,
                             dg_n + u0, GH, s.dh + u0, H};
        kern.gru_no_lbr_postgemm_bwd_zn(a);
    }
    // d(r * h_prev) = da_n W_hn reads da_n of every unit (bf16 products:
    // converted once for all of this thread's blocks).
    region_barrier(nth);
    const int rows = jb < je ? s.rows : 0;
    const StepOperand<T> da_n = step_operand_k(w, H, rows, dg_n, GH, s.lowp);
    for (int k = jb; k < je; ++k) {
        const int j = walked(k, jb, je, s.backwards);
        const int u0 = w.layout.block_start(j), units = w.layout.block_units(j);
        backward_product(w, bw.whn, bw.whn_lp, s.rows, u0, u0 + units, da_n, scratch, units, false);
        GruNoLbrRBwdArgs<T> a{s.rows, units, s.ws + kWorkspaceSlots * u0, ld_ws, s.h_prev + u0, H, scratch, units,
                            s.dgx + 2 * u0, GH, s.dh + u0, H};
        kern.gru_no_lbr_postgemm_bwd_r(a);
    }
    // dh_prev += [da_r, da_z] W_h[rz] reads da_r of every unit; each thread
    // adds onto its own units only.
    region_barrier(nth);
    const StepOperand<T> da_rz = step_operand_k(w, 2 * H, rows, s.dgx, GH, s.lowp);
    for (int k = jb; k < je; ++k) {
        const int j = walked(k, jb, je, s.backwards);
        const int u0 = w.layout.block_start(j), units = w.layout.block_units(j);
        backward_product(w, bw.whh, bw.whh_lp, s.rows, u0, u0 + units, da_rz, s.dh + u0, H, true);
    }
}

template <typename T>
void gru_no_lbr_grad_whh(const PackedRnn<T>& w, int rows, const T* dgates, const PackedMatrix<T>& h_prev,
                         const T* rh, T* dw_hh_internal, bool accumulate, PackedMatrix<T>& rh_packed, int nthreads) {
    const Kernels<T>& kern = *w.kern;
    const int H = w.H, GH = w.G * H;
    // r, z rows: both gates multiply h_prev.
    gemm_parallel(kern, 2 * H, dgates, 1, GH, h_prev, dw_hh_internal, H, accumulate, nthreads);
    // n rows: the n gate's product multiplies r * h_prev.
    pack_matrix(kern, rows, H, rh, H, 1, rh_packed, nthreads);
    gemm_parallel(kern, H, dgates + 2 * H, 1, GH, rh_packed, dw_hh_internal + std::size_t(2) * H * H, H, accumulate,
                  nthreads);
}

#define RNNKIT_INSTANTIATE(T)                                                                                       \
    template void gru_no_lbr_forward_step<T>(const PackedRnn<T>&, const ForwardStep<T>&, T*, int, int, int);        \
    template void gru_no_lbr_backward_step<T>(const PackedRnn<T>&, const BackwardWeights<T>&,                      \
                                              const BackwardStep<T>&, T*, int, int, int, int, int);                \
    template void gru_no_lbr_grad_whh<T>(const PackedRnn<T>&, int, const T*, const PackedMatrix<T>&, const T*, T*, \
                                         bool, PackedMatrix<T>&, int);
RNNKIT_INSTANTIATE(float)
RNNKIT_INSTANTIATE(double)
#undef RNNKIT_INSTANTIATE

}  // namespace rnnkit
