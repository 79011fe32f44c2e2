// Selects the vector vocabulary of the ISA this translation unit is compiled
// for and names its namespace. Only the per-ISA kernel objects include this.
#pragma once

#if defined(RNNKIT_TARGET_SCALAR)
#define RNNKIT_NS scalar
#include "simd/vec_scalar.h"
#elif defined(RNNKIT_TARGET_AVX2)
#define RNNKIT_NS avx2
#include "simd/vec_avx2.h"
#elif defined(RNNKIT_TARGET_AVX512)
#define RNNKIT_NS avx512
#include "simd/vec_avx512.h"
#elif defined(RNNKIT_TARGET_NEON)
#define RNNKIT_NS neon
#include "simd/vec_neon.h"
#else
#error "compile kernels with exactly one RNNKIT_TARGET_<ISA> defined"
#endif

#include "simd/vec_common.h"
