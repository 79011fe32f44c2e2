// The low-precision columns of the kernel table: products whose operands
// are bfloat16 or int8 and whose results are float32, beside the float and
// double kernels of kernel_table.h. A layer of any precision keeps its gate
// math, states and gradients in float32 (design: Precisions); only what
// enters a product is narrowed. Plain structs of function pointers, no code.
#pragma once
#include <cstddef>
#include <cstdint>

namespace rnnkit {

// What a layer's products take as operands: its own type (float or
// double), bfloat16 with float32 accumulation, or int8 with int32
// accumulation (inference only).
enum class Precision { full, bf16, int8 };

// A bfloat16 value as its bits: the top half of a float32.
using bf16_t = std::uint16_t;

// Layout shared by both columns. B (K x N, the weights' transpose) is cut
// into panels of nr columns, each holding all of K (no k blocks: a
// low-precision panel of K <= 4096 rows stays within L2). K is padded with
// zeros to Kp, a multiple of k_align, and so is every row of A. Inside a
// panel the k values of one column come in groups of `group` (2 for bf16,
// 4 for int8), the unit of one dot-product lane: element (p, j) sits at
// panel[(p / group * nr + j) * group + p % group]. A whole panel is
// Kp * nr elements and the panels of a matrix follow each other.
//
// A call computes C[m x n] for m <= mr rows, or m <= wide_rows rows and n
// up to nr * wide_panels columns over consecutive panels (a one-row step
// product streams several panels at once to keep enough sums in flight).

struct Bf16Kernels {
    const char* isa;
    int mr, nr, k_align;
    int wide_rows, wide_panels;
    // dst[i * ld_dst + p] = bf16(a[i * lda + p]) for p < k (round to nearest
    // even, NaN stays NaN), 0 for k <= p < kp.
    void (*convert_rows)(int m, int k, int kp, const float* a, std::ptrdiff_t lda, bf16_t* dst,
                         std::ptrdiff_t ld_dst);
    // One panel from b(p, j) = b[p * rsb + j * csb] (k x n, n <= nr), each
    // value rounded as convert_rows does, zeros elsewhere in the panel.
    void (*pack_panel)(int k, int kp, int n, const float* b, std::ptrdiff_t rsb, std::ptrdiff_t csb,
                       bf16_t* panel);
    // C[m x n] (+)= A[m x kp] * B. Every C element is one float32 sum over
    // the k pairs in increasing order, each pair adding its odd product
    // and then its even one (the order of vdpbf16ps; a product of two bf16
    // values is exact in float32, so an FMA per product gives the same
    // bits). With accumulate the sum starts from C, else from zero.
    // Exception: the amx ISA's tiles (tdpbf16ps, gemm_amx.cpp; calls and
    // row blocks of 8 rows or more) sum in the hardware's own undocumented
    // order and internal precision: not bitwise equal to the above, but
    // exact where every partial sum is, and within the float32 summation
    // bound (measured: |error| <= 0.6-1.0 u * sum |a_k b_k| at K = 32..4096,
    // about half of the odd-then-even order's, u = 2^-24).
    void (*gemm)(int m, int n, int kp, const bf16_t* a, std::ptrdiff_t lda, const bf16_t* b, float* c,
                 std::ptrdiff_t ldc, bool accumulate);
};

struct Int8Kernels {
    const char* isa;
    int mr, nr, k_align;
    int wide_rows, wide_panels;
    // Asymmetric per-row quantization (lowp::quantize_row is the rule):
    // with lo = min(0, min a), hi = max(0, max a) over the row's k values,
    // scale[i] = (hi - lo) / 255 (hi / 255 - lo / 255 if that overflows;
    // 1 if it is below FLT_MIN, a zero row included), zero_point[i] = zp =
    // clamp(nearbyint(-lo / scale), 0, 255) and dst[i * ld_dst + p] =
    // clamp(nearbyint(a / scale) + zp, 0, 255) for p < k (a true division,
    // correctly rounded on every ISA), zp for k <= p < kp. A row with a
    // non-finite value: scale NaN, zp 0, bytes 0.
    void (*quantize_rows)(int m, int k, int kp, const float* a, std::ptrdiff_t lda, std::uint8_t* dst,
                          std::ptrdiff_t ld_dst, float* scale, std::int32_t* zero_point);
    // One panel from already quantized q(p, j) = q[p * rsb + j * csb].
    void (*pack_panel)(int k, int kp, int n, const std::int8_t* q, std::ptrdiff_t rsb, std::ptrdiff_t csb,
                       std::int8_t* panel);
    // C[i][j] (+)= (float(acc - a_zero[i] * colsum[j]) * a_scale[i]) *
    // b_scale[j] (the two products in this order, no FMA), acc the exact
    // int32 sum of A[i][p] * B[p][j] (u8 x s8) over p < kp; colsum = the
    // column's plain sum of q, so the integer term removes A's zero point
    // exactly. a_scale, a_zero are indexed from the call's first row,
    // colsum and b_scale from its first column.
    void (*gemm)(int m, int n, int kp, const std::uint8_t* a, std::ptrdiff_t lda, const float* a_scale,
                 const std::int32_t* a_zero, const std::int8_t* b, const std::int32_t* colsum, const float* b_scale,
                 float* c, std::ptrdiff_t ldc,
                 bool accumulate);
};

}  // namespace rnnkit
