// AMX tiles (tdpbf16ps, tdpbusd) beside AVX-512 VNNI and BF16: Sapphire Rapids and later.
// The float/double vectors are those of avx512; the new instructions are
// used by the low-precision product kernels only.
#pragma once
#include "simd/vec_avx512.h"
