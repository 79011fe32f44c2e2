#include "layer/lowp_gemm.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "layer/threading.h"

namespace rnnkit {

namespace {

int k_align_of(const KernelSet& ks, Precision prec) {
    return prec == Precision::bf16 ? ks.bf16.k_align : ks.int8.k_align;
}

// Rows of A per block in the parallel product: a block's converted rows
// (about 256 KiB) stay in L2 while every panel passes over them.
int row_block(const KernelSet& ks, const LowpMatrix& b) {
    const int mr = b.prec == Precision::bf16 ? ks.bf16.mr : ks.int8.mr;
    const std::size_t row_bytes = std::size_t(b.Kp) * b.elem_bytes();
    const int rows = int(std::max<std::size_t>(1, (std::size_t(256) << 10) / row_bytes));
    return std::max(mr, rows / mr * mr);
}

}  // namespace

namespace lowp_detail {

float quantize_column(int K, const float* col, std::int8_t* q) {
    float amax = 0.0f;
    bool finite = true;
    for (int p = 0; p < K; ++p) {
        const float v = std::fabs(col[p]);
        finite = finite && v <= std::numeric_limits<float>::max();
        amax = v > amax ? v : amax;
    }
    if (!finite) {
        std::fill(q, q + K, std::int8_t(0));
        return std::numeric_limits<float>::quiet_NaN();
    }
    if (amax == 0.0f) amax = 1.0f;
    const float inv = 127.0f / amax;
    for (int p = 0; p < K; ++p) {
        const float v = std::nearbyint(col[p] * inv);
        // inv = inf (a column below 127 / FLT_MAX): its zeros give NaN, quantized to 0.
        q[p] = std::int8_t(v > 127.0f ? 127 : (v < -127.0f ? -127 : (v == v ? int(v) : 0)));
    }
    return amax / 127.0f;
}

float largest_dequantized(float scale) {
    if (!std::isfinite(scale)) return scale;
    // 127 * scale rounded lands within an ulp or two of a v whose quotient
    // rounds back to scale; a zero column's scale 1/127 gives v = 1.
    float v = 127.0f * scale;
    for (int tries = 0; tries < 8 && v / 127.0f != scale; ++tries)
        v = std::nextafter(v, v / 127.0f < scale ? std::numeric_limits<float>::infinity() : 0.0f);
    return v;
}

void size_matrix(const KernelSet& ks, Precision prec, int K, int N, LowpMatrix& out) {
    out.prec = prec;
    out.K = K;
    out.N = N;
    out.nr = prec == Precision::bf16 ? ks.bf16.nr : ks.int8.nr;
    out.group = prec == Precision::bf16 ? 2 : 4;
    out.Kp = lowp_padded_k(ks, prec, K);
    out.bytes.reset(std::size_t(out.panels()) * out.panel_bytes());
    const std::size_t cols = prec == Precision::int8 ? std::size_t(out.panels()) * out.nr : 0;
    out.scale.reset(cols);
    out.comp.reset(cols);
}

}  // namespace lowp_detail

int lowp_padded_k(const KernelSet& ks, Precision prec, int k) {
    const int a = k_align_of(ks, prec);
    return (k + a - 1) / a * a;
}

void LowpRows::reserve(const KernelSet& ks, Precision p, int m, int k) {
    prec = p;
    k_align = k_align_of(ks, p);
    K = k;
    Kp = lowp_padded_k(ks, p, k);
    const std::size_t need = std::size_t(m) * Kp * elem_bytes();
    if (bytes.size() < need) bytes.reset(need);
    if (p == Precision::int8 && scale.size() < std::size_t(m)) scale.reset(m);
}

void LowpRows::reserve_within(int k) {
    K = k;
    Kp = (k + k_align - 1) / k_align * k_align;
}

void convert_rows(const KernelSet& ks, int m, const float* a, std::ptrdiff_t lda, LowpRows& out) {
    if (m <= 0) return;
    if (out.prec == Precision::bf16)
        ks.bf16.convert_rows(m, out.K, out.Kp, a, lda, reinterpret_cast<bf16_t*>(out.row(0)), out.Kp);
    else
        ks.int8.quantize_rows(m, out.K, out.Kp, a, lda, out.row(0), out.Kp, out.scale.data());
}

void lowp_gemm_serial(const KernelSet& ks, int M, int n0, int n1, const LowpRows& a, int row0, const LowpMatrix& b,
                      float* c, std::ptrdiff_t ldc, bool accumulate) {
    if (M <= 0 || n1 <= n0) return;
    const bool bf16 = b.prec == Precision::bf16;
    const int mr = bf16 ? ks.bf16.mr : ks.int8.mr, nr = b.nr, kp = b.Kp;
    const int wide_rows = bf16 ? ks.bf16.wide_rows : ks.int8.wide_rows;
    const int wide_panels = bf16 ? ks.bf16.wide_panels : ks.int8.wide_panels;
    auto call = [&](int i0, int m, int j, int n) {
        if (bf16) {
            ks.bf16.gemm(m, n, kp, reinterpret_cast<const bf16_t*>(a.row(row0 + i0)), a.Kp,
                         reinterpret_cast<const bf16_t*>(b.panel(j)), c + i0 * ldc + (j - n0), ldc, accumulate);
        } else {
            ks.int8.gemm(m, n, kp, a.row(row0 + i0), a.Kp, a.scale.data() + row0 + i0,
                         reinterpret_cast<const std::int8_t*>(b.panel(j)), b.comp.data() + j, b.scale.data() + j,
                         c + i0 * ldc + (j - n0), ldc, accumulate);
        }
    };
    // A few rows: several panels per call, so enough sums are in flight.
    if (M <= wide_rows) {
        const int step = nr * wide_panels;
        for (int j = n0; j < n1; j += step) call(0, M, j, std::min(step, n1 - j));
        return;
    }
    // Panel by panel, down the rows: the panel stays in L1 meanwhile.
    for (int j = n0; j < n1; j += nr)
        for (int i0 = 0; i0 < M; i0 += mr) call(i0, std::min(mr, M - i0), j, std::min(nr, n1 - j));
}

void lowp_gemm_parallel(const KernelSet& ks, int M, const float* a, std::ptrdiff_t lda, const LowpMatrix& b,
                        float* c, std::ptrdiff_t ldc, bool accumulate, LowpRows& scratch, int nthreads) {
    if (M <= 0) return;
    scratch.reserve(ks, b.prec, M, b.K);
    const double flops = 2.0 * M * b.N * b.K;
    const int nth = flops < 2e5 ? 1 : std::max(1, nthreads);
    const int mc = row_block(ks, b), panels = b.panels();
    const int rblocks = (M + mc - 1) / mc;
    // Tiles of one row block x 4 panels; threads take contiguous runs,
    // down the row blocks first when there are enough column tiles.
    const int tile_panels = 4, ctiles = (panels + tile_panels - 1) / tile_panels;
    parallel_region(nth, [&](int tid, int nt) {
        int r0, r1;
        split_range(M, tid, nt, r0, r1);
        LowpRows& s = scratch;
        if (r1 > r0) {
            if (s.prec == Precision::bf16)
                ks.bf16.convert_rows(r1 - r0, s.K, s.Kp, a + r0 * lda, lda,
                                     reinterpret_cast<bf16_t*>(s.row(r0)), s.Kp);
            else
                ks.int8.quantize_rows(r1 - r0, s.K, s.Kp, a + r0 * lda, lda, s.row(r0), s.Kp, s.scale.data() + r0);
        }
        // Every tile reads rows another thread converted.
        region_barrier(nt);
        int lo, hi;
        split_range(rblocks * ctiles, tid, nt, lo, hi);
        for (int item = lo; item < hi; ++item) {
            const int rb = item / ctiles, ct = item % ctiles;
            const int i0 = rb * mc, m = std::min(mc, M - i0);
            const int j0 = ct * tile_panels * b.nr, j1 = std::min(b.N, j0 + tile_panels * b.nr);
            lowp_gemm_serial(ks, m, j0, j1, scratch, i0, b, c + i0 * ldc + j0, ldc, accumulate);
        }
    });
}

}  // namespace rnnkit
