// Block sizes of the AVX2 + FMA kernels (16 ymm registers).
#pragma once

namespace rnnkit {
namespace RNNKIT_NS {

// 6 x 16 float tile: 12 accumulators + 2 B vectors + 1 broadcast = 15 of the
// 16 ymm registers, and 12 >= FMA latency x FMA ports on current x86 cores.
constexpr int kGemmMR = 6;
constexpr int kGemmNV = 2;
// Depth of one k block: each block after the first reloads and adds to C,
// so deep blocks pay; a KC x NR panel of B streams from L2, which keeps up
// with the micro-kernel, and one block covers K <= 1024 whole (measured
// against 256 on a Zen 4 core). Rows of A per block: MC x KC of A stays in
// L2 while it meets every panel.
constexpr int kGemmKC = 1024;
constexpr int kGemmMC = 96;
// Rows that take several panels at a time instead (gemm_rows_panels): all
// of them when there are at most this many, and as many rows left over
// beyond whole tiles. Split evenly with a full tile, 8 rows would be two
// 4-row tiles of 8 chains each, too few: 94 GFLOP/s, against 105 as a 6-row
// tile and 2 rows x 3 panels (Zen 4).
constexpr int kGemmPanelRows = 3;
constexpr int kGemmSparePanelRows = 3;
// No projection tiles alongside one-row products: with 16 registers a tile
// has 4 rows at most, and measured on a Zen 4 core that made LSTM
// 100x1x256x256 slower (1.73 -> 1.89 ms), not faster.
constexpr int kGemmTileRows = 0;

}  // namespace RNNKIT_NS
}  // namespace rnnkit

// Products in bf16 and int8 (product_table.h), unless an ISA that builds on
// this one brings its own sizes.
#if !defined(RNNKIT_OWN_PRODUCT_CONFIG)
namespace rnnkit {
namespace RNNKIT_NS {

// bf16 stored, float32 computed (bf16_gemm_x86.h): 5 x 16 tiles, 10
// accumulators + 4 halves of B + 2 broadcasts of the 16 ymm registers (6
// rows spill; 4 rows were 7% slower on 64 x 1024 x 4096); 1 to 3 rows take
// 2 panels a call (3 rows: 15% faster than 2 rows + 1).
constexpr int kBf16MR = 5, kBf16NR = 16, kBf16KAlign = 2, kBf16WideRows = 3, kBf16WidePanels = 2;
// int8 products on widened bytes (vpmaddwd, gemm_int8_x86.cpp), whose
// operands take two registers each: 4 x 16 tiles (8 sums); one or two
// rows take up to 4 panels a call (8 or 4 registers of sums at a time).
constexpr int kInt8MR = 4, kInt8NR = 16, kInt8KAlign = 4, kInt8WideRows = 2, kInt8WidePanels = 4;

}  // namespace RNNKIT_NS
}  // namespace rnnkit
#endif
