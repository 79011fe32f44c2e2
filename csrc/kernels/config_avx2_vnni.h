// Block sizes for AVX2 with AVX-VNNI (vpdpbusd on ymm registers, VEX encoded): Alder Lake and later, Zen 5.
// The float/double kernels are those of avx2, with its block sizes.
#pragma once

#define RNNKIT_OWN_PRODUCT_CONFIG
#include "kernels/config_avx2.h"

namespace rnnkit {
namespace RNNKIT_NS {

// Low-precision products (product_table.h): tiles of MR rows x NR columns,
// K padded to a multiple of KAlign; rows up to WideRows take up to
// WidePanels panels per call.
// bf16: as avx2 (AVX-VNNI has no bf16 instructions).
constexpr int kBf16MR = 5, kBf16NR = 16, kBf16KAlign = 2, kBf16WideRows = 3, kBf16WidePanels = 2;
constexpr int kInt8MR = 6, kInt8NR = 16, kInt8KAlign = 4, kInt8WideRows = 3, kInt8WidePanels = 4;

}  // namespace RNNKIT_NS
}  // namespace rnnkit
