// Driver of the low-precision products (kernels/product_table.h): packing of
// float32 weights into bf16 or int8 panels, conversion of a product's left
// operand, and the loops and threads around the ISA kernels. The results
// are float32; every C element is one kernel call's sum over all of K, so
// they do not depend on the thread count.
#pragma once
#include <cstddef>
#include <cstdint>

#include "kernels/kernel_table.h"
#include "layer/buffer.h"

namespace rnnkit {

// B (K x N) as panels of one ISA's bf16 or int8 kernels (layout:
// product_table.h). int8: column n quantized symmetrically with its own
// scale (one per output unit of a weight matrix, whose rows are B's
// columns), and colsum[n] = the column's sum of q (the gemm's zero-point
// correction).
struct LowpMatrix {
    Precision prec = Precision::full;
    int K = 0, Kp = 0, N = 0, nr = 0, group = 0;
    AlignedBuffer<std::uint8_t> bytes;
    AlignedBuffer<float> scale;
    AlignedBuffer<std::int32_t> colsum;

    int panels() const { return (N + nr - 1) / nr; }
    std::size_t elem_bytes() const { return prec == Precision::bf16 ? 2 : 1; }
    std::size_t panel_bytes() const { return std::size_t(Kp) * nr * elem_bytes(); }
    // The panel holding column j (a multiple of nr).
    const std::uint8_t* panel(int j) const { return bytes.data() + std::size_t(j / nr) * panel_bytes(); }
    std::uint8_t* panel(int j) { return bytes.data() + std::size_t(j / nr) * panel_bytes(); }
};

// Rows of a left operand A (M x K, float32) converted for one precision's
// kernels: bf16 rows or quantized rows with their scales and zero points,
// each Kp wide.
// Sized before a parallel region (reserve), filled inside it (convert_rows).
struct LowpRows {
    Precision prec = Precision::full;
    int K = 0, Kp = 0, k_align = 1;
    AlignedBuffer<std::uint8_t> bytes;
    AlignedBuffer<float> scale;
    AlignedBuffer<std::int32_t> zero_point;

    // Room for m rows of k values for precision prec with kernels ks
    // (allocates only when the present room is too small).
    void reserve(const KernelSet& ks, Precision prec, int m, int k);
    // Rows of k values from now on, within the room reserve made for at
    // least k (a step alternates between widths I and H); no allocation.
    void reserve_within(int k);
    std::size_t elem_bytes() const { return prec == Precision::bf16 ? 2 : 1; }
    const std::uint8_t* row(int i) const { return bytes.data() + std::size_t(i) * Kp * elem_bytes(); }
    std::uint8_t* row(int i) { return bytes.data() + std::size_t(i) * Kp * elem_bytes(); }
};

// K rounded up to the kernels' k_align for precision prec.
int lowp_padded_k(const KernelSet& ks, Precision prec, int k);

// Packs b(k, n) = column(n)[k] (K x N; column(n) points at K contiguous
// floats: row n of a weight matrix whose transpose is packed) for
// precision prec (bf16 or int8) of kernels ks.
template <typename ColumnFn>
void pack_lowp_columns(const KernelSet& ks, Precision prec, int K, int N, ColumnFn column, LowpMatrix& out,
                       int nthreads);

// Whether packing those columns again would give m's panels (and scales)
// bit for bit: the staleness test of a low-precision pack.
template <typename ColumnFn>
bool lowp_columns_match(const KernelSet& ks, const LowpMatrix& m, ColumnFn column, int nthreads);

// Writes m back as float columns: the values its products use (bf16
// values exactly; int8 q * scale, the extreme ones adjusted in their last
// bits so that packing the columns again gives m bit for bit).
template <typename ColumnFn>
void unpack_lowp_columns(const LowpMatrix& m, ColumnFn column);

// Rows [0, m) of a (rows lda apart) into out, which reserve sized; called
// by the thread that then uses them (no allocation).
void convert_rows(const KernelSet& ks, int m, const float* a, std::ptrdiff_t lda, LowpRows& out);

// C[:, n0:n1] (+)= A[row0 : row0 + M] * B[:, n0:n1] on the calling thread;
// n0 a multiple of b.nr, c points at element (0, n0).
void lowp_gemm_serial(const KernelSet& ks, int M, int n0, int n1, const LowpRows& a, int row0, const LowpMatrix& b,
                      float* c, std::ptrdiff_t ldc, bool accumulate);

// Whole C (M x N) (+)= A (M x K float32, rows lda apart) * B over nthreads
// threads; A is converted into `scratch` first (sized here).
void lowp_gemm_parallel(const KernelSet& ks, int M, const float* a, std::ptrdiff_t lda, const LowpMatrix& b,
                        float* c, std::ptrdiff_t ldc, bool accumulate, LowpRows& scratch, int nthreads);

// Packs b(k, n) = b[k * ldb + n] (K x N, row-major) as bf16 panels of
// kernels ks (bf16 only: int8 scales B by columns, which a row-major
// source does not hand over one by one).
void pack_lowp_rows(const KernelSet& ks, int K, int N, const float* b, std::ptrdiff_t ldb, LowpMatrix& out,
                    int nthreads);

// The transpose (N x K) of a bf16 matrix (K x N), packed for the same
// kernels: exact, its values are bf16 already. The backward products'
// weights from the forward packs. bf16 only (std::invalid_argument).
void transpose_lowp(const KernelSet& ks, const LowpMatrix& src, LowpMatrix& dst, int nthreads);

// C (M x N) (+)= A^T x B in bf16 products, float32 sums: A stored K x M
// (a[k * lda + i], e.g. gate gradients by row, whose transpose multiplies
// the inputs in a weight gradient), row k of B the N floats at b_rows[k].
// K is taken a block of rows at a time (a multiple of k_align), each
// block's products added onto C after the previous block's. The kernels
// sum over k in increasing order from C's value, so these are the very
// sums of one call over all of K: nothing depends on the block size or the
// thread count. Operands converted a block at a time: memory ~ (M + N) x
// the block, not x K.
void lowp_gemm_transposed_a(const KernelSet& ks, int M, int N, int K, const float* a, std::ptrdiff_t lda,
                            const float* const* b_rows, float* c, std::ptrdiff_t ldc, bool accumulate, int nthreads);

}  // namespace rnnkit

#include "layer/lowp_gemm_impl.h"
