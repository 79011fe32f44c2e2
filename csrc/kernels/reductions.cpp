// Column sums (bias gradients): rows added in increasing order so the result
// is the same whichever thread computes which columns.
#include "kernels/kernels_isa.h"

namespace rnnkit {
namespace RNNKIT_NS {

namespace {

template <typename T>
void column_sums(int m, int n, const T* a, std::ptrdiff_t lda, T* sums) {
    using V = Vec<T>;
    constexpr int W = V::width;
    // Four vectors of columns at once: four independent add chains instead
    // of one waiting on the add latency, and 4 W contiguous values read per
    // row. Each sum still adds the rows in order.
    constexpr int kGroup = 4;
    int j = 0;
    for (; j + kGroup * W <= n; j += kGroup * W) {
        typename V::reg s[kGroup];
        for (int g = 0; g < kGroup; ++g) s[g] = V::load(sums + j + g * W);
        for (int i = 0; i < m; ++i)
            for (int g = 0; g < kGroup; ++g) s[g] = V::add(s[g], V::load(a + i * lda + j + g * W));
        for (int g = 0; g < kGroup; ++g) V::store(sums + j + g * W, s[g]);
    }
    for (; j < n; j += W) {
        int lanes = n - j < W ? n - j : W;
        typename V::reg s = load_any(sums + j, lanes);
        for (int i = 0; i < m; ++i) s = V::add(s, load_any(a + i * lda + j, lanes));
        store_any(sums + j, s, lanes);
    }
}

}  // namespace

template <typename T>
void fill_reductions(Kernels<T>& k) {
    k.column_sums = &column_sums<T>;
}

template void fill_reductions<float>(Kernels<float>&);
template void fill_reductions<double>(Kernels<double>&);

}  // namespace RNNKIT_NS
}  // namespace rnnkit
