// Block sizes for AVX-512 with VNNI and BF16 (vdpbf16ps): Cooper Lake, Zen 4, Sapphire Rapids.
// The float/double kernels are those of avx512, with its block sizes.
#pragma once

#define RNNKIT_OWN_PRODUCT_CONFIG
#include "kernels/config_avx512.h"

namespace rnnkit {
namespace RNNKIT_NS {

// Low-precision products (product_table.h): tiles of MR rows x NR columns,
// K padded to a multiple of KAlign; rows up to WideRows take up to
// WidePanels panels per call.
// bf16 (bf16_gemm_x86.h): vdpbf16ps, 8 x 32 tiles (16 accumulators, one
// instruction per 32 products: more chains than its latency needs; 12
// rows were no faster), 1 to 3 rows over 4 panels a call. The CPUs whose
// best ISA this is (Zen 4 and 5, Cooper Lake; later Intel ones run amx)
// should issue vdpbf16ps as fast as an FMA, i.e. twice the products (not
// measured here). Sapphire Rapids does not: one per 2 cycles against 2
// FMAs a cycle; there the widening kernels of avx512 are faster (90
// against 110-130 GFLOP/s on 32 and 64 x 1024 x 4096, one core), and the
// amx ISA, which such CPUs run, uses those (config_amx.h).
constexpr int kBf16MR = 8, kBf16NR = 32, kBf16KAlign = 2, kBf16WideRows = 3, kBf16WidePanels = 4;
constexpr bool kBf16DotProducts = true;
constexpr int kInt8MR = 8, kInt8NR = 32, kInt8KAlign = 4, kInt8WideRows = 3, kInt8WidePanels = 4;

}  // namespace RNNKIT_NS
}  // namespace rnnkit
