// int8 products with int32 sums, dequantized to float32 (product_table.h):
// the portable forms, the reference every ISA's vector kernels equal bit
// for bit, and the table entry that picks this ISA's kernels.
#include <cmath>

#include "kernels/gemm_int8.h"
#include "kernels/kernels_isa.h"
#include "kernels/lowp_scalar.h"

namespace rnnkit {
namespace RNNKIT_NS {

namespace {

constexpr int NR = kInt8NR;

void quantize_rows(int m, int k, int kp, const float* a, std::ptrdiff_t lda, std::uint8_t* dst,
                   std::ptrdiff_t ld_dst, float* scale, std::int32_t* zero_point) {
    for (int i = 0; i < m; ++i) {
        const lowp::RowQuant r = lowp::quantize_row(k, kp, a + i * lda, dst + i * ld_dst);
        scale[i] = r.scale;
        zero_point[i] = r.zp;
    }
}

void pack_panel(int k, int kp, int n, const std::int8_t* q, std::ptrdiff_t rsb, std::ptrdiff_t csb,
                std::int8_t* panel) {
    for (int p = 0; p < kp; ++p)
        for (int j = 0; j < NR; ++j)
            panel[(p / 4 * NR + j) * 4 + p % 4] = (p < k && j < n) ? q[p * rsb + j * csb] : std::int8_t(0);
}

void gemm(int m, int n, int kp, const std::uint8_t* a, std::ptrdiff_t lda, const float* a_scale,
          const std::int32_t* a_zero, const std::int8_t* b, const std::int32_t* colsum, const float* b_scale, float* c, std::ptrdiff_t ldc,
          bool accumulate) {
    for (int i = 0; i < m; ++i)
        for (int j = 0; j < n; ++j) {
            const std::int8_t* panel = b + std::size_t(j / NR) * kp * NR;
            const int jj = j % NR;
            std::int32_t acc = 0;
            for (int p = 0; p < kp; ++p) acc += std::int32_t(a[i * lda + p]) * panel[(p / 4 * NR + jj) * 4 + p % 4];
            const float v = (float(acc - a_zero[i] * colsum[j]) * a_scale[i]) * b_scale[j];
            float* cij = c + i * ldc + j;
            *cij = accumulate ? *cij + v : v;
        }
}

}  // namespace

void fill_int8(Int8Kernels& k) {
    k.mr = kInt8MR;
    k.nr = kInt8NR;
    k.k_align = kInt8KAlign;
    k.wide_rows = kInt8WideRows;
    k.wide_panels = kInt8WidePanels;
    k.quantize_rows = quantize_rows;
    k.pack_panel = pack_panel;
    k.gemm = gemm;
#if RNNKIT_INT8_X86
    // x86 vectors: AVX2 or AVX-512, with or without VNNI (gemm_int8_x86.cpp).
    k.quantize_rows = int8_quantize_rows_x86;
    k.pack_panel = int8_pack_panel_x86;
    k.gemm = int8_gemm_x86;
#endif
}

}  // namespace RNNKIT_NS
}  // namespace rnnkit
