// Declarations shared by the per-ISA kernel sources (namespace rnnkit::<isa>).
#pragma once
#include "kernels/kernel_table.h"
#include "simd/simd.h"

// This ISA's block sizes: "kernels/config_<isa>.h", named by the build.
#if !defined(RNNKIT_CONFIG_HEADER)
#error "compile kernels with RNNKIT_CONFIG_HEADER=\"kernels/config_<isa>.h\" (see isa_list.h)"
#endif
#include RNNKIT_CONFIG_HEADER

namespace rnnkit {
namespace RNNKIT_NS {

template <typename T> void fill_gemm(Kernels<T>& k);
template <typename T> void fill_activations(Kernels<T>& k);
template <typename T> void fill_postgemm_lstm(Kernels<T>& k);
template <typename T> void fill_postgemm_gru(Kernels<T>& k);
template <typename T> void fill_postgemm_gru_no_lbr(Kernels<T>& k);
template <typename T> void fill_reductions(Kernels<T>& k);
void fill_bf16(Bf16Kernels& k);
void fill_int8(Int8Kernels& k);
// Puts the AMX tile kernels in front of the bf16 and int8 gemms of an AMX
// build (gemm_amx.cpp); nothing elsewhere.
void fill_amx(KernelSet& set);

}  // namespace RNNKIT_NS
}  // namespace rnnkit
