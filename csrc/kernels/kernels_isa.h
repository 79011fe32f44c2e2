// Declarations shared by the per-ISA kernel sources (namespace rnnkit::<isa>).
#pragma once
#include "kernels/kernel_table.h"
#include "simd/simd.h"

#if defined(RNNKIT_TARGET_SCALAR)
#include "kernels/config_scalar.h"
#elif defined(RNNKIT_TARGET_AVX2)
#include "kernels/config_avx2.h"
#elif defined(RNNKIT_TARGET_AVX512)
#include "kernels/config_avx512.h"
#elif defined(RNNKIT_TARGET_NEON)
#include "kernels/config_neon.h"
#endif

namespace rnnkit {
namespace RNNKIT_NS {

template <typename T> void fill_gemm(Kernels<T>& k);
template <typename T> void fill_activations(Kernels<T>& k);
template <typename T> void fill_postgemm_lstm(Kernels<T>& k);
template <typename T> void fill_postgemm_gru(Kernels<T>& k);
template <typename T> void fill_postgemm_gru_rbl(Kernels<T>& k);
template <typename T> void fill_reductions(Kernels<T>& k);

}  // namespace RNNKIT_NS
}  // namespace rnnkit
