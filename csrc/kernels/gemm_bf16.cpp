// bfloat16 products with float32 sums (product_table.h). Every ISA compiles
// this file: with AVX-512 BF16 the micro-kernels use vdpbf16ps; the other
// AVX-512 and the AVX2 ISAs store bf16 and compute in float32 (each value
// widened by a shift, one FMA per product); the rest run the portable
// forms below. All of them give the same bits (product_table.h).
#include <cmath>
#include <cstring>

#include "kernels/kernels_isa.h"
#include "kernels/lowp_scalar.h"

#if defined(__AVX2__) || (defined(__AVX512F__) && defined(__AVX512BW__))
#define RNNKIT_BF16_X86 1
#include "kernels/bf16_gemm_x86.h"
#include "kernels/bf16_pack_x86.h"
#else
#define RNNKIT_BF16_X86 0
#endif

namespace rnnkit {
namespace RNNKIT_NS {

namespace {

#if !RNNKIT_BF16_X86
constexpr int NR = kBf16NR;

void convert_rows(int m, int k, int kp, const float* a, std::ptrdiff_t lda, bf16_t* dst, std::ptrdiff_t ld_dst) {
    for (int i = 0; i < m; ++i) {
        const float* src = a + i * lda;
        bf16_t* out = dst + i * ld_dst;
        for (int p = 0; p < k; ++p) out[p] = lowp::to_bf16(src[p]);
        for (int p = k; p < kp; ++p) out[p] = 0;
    }
}

void pack_panel(int k, int kp, int n, const float* b, std::ptrdiff_t rsb, std::ptrdiff_t csb, bf16_t* panel) {
    for (int p = 0; p < kp; ++p)
        for (int j = 0; j < NR; ++j)
            panel[(p / 2 * NR + j) * 2 + p % 2] = (p < k && j < n) ? lowp::to_bf16(b[p * rsb + j * csb]) : 0;
}

// One C element: the pairs in increasing k, odd product then even.
inline float dot_column(int kp, const bf16_t* a, const bf16_t* panel, int jj, float s) {
    for (int p = 0; p < kp; p += 2) {
        const bf16_t* bp = panel + (p / 2 * NR + jj) * 2;
        s += lowp::from_bf16(a[p + 1]) * lowp::from_bf16(bp[1]);
        s += lowp::from_bf16(a[p]) * lowp::from_bf16(bp[0]);
    }
    return s;
}

void gemm(int m, int n, int kp, const bf16_t* a, std::ptrdiff_t lda, const bf16_t* b, float* c, std::ptrdiff_t ldc,
          bool accumulate) {
    for (int i = 0; i < m; ++i)
        for (int j = 0; j < n; ++j) {
            const bf16_t* panel = b + std::size_t(j / NR) * kp * NR;
            float* cij = c + i * ldc + j;
            *cij = dot_column(kp, a + i * lda, panel, j % NR, accumulate ? *cij : 0.0f);
        }
}
#endif

}  // namespace

void fill_bf16(Bf16Kernels& k) {
    k.mr = kBf16MR;
    k.nr = kBf16NR;
    k.k_align = kBf16KAlign;
    k.wide_rows = kBf16WideRows;
    k.wide_panels = kBf16WidePanels;
#if RNNKIT_BF16_X86
#if defined(__AVX512BF16__)
    constexpr bool dot = kBf16DotProducts;
#else
    constexpr bool dot = false;
#endif
    using Pack = bf16x86::Bf16Pack<kBf16NR>;
    using Gemm = bf16x86::Bf16Gemm<kBf16NR, kBf16MR, kBf16WideRows, kBf16WidePanels, dot>;
    k.convert_rows = Pack::convert_rows;
    k.pack_panel = Pack::pack_panel;
    k.gemm = Gemm::gemm;
#else
    k.convert_rows = convert_rows;
    k.pack_panel = pack_panel;
    k.gemm = gemm;
#endif
}

}  // namespace RNNKIT_NS
}  // namespace rnnkit
