// GRU "linear before reset" (PyTorch's form, n = tanh(W_in x + b_in +
// r * (W_hn h + b_hn))) steps for the time loops: per block of hidden units
// one recurrent product for the block's three gates, then the fused gate
// math on it in L1.
#include "layer/cell_step.h"
#include "layer/rnn_common.h"

namespace rnnkit {

template <typename T>
void gru_lbr_forward_step(const PackedRnn<T>& w, const ForwardStep<T>& s, T* scratch, int jb, int je, int) {
    const Kernels<T>& kern = *w.kern;
    const int H = w.H, G = w.G, GH = G * H;
    const std::ptrdiff_t ld_ws = std::ptrdiff_t(kWorkspaceSlots) * H;
    const StepOperand<T> h_prev = step_operand(w, StepWeights::hh, s.rows, s.h_prev, H, s.lowp);
    for (int k = jb; k < je; ++k) {
        const int j = walked(k, jb, je, s.backwards);
        const int u0 = w.layout.block_start(j), units = w.layout.block_units(j);
        const int ld = G * units;
        // Recurrent product for this block's gates only.
        step_product(w, StepWeights::hh, s.rows, G * u0, G * u0 + ld, h_prev, scratch, ld, false, s.feed);
        GruFwdArgs<T> f{s.rows, units, s.gx + G * u0, GH, scratch, ld, w.bias.data() + G * u0,
                        w.bias_hn.data() + u0, s.h_prev + u0, H, s.h + u0, H,
                        s.ws ? s.ws + kWorkspaceSlots * u0 : nullptr, ld_ws};
        kern.gru_postgemm_fwd(f);
    }
}

template <typename T>
void gru_lbr_backward_step(const PackedRnn<T>& w, const BackwardWeights<T>& bw, const BackwardStep<T>& s, T*,
                           int jb, int je, int pb, int pe, int nth) {
    const int H = w.H, G = w.G, GH = G * H;
    const std::ptrdiff_t ld_ws = std::ptrdiff_t(kWorkspaceSlots) * H;
    for (int j = jb; j < je; ++j) {
        const int u0 = w.layout.block_start(j), units = w.layout.block_units(j);
        GruBwdArgs<T> b{s.rows, units, s.ws + kWorkspaceSlots * u0, ld_ws, s.h_prev + u0, H,
                        s.dy ? s.dy + u0 : nullptr, H, s.dh + u0, H, s.dgx + G * u0, GH, s.dgh + G * u0, GH,
                        s.dh + u0, H};
        w.kern->gru_postgemm_bwd(b);
    }
    // dh_prev = dgh x W_hh, added to the direct path dh * z.
    recurrent_dh_product(w, bw, s, true, pb, pe, nth);
}

#define RNNKIT_INSTANTIATE(T)                                                                                      \
    template void gru_lbr_forward_step<T>(const PackedRnn<T>&, const ForwardStep<T>&, T*, int, int, int);        \
    template void gru_lbr_backward_step<T>(const PackedRnn<T>&, const BackwardWeights<T>&, const BackwardStep<T>&, \
                                           T*, int, int, int, int, int);
RNNKIT_INSTANTIATE(float)
RNNKIT_INSTANTIATE(double)
#undef RNNKIT_INSTANTIATE

}  // namespace rnnkit
