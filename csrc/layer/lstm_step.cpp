// LSTM steps for the time loops: per block of hidden units one recurrent
// product for the block's four gates, then the fused gate math on it in L1.
#include "layer/cell_step.h"
#include "layer/rnn_common.h"

namespace rnnkit {

template <typename T>
void lstm_forward_step(const PackedRnn<T>& w, const ForwardStep<T>& s, T* scratch, int jb, int je, int) {
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
        LstmFwdArgs<T> f{s.rows, units, s.gx + G * u0, GH, scratch, ld, w.bias.data() + G * u0,
                         s.c_prev + u0, H, s.h + u0, H, s.c + u0, H,
                         s.ws ? s.ws + kWorkspaceSlots * u0 : nullptr, ld_ws};
        kern.lstm_postgemm_fwd(f);
    }
}

template <typename T>
void lstm_backward_step(const PackedRnn<T>& w, const BackwardWeights<T>& bw, const BackwardStep<T>& s, T*, int jb,
                        int je, int pb, int pe, int nth) {
    const int H = w.H, G = w.G, GH = G * H;
    const std::ptrdiff_t ld_ws = std::ptrdiff_t(kWorkspaceSlots) * H;
    for (int j = jb; j < je; ++j) {
        const int u0 = w.layout.block_start(j), units = w.layout.block_units(j);
        LstmBwdArgs<T> b{s.rows, units, s.ws + kWorkspaceSlots * u0, ld_ws, s.c_prev + u0, H, s.c + u0, H,
                         s.dy ? s.dy + u0 : nullptr, H, s.dh + u0, H, s.dc + u0, H, s.dgx + G * u0, GH};
        w.kern->lstm_postgemm_bwd(b);
    }
    // dh_prev = dgates x W_hh (both sides' gradients are the same).
    recurrent_dh_product(w, bw, s, false, pb, pe, nth);
}

#define RNNKIT_INSTANTIATE(T)                                                                                    \
    template void lstm_forward_step<T>(const PackedRnn<T>&, const ForwardStep<T>&, T*, int, int, int);         \
    template void lstm_backward_step<T>(const PackedRnn<T>&, const BackwardWeights<T>&, const BackwardStep<T>&, \
                                        T*, int, int, int, int, int);
RNNKIT_INSTANTIATE(float)
RNNKIT_INSTANTIATE(double)
#undef RNNKIT_INSTANTIATE

}  // namespace rnnkit
