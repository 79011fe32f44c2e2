// Fills this ISA's kernel table; the only symbol the dispatcher needs.
#include "kernels/kernels_isa.h"

namespace rnnkit {
namespace RNNKIT_NS {

#define RNNKIT_STR2(x) #x
#define RNNKIT_STR(x) RNNKIT_STR2(x)

template <typename T>
static void fill_all(Kernels<T>& k) {
    k.isa = RNNKIT_STR(RNNKIT_NS);
    fill_gemm(k);
    fill_activations(k);
    fill_postgemm_lstm(k);
    fill_postgemm_gru(k);
    fill_postgemm_gru_no_lbr(k);
    fill_reductions(k);
}

void fill_kernel_set(KernelSet& set) {
    fill_all(set.f32);
    fill_all(set.f64);
    set.bf16.isa = set.f32.isa;
    fill_bf16(set.bf16);
    set.int8.isa = set.f32.isa;
    fill_int8(set.int8);
    fill_amx(set);
}

}  // namespace RNNKIT_NS
}  // namespace rnnkit
