// Block sizes of the AVX-512 (F/BW/DQ/VL) kernels (32 zmm registers).
#pragma once

namespace rnnkit {
namespace RNNKIT_NS {

// 8 x 32 float tile: 16 accumulators + 2 B vectors + 1 broadcast of the 32
// zmm registers; enough independent chains to hide FMA latency.
constexpr int kGemmMR = 8;
constexpr int kGemmNV = 2;
// Depth of one k block: each block after the first reloads and adds to C,
// so deep blocks pay; a KC x NR panel of B (128 KiB in float32) streams
// from L2, which keeps up with the micro-kernel, and one block covers
// K <= 1024 whole (measured against 256 and 128 on a Zen 4 core). Rows of
// A per block: MC x KC of A stays in L2 while it meets every panel.
constexpr int kGemmKC = 1024;
constexpr int kGemmMC = 96;
// Rows that take several panels at a time instead (gemm_rows_panels): all
// of them when there are at most this many; rows left over beyond whole
// tiles are split evenly with the last tile (9 rows as 5 + 4: 8 or more
// zmm chains, enough).
constexpr int kGemmPanelRows = 3;
constexpr int kGemmSparePanelRows = 0;
// Rows of a projection tile computed alongside a one-row product
// (gemm_rows_panels_tile): 16 more accumulators beside its 4 or 6.
constexpr int kGemmTileRows = 8;

}  // namespace RNNKIT_NS
}  // namespace rnnkit

// Products in bf16 and int8 (product_table.h), unless an ISA that builds on
// this one brings its own sizes.
#if !defined(RNNKIT_OWN_PRODUCT_CONFIG)
namespace rnnkit {
namespace RNNKIT_NS {

// bf16 stored, float32 computed (bf16_gemm_x86.h): 12 x 32 tiles, 24
// accumulators + 4 halves of B + broadcasts of the 32 zmm registers, which
// spreads the two shifts per B register over more FMAs than 8 x 32 (5 to
// 15% faster on 32 and 64 x 1024 x 4096); 1 to 3 rows take 4 panels a
// call, 8 registers of sums per row.
constexpr int kBf16MR = 12, kBf16NR = 32, kBf16KAlign = 2, kBf16WideRows = 3, kBf16WidePanels = 4;
// int8 products on widened bytes (vpmaddwd, gemm_int8_x86.cpp), whose
// operands take two registers each: 8 x 32 tiles (16 sums); up to three
// rows take up to 4 panels a call (8, 8 or 4 registers of sums at a time).
constexpr int kInt8MR = 8, kInt8NR = 32, kInt8KAlign = 4, kInt8WideRows = 3, kInt8WidePanels = 4;

}  // namespace RNNKIT_NS
}  // namespace rnnkit
#endif
