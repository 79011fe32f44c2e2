// Array forms of the vector sigmoid and tanh (used by the accuracy tests and
// available to drivers); the fused cell kernels call the register forms.
#include "kernels/kernels_isa.h"

namespace rnnkit {
namespace RNNKIT_NS {

namespace {

template <typename T>
void sigmoid_array(std::ptrdiff_t n, const T* x, T* y) {
    constexpr int W = Vec<T>::width;
    for (std::ptrdiff_t i = 0; i < n; i += W) {
        int lanes = n - i < W ? int(n - i) : W;
        store_any(y + i, sigmoid<T>(load_any(x + i, lanes)), lanes);
    }
}

template <typename T>
void tanh_array(std::ptrdiff_t n, const T* x, T* y) {
    constexpr int W = Vec<T>::width;
    for (std::ptrdiff_t i = 0; i < n; i += W) {
        int lanes = n - i < W ? int(n - i) : W;
        store_any(y + i, tanh<T>(load_any(x + i, lanes)), lanes);
    }
}

}  // namespace

template <typename T>
void fill_activations(Kernels<T>& k) {
    k.sigmoid = &sigmoid_array<T>;
    k.tanh = &tanh_array<T>;
}

template void fill_activations<float>(Kernels<float>&);
template void fill_activations<double>(Kernels<double>&);

}  // namespace RNNKIT_NS
}  // namespace rnnkit
