#include "layer/cell_step.h"

#include <algorithm>

#include "layer/rnn_common.h"
#include "layer/threading.h"

namespace rnnkit {

template <typename T>
void recurrent_dh_product(const PackedRnn<T>& w, const BackwardWeights<T>& bw, const BackwardStep<T>& s,
                          bool accumulate, int pb, int pe, int nth) {
    const int H = w.H, GH = w.G * H, nr = bw.nr();
    // The product below reads the gate gradients of every unit.
    region_barrier(nth);
    // bf16 products: every row this thread's panels need, converted once
    // (none for a thread without panels).
    const StepOperand<T> dgh = step_operand_k(w, GH, pe > pb ? s.rows : 0, s.dgh, GH, s.lowp);
    // Two panels at a time (the last three of an odd count, so a single row
    // never takes a panel alone), walked backwards on odd steps (see walked).
    const int pairs = pe - pb == 1 ? 1 : (pe - pb) / 2;
    for (int k = 0; k < pairs; ++k) {
        const int q = walked(k, 0, pairs, s.backwards);
        const int p0 = pb + 2 * q, p1 = q + 1 == pairs ? pe : p0 + 2;
        const int n0 = p0 * nr, n1 = std::min(H, p1 * nr);
        backward_product(w, bw.whh, bw.whh_lp, s.rows, n0, n1, dgh, s.dh + n0, H, accumulate);
    }
    // The next step reads every unit of dh.
    region_barrier(nth);
}

template void recurrent_dh_product<float>(const PackedRnn<float>&, const BackwardWeights<float>&,
                                          const BackwardStep<float>&, bool, int, int, int);
template void recurrent_dh_product<double>(const PackedRnn<double>&, const BackwardWeights<double>&,
                                           const BackwardStep<double>&, bool, int, int, int);

}  // namespace rnnkit
