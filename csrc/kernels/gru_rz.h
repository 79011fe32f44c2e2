// The GRU's reset and update gates of a few vectors of units, shared by
// both GRU forms (included by their per-ISA kernel sources).
#pragma once
#include "kernels/kernels_isa.h"

namespace rnnkit {
namespace RNNKIT_NS {

// rz[2v] = r, rz[2v + 1] = z of the U vectors of units from u0 on (n lanes
// each) of one row: sigmoid(gx + gh + bias), gates r and z s apart, all 2U
// sigmoids side by side.
template <typename T, int U>
inline void gru_rz_gates(const T* gx, const T* gh, const T* bias, int s, int u0, int n,
                         typename Vec<T>::reg* rz) {
    using V = Vec<T>;
    for (int v = 0; v < U; ++v)
        for (int g = 0; g < 2; ++g) {
            const int o = g * s + u0 + v * V::width;
            rz[2 * v + g] = V::add(V::add(load_any(gx + o, n), load_any(gh + o, n)), load_any(bias + o, n));
        }
    sigmoid_tanh<T, 2 * U, 0>(rz, nullptr);
}

}  // namespace RNNKIT_NS
}  // namespace rnnkit
