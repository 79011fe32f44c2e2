// Block sizes for AMX tiles (tdpbf16ps, tdpbusd) beside AVX-512 VNNI and BF16: Sapphire Rapids and later.
// The float/double kernels are those of avx512, with its block sizes.
#pragma once

#define RNNKIT_OWN_PRODUCT_CONFIG
#include "kernels/config_avx512.h"

namespace rnnkit {
namespace RNNKIT_NS {

// Low-precision products (product_table.h): tiles of MR rows x NR columns,
// K padded to a multiple of KAlign; rows up to WideRows take up to
// WidePanels panels per call. AMX (gemm_amx.cpp): a call's block is 2 x 2
// tiles of 16 x 16 (32 x 32), K stepped by one tile's width, 32 bf16 or
// 64 int8, so K is padded to that and no call has a k tail. Calls of a
// few rows go to the AVX-512 kernels, with these same panels.
constexpr int kBf16MR = 128, kBf16NR = 32, kBf16KAlign = 32, kBf16WideRows = 3, kBf16WidePanels = 4;
constexpr int kInt8MR = 128, kInt8NR = 32, kInt8KAlign = 64, kInt8WideRows = 3, kInt8WidePanels = 4;
// The vector bf16 kernels (bf16_gemm_x86.h) widen to float32 and FMA rather
// than use vdpbf16ps, which runs at half the FMA rate on these CPUs
// (config_avx512_bf16.h).
constexpr bool kBf16DotProducts = false;

}  // namespace RNNKIT_NS
}  // namespace rnnkit
