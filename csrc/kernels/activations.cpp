// Array forms of the vector sigmoid and tanh (used by the accuracy tests and
// available to drivers); the fused cell kernels call the register forms.
#include "kernels/kernels_isa.h"

namespace rnnkit {
namespace RNNKIT_NS {

namespace {

// y = f(x) elementwise, register by register; the tail goes through the
// same instructions as full registers.
template <typename T, typename Vec<T>::reg (*F)(typename Vec<T>::reg)>
void elementwise(std::ptrdiff_t n, const T* x, T* y) {
    constexpr int W = Vec<T>::width;
    for (std::ptrdiff_t i = 0; i < n; i += W) {
        int lanes = n - i < W ? int(n - i) : W;
        store_any(y + i, F(load_any(x + i, lanes)), lanes);
    }
}

}  // namespace

template <typename T>
void fill_activations(Kernels<T>& k) {
    k.sigmoid = &elementwise<T, &sigmoid<T>>;
    k.tanh = &elementwise<T, &tanh<T>>;
}

template void fill_activations<float>(Kernels<float>&);
template void fill_activations<double>(Kernels<double>&);

}  // namespace RNNKIT_NS
}  // namespace rnnkit
