#include "layer/cell_step.h"

#include <algorithm>

#include "layer/rnn_common.h"
#include "layer/threading.h"

namespace rnnkit {

template <typename T>
void recurrent_dh_product(const PackedRnn<T>& w, const PackedMatrix<T>& whh, int rows, const T* dgh, T* dh,
                          bool accumulate, int pb, int pe, bool backwards, int nth) {
    const int H = w.H, GH = w.G * H;
    // The product below reads the gate gradients of every unit.
    region_barrier(nth);
    // Two panels at a time (the last three of an odd count, so a single row
    // never takes a panel alone), walked backwards on odd steps (see walked).
    const int pairs = pe - pb == 1 ? 1 : (pe - pb) / 2;
    for (int k = 0; k < pairs; ++k) {
        const int q = walked(k, 0, pairs, backwards);
        const int p0 = pb + 2 * q, p1 = q + 1 == pairs ? pe : p0 + 2;
        const int n0 = p0 * whh.nr, n1 = std::min(H, p1 * whh.nr);
        gemm_serial(*w.kern, rows, n0, n1, dgh, GH, 1, whh, dh + n0, H, accumulate);
    }
    // The next step reads every unit of dh.
    region_barrier(nth);
}

template void recurrent_dh_product<float>(const PackedRnn<float>&, const PackedMatrix<float>&, int, const float*,
                                          float*, bool, int, int, bool, int);
template void recurrent_dh_product<double>(const PackedRnn<double>&, const PackedMatrix<double>&, int, const double*,
                                           double*, bool, int, int, bool, int);

}  // namespace rnnkit
