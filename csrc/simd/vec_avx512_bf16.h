// AVX-512 with VNNI and BF16 (vdpbf16ps): Cooper Lake, Zen 4, Sapphire Rapids.
// The float/double vectors are those of avx512; the new instructions are
// used by the low-precision product kernels only.
#pragma once
#include "simd/vec_avx512.h"
