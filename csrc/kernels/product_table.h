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
    // Symmetric per-row quantization, shifted to unsigned: with amax the
    // row's largest |a| (taken as 1 for a zero row), inv = 127 / amax,
    // dst[i * ld_dst + p] = 128 + clamp(nearbyint(a * inv), -127, 127) for
    // p < k, 128 (zero) for k <= p < kp, and scale[i] = amax / 127.
    void (*quantize_rows)(int m, int k, int kp, const float* a, std::ptrdiff_t lda, std::uint8_t* dst,
                          std::ptrdiff_t ld_dst, float* scale);
    // One panel from already quantized q(p, j) = q[p * rsb + j * csb].
    void (*pack_panel)(int k, int kp, int n, const std::int8_t* q, std::ptrdiff_t rsb, std::ptrdiff_t csb,
                       std::int8_t* panel);
    // C[i][j] (+)= (float(acc - comp[j]) * a_scale[i]) * b_scale[j], acc
    // the exact int32 sum of A[i][p] * B[p][j] (u8 x s8) over p < kp; comp
    // = 128 * the column's sum of q, which removes A's shift. comp and
    // b_scale are indexed from the first column of the call.
    void (*gemm)(int m, int n, int kp, const std::uint8_t* a, std::ptrdiff_t lda, const float* a_scale,
                 const std::int8_t* b, const std::int32_t* comp, const float* b_scale, float* c, std::ptrdiff_t ldc,
                 bool accumulate);
};

}  // namespace rnnkit
