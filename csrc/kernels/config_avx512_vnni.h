// Block sizes for AVX-512 with VNNI (vpdpbusd on zmm registers): Cascade Lake, Ice Lake.
// The float/double kernels are those of avx512, with its block sizes.
#pragma once

#define RNNKIT_OWN_PRODUCT_CONFIG
#include "kernels/config_avx512.h"

namespace rnnkit {
namespace RNNKIT_NS {

// Low-precision products (product_table.h): tiles of MR rows x NR columns,
// K padded to a multiple of KAlign; rows up to WideRows take up to
// WidePanels panels per call.
// bf16: as avx512 (VNNI has no bf16 instructions).
constexpr int kBf16MR = 12, kBf16NR = 32, kBf16KAlign = 2, kBf16WideRows = 3, kBf16WidePanels = 4;
constexpr int kInt8MR = 8, kInt8NR = 32, kInt8KAlign = 4, kInt8WideRows = 3, kInt8WidePanels = 4;

}  // namespace RNNKIT_NS
}  // namespace rnnkit
