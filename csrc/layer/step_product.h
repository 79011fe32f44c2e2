// The products of a step in the layer's precision (design: Precisions):
// the step files ask for "these rows times these weights" and this picks
// the column of the kernel table, float/double panels or bf16/int8 ones.
#pragma once
#include <type_traits>

#include "layer/packed_weights.h"

namespace rnnkit {

// Which of the layer's forward weights a product multiplies.
enum class StepWeights { ih, hh, hn };

// A step's left operand as this thread's products take it: the rows as
// they are, or (bf16/int8 products) converted once per step into the
// thread's own LowpRows, then read by each of its blocks' products.
template <typename T>
struct StepOperand {
    const T* a;
    std::ptrdiff_t lda;
    const LowpRows* lowp;
};

// rows x k values at a (rows lda apart): any product's left operand, k its
// depth (mine: room reserved for at least k).
template <typename T>
StepOperand<T> step_operand_k(const PackedRnn<T>& w, int k, int rows, const T* a, std::ptrdiff_t lda,
                              LowpRows* mine) {
    if constexpr (std::is_same_v<T, float>) {
        if (w.products != Precision::full) {
            mine->reserve_within(k);
            convert_rows(*w.kset, rows, a, lda, *mine);
            return {a, lda, mine};
        }
    }
    return {a, lda, nullptr};
}

// rows x K values at a (rows lda apart), K the input width of `which`.
template <typename T>
StepOperand<T> step_operand(const PackedRnn<T>& w, StepWeights which, int rows, const T* a, std::ptrdiff_t lda,
                            LowpRows* mine) {
    return step_operand_k(w, which == StepWeights::ih ? w.I : w.H, rows, a, lda, mine);
}

// C[:, n0:n1] (+)= A * W[:, n0:n1] on the calling thread (n0 a multiple of
// the panel width); with a feed (float/double only) as gemm_serial's.
template <typename T>
void step_product(const PackedRnn<T>& w, StepWeights which, int rows, int n0, int n1, const StepOperand<T>& a,
                  T* c, std::ptrdiff_t ldc, bool accumulate, TileFeed<T>* feed = nullptr) {
    if constexpr (std::is_same_v<T, float>) {
        if (a.lowp) {
            const LowpMatrix& b = which == StepWeights::ih ? w.wih_lp : which == StepWeights::hh ? w.whh_lp : w.whn_lp;
            lowp_gemm_serial(*w.kset, rows, n0, n1, *a.lowp, 0, b, c, ldc, accumulate);
            return;
        }
    }
    const PackedMatrix<T>& b = which == StepWeights::ih ? w.wih_t : which == StepWeights::hh ? w.whh_t : w.whn_t;
    gemm_serial(*w.kern, rows, n0, n1, a.a, a.lda, 1, b, c, ldc, accumulate, feed);
}

// A backward step's product C[:, n0:n1] (+)= A * B[:, n0:n1], B one of
// the backward weights (the transposes of the forward ones): `b` of the
// layer's own type, or where the operand was converted (bf16 products)
// the same matrix as bf16 panels `b_lp`.
template <typename T>
void backward_product(const PackedRnn<T>& w, const PackedMatrix<T>* b, const LowpMatrix* b_lp, int rows, int n0,
                      int n1, const StepOperand<T>& a, T* c, std::ptrdiff_t ldc, bool accumulate) {
    if constexpr (std::is_same_v<T, float>) {
        if (a.lowp) {
            lowp_gemm_serial(*w.kset, rows, n0, n1, *a.lowp, 0, *b_lp, c, ldc, accumulate);
            return;
        }
    }
    (void)b_lp;
    gemm_serial(*w.kern, rows, n0, n1, a.a, a.lda, 1, *b, c, ldc, accumulate);
}

}  // namespace rnnkit
