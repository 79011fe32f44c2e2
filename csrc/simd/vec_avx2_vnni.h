// AVX2 with AVX-VNNI (vpdpbusd on ymm registers, VEX encoded): Alder Lake and later, Zen 5.
// The float/double vectors are those of avx2; the new instructions are
// used by the low-precision product kernels only.
#pragma once
#include "simd/vec_avx2.h"
