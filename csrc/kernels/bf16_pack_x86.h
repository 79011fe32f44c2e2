// Vectorised bf16 conversion of A rows and packing of B panels
// (product_table.h, Bf16Kernels::convert_rows and pack_panel) on AVX2 and
// AVX-512: the same values as the portable forms, bit for bit (the
// rounding is lowp::to_bf16's, lane by lane).
#pragma once
#include <cstring>

#include "kernels/bf16_x86.h"
#include "kernels/lowp_scalar.h"

namespace rnnkit {
namespace RNNKIT_NS {
namespace bf16x86 {

template <int NR>
struct Bf16Pack {
    using L = Bf16Lanes;
    static constexpr int W = L::W;
    static_assert(NR % W == 0, "a panel is a whole number of registers wide");

    static void convert_rows(int m, int k, int kp, const float* a, std::ptrdiff_t lda, bf16_t* dst,
                             std::ptrdiff_t ld_dst) {
        for (int i = 0; i < m; ++i) {
            const float* src = a + i * lda;
            bf16_t* out = dst + i * ld_dst;
            int p = 0;
            for (; p + 2 * W <= k; p += 2 * W) L::storei(out + p, L::pairs(L::loadf(src + p), L::loadf(src + p + W)));
            for (; p < k; ++p) out[p] = lowp::to_bf16(src[p]);
            for (; p < kp; ++p) out[p] = 0;
        }
    }

    // Columns of b contiguous (rsb == 1, as the driver packs weights' rows):
    // W columns x W pairs at a time, each column's 2W floats rounded into W
    // pairs, then the W x W block of pairs transposed into W panel rows.
    // What full blocks do not cover (the ends of k and n, the padding), and
    // any other stride, goes value by value.
    static void pack_panel(int k, int kp, int n, const float* b, std::ptrdiff_t rsb, std::ptrdiff_t csb,
                           bf16_t* panel) {
        const int qv = rsb == 1 ? k / 2 / W * W : 0;
        const int jv = rsb == 1 ? (n < NR ? n : NR) / W * W : 0;
        for (int j0 = 0; j0 < jv; j0 += W)
            for (int q0 = 0; q0 < qv; q0 += W) {
                typename L::I t[W];
                for (int jj = 0; jj < W; ++jj) {
                    const float* col = b + (j0 + jj) * csb + 2 * q0;
                    t[jj] = L::pairs(L::loadf(col), L::loadf(col + W));
                }
                L::transpose(t);
                for (int q = 0; q < W; ++q) L::storei(panel + (std::ptrdiff_t(q0 + q) * NR + j0) * 2, t[q]);
            }
        for (int q = 0; q < kp / 2; ++q)
            for (int j = q < qv ? jv : 0; j < NR; ++j)
                for (int h = 0; h < 2; ++h) {
                    const int p = 2 * q + h;
                    panel[(std::ptrdiff_t(q) * NR + j) * 2 + h] =
                        (p < k && j < n) ? lowp::to_bf16(b[p * rsb + j * csb]) : 0;
                }
    }
};

}  // namespace bf16x86
}  // namespace RNNKIT_NS
}  // namespace rnnkit
