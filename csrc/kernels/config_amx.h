// Block sizes for AMX tiles (tdpbf16ps, tdpbusd) beside AVX-512 VNNI and BF16: Sapphire Rapids and later.
// The float/double kernels are those of avx512, with its block sizes.
#pragma once

#define RNNKIT_OWN_PRODUCT_CONFIG
#include "kernels/config_avx512.h"

namespace rnnkit {
namespace RNNKIT_NS {

// Low-precision products (product_table.h): tiles of MR rows x NR columns,
// K padded to a multiple of KAlign; rows up to WideRows take up to
// WidePanels panels per call.
constexpr int kBf16MR = 4, kBf16NR = 16, kBf16KAlign = 2, kBf16WideRows = 0, kBf16WidePanels = 1;
// The vector bf16 kernels (bf16_gemm_x86.h) widen to float32 and FMA rather
// than use vdpbf16ps, which runs at half the FMA rate on these CPUs
// (config_avx512_bf16.h).
constexpr bool kBf16DotProducts = false;
constexpr int kInt8MR = 4, kInt8NR = 16, kInt8KAlign = 4, kInt8WideRows = 0, kInt8WidePanels = 1;

}  // namespace RNNKIT_NS
}  // namespace rnnkit
