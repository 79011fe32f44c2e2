// The vector vocabulary of the ISA this translation unit is compiled for, in
// namespace rnnkit::RNNKIT_NS. Only the per-ISA kernel objects include this;
// the build names their ISA (RNNKIT_NS) and its header (RNNKIT_VEC_HEADER,
// "simd/vec_<isa>.h"), one per row of isa_list.h.
#pragma once

#if !defined(RNNKIT_NS) || !defined(RNNKIT_VEC_HEADER)
#error "compile kernels with RNNKIT_NS=<isa> and RNNKIT_VEC_HEADER=\"simd/vec_<isa>.h\" (see isa_list.h)"
#endif

#include RNNKIT_VEC_HEADER
#include "simd/vec_common.h"
