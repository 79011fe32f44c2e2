// AVX-512 with VNNI (vpdpbusd on zmm registers): Cascade Lake, Ice Lake.
// The float/double vectors are those of avx512; the new instructions are
// used by the low-precision product kernels only.
#pragma once
#include "simd/vec_avx512.h"
