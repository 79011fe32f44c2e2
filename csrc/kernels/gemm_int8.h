// The int8 product kernels of this ISA beyond the portable ones
// (gemm_int8.cpp): the x86 vector kernels (gemm_int8_x86.cpp), compiled
// where the ISA has AVX2 or AVX-512BW. Another kernel file of the same ISA
// may call them directly: the AMX kernels hand them products of a few rows.
#pragma once
#include <cstddef>
#include <cstdint>

#include "kernels/product_table.h"

#if defined(__AVX2__) || defined(__AVX512BW__)
#define RNNKIT_INT8_X86 1
#else
#define RNNKIT_INT8_X86 0
#endif

namespace rnnkit {
namespace RNNKIT_NS {

#if RNNKIT_INT8_X86
// Int8Kernels::quantize_rows, pack_panel and gemm (product_table.h), for
// panels of kInt8NR columns (16 or 32) and any kp that is a multiple of 4.
// gemm takes any m and n (rows in tiles of its own, columns over
// consecutive panels), not only m <= mr.
void int8_quantize_rows_x86(int m, int k, int kp, const float* a, std::ptrdiff_t lda, std::uint8_t* dst,
                            std::ptrdiff_t ld_dst, float* scale, std::int32_t* zero_point);
void int8_pack_panel_x86(int k, int kp, int n, const std::int8_t* q, std::ptrdiff_t rsb, std::ptrdiff_t csb,
                         std::int8_t* panel);
void int8_gemm_x86(int m, int n, int kp, const std::uint8_t* a, std::ptrdiff_t lda, const float* a_scale,
                   const std::int32_t* a_zero, const std::int8_t* b, const std::int32_t* colsum, const float* b_scale, float* c, std::ptrdiff_t ldc,
                   bool accumulate);
#endif

}  // namespace RNNKIT_NS
}  // namespace rnnkit
