// Block sizes of the scalar kernels (the portable baseline, width-1 vectors).
// Every per-ISA config names the same constants; gemm.cpp explains them and
// hands them to the drivers through the kernel table.
#pragma once

namespace rnnkit {
namespace RNNKIT_NS {

// GEMM micro-tile: MR rows x (NV * width) columns of accumulators.
constexpr int kGemmMR = 4;
constexpr int kGemmNV = 4;
// Depth of one k block and rows of A per block: as for the SIMD ISAs (a
// scalar build has no cache of its own to tune for).
constexpr int kGemmKC = 1024;
constexpr int kGemmMC = 96;
// Rows that take several panels at a time instead (gemm_rows_panels): a
// single row only (more would not fit the registers).
constexpr int kGemmPanelRows = 1;
constexpr int kGemmSparePanelRows = 0;
// No projection tiles alongside one-row products: without vectors there
// are no idle FMA slots to fill.
constexpr int kGemmTileRows = 0;

}  // namespace RNNKIT_NS
}  // namespace rnnkit

// Products in bf16 and int8: the portable kernels, unless an ISA that
// builds on this one brings its own.
#if !defined(RNNKIT_OWN_PRODUCT_CONFIG)
#include "kernels/config_products_portable.h"
#endif
