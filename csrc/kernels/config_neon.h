// Block sizes of the NEON (AdvSIMD) kernels (32 vector registers).
#pragma once

namespace rnnkit {
namespace RNNKIT_NS {

// 8 x 8 float tile: 16 accumulators + 2 B vectors + 1 broadcast of 32 regs.
constexpr int kGemmMR = 8;
constexpr int kGemmNV = 2;
// Depth of one k block and rows of A per block: as on x86 until measured
// on an ARM core.
constexpr int kGemmKC = 1024;
constexpr int kGemmMC = 96;
// Rows that take several panels at a time instead (gemm_rows_panels), as
// for AVX-512.
constexpr int kGemmPanelRows = 3;
constexpr int kGemmSparePanelRows = 0;
// No projection tiles alongside one-row products yet: 8-row tiles would
// fit the 32 registers, but whether they pay has not been measured on an
// ARM core (on AVX2 the 4-row tiles did not).
constexpr int kGemmTileRows = 0;

}  // namespace RNNKIT_NS
}  // namespace rnnkit

// Products in bf16 and int8: the portable kernels, unless an ISA that
// builds on this one brings its own.
#if !defined(RNNKIT_OWN_PRODUCT_CONFIG)
#include "kernels/config_products_portable.h"
#endif
