// Block sizes of the portable low-precision product kernels
// (gemm_bf16.cpp, gemm_int8.cpp), for the ISAs without vector kernels of
// their own for them (scalar, neon).
#pragma once

namespace rnnkit {
namespace RNNKIT_NS {

// Tiles of MR rows x NR columns; K padded to pairs (bf16) or quads (int8),
// the width of one dot-product lane; no wide one-row calls.
constexpr int kBf16MR = 4, kBf16NR = 16, kBf16KAlign = 2, kBf16WideRows = 0, kBf16WidePanels = 1;
#if !defined(RNNKIT_OWN_INT8_CONFIG)
constexpr int kInt8MR = 4, kInt8NR = 16, kInt8KAlign = 4, kInt8WideRows = 0, kInt8WidePanels = 1;
#endif

}  // namespace RNNKIT_NS
}  // namespace rnnkit
