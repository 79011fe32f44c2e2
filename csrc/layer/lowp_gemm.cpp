#include "layer/lowp_gemm.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <vector>

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

// This thread's share (thread tid of nt) of C (M x N) (+)= A * B, A's
// rows already converted: tiles of one row block x 4 panels, threads
// taking contiguous runs, down the row blocks first when there are enough
// column tiles.
void product_tiles(const KernelSet& ks, int M, const LowpRows& a, const LowpMatrix& b, float* c, std::ptrdiff_t ldc,
                   bool accumulate, int tid, int nt) {
    const int mc = row_block(ks, b), panels = b.panels();
    const int rblocks = (M + mc - 1) / mc;
    const int tile_panels = 4, ctiles = (panels + tile_panels - 1) / tile_panels;
    int lo, hi;
    split_range(rblocks * ctiles, tid, nt, lo, hi);
    for (int item = lo; item < hi; ++item) {
        const int rb = item / ctiles, ct = item % ctiles;
        const int i0 = rb * mc, m = std::min(mc, M - i0);
        const int j0 = ct * tile_panels * b.nr, j1 = std::min(b.N, j0 + tile_panels * b.nr);
        lowp_gemm_serial(ks, m, j0, j1, a, i0, b, c + i0 * ldc + j0, ldc, accumulate);
    }
}

// Rows of K per block of lowp_gemm_transposed_a (rounded down to k_align):
// a block's B panel (1024 x nr bf16, 32 KiB at nr = 16) stays in L2 while
// every row block passes over it.
constexpr int kTransposedKBlock = 1024;
// Rows of A^T transposed through scratch at a time: one cache line of A's
// floats per k.
constexpr int kTransposeRows = 16;

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
    out.colsum.reset(cols);
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
    if (p == Precision::int8 && zero_point.size() < std::size_t(m)) zero_point.reset(m);
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
        ks.int8.quantize_rows(m, out.K, out.Kp, a, lda, out.row(0), out.Kp, out.scale.data(), out.zero_point.data());
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
                         a.zero_point.data() + row0 + i0, reinterpret_cast<const std::int8_t*>(b.panel(j)),
                         b.colsum.data() + j, b.scale.data() + j,
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
    parallel_region(nth, [&](int tid, int nt) {
        int r0, r1;
        split_range(M, tid, nt, r0, r1);
        LowpRows& s = scratch;
        if (r1 > r0) {
            if (s.prec == Precision::bf16)
                ks.bf16.convert_rows(r1 - r0, s.K, s.Kp, a + r0 * lda, lda,
                                     reinterpret_cast<bf16_t*>(s.row(r0)), s.Kp);
            else
                ks.int8.quantize_rows(r1 - r0, s.K, s.Kp, a + r0 * lda, lda, s.row(r0), s.Kp, s.scale.data() + r0,
                                      s.zero_point.data() + r0);
        }
        // Every tile reads rows another thread converted.
        region_barrier(nt);
        product_tiles(ks, M, scratch, b, c, ldc, accumulate, tid, nt);
    });
}

void pack_lowp_rows(const KernelSet& ks, int K, int N, const float* b, std::ptrdiff_t ldb, LowpMatrix& out,
                    int nthreads) {
    lowp_detail::size_matrix(ks, Precision::bf16, K, N, out);
    const int panels = out.panels();
    const bool big = std::size_t(K) * N > (std::size_t(1) << 16);
    parallel_region(big ? std::max(1, std::min(nthreads, panels)) : 1, [&](int tid, int nth) {
        int lo, hi;
        split_range(panels, tid, nth, lo, hi);
        for (int panel = lo; panel < hi; ++panel) {
            const int j0 = panel * out.nr;
            ks.bf16.pack_panel(K, out.Kp, std::min(out.nr, N - j0), b + j0, ldb, 1,
                               reinterpret_cast<bf16_t*>(out.panel(j0)));
        }
    });
}

void transpose_lowp(const KernelSet& ks, const LowpMatrix& src, LowpMatrix& dst, int nthreads) {
    if (src.prec != Precision::bf16) throw std::invalid_argument("transpose_lowp: bf16 matrices only");
    lowp_detail::size_matrix(ks, Precision::bf16, src.N, src.K, dst);
    const int panels = dst.panels(), nr = dst.nr, snr = src.nr;
    const bool big = std::size_t(src.K) * src.N > (std::size_t(1) << 16);
    // The values move as bits (element (p, j) of a panel at
    // [(p / 2 * nr + j) * 2 + p % 2], product_table.h): a destination
    // panel's columns are source rows p0 .. p0 + nc - 1, its k the source's columns.
    parallel_region(big ? std::max(1, std::min(nthreads, panels)) : 1, [&](int tid, int nth) {
        int lo, hi;
        split_range(panels, tid, nth, lo, hi);
        for (int panel = lo; panel < hi; ++panel) {
            const int p0 = panel * nr, nc = std::min(nr, dst.N - p0);
            bf16_t* out = reinterpret_cast<bf16_t*>(dst.panel(p0));
            std::memset(out, 0, dst.panel_bytes());
            for (int k = 0; k < src.N; ++k) {
                const bf16_t* in = reinterpret_cast<const bf16_t*>(src.panel(k / snr * snr));
                const int kk = k % snr;
                bf16_t* o = out + std::size_t(k / 2) * nr * 2 + k % 2;
                for (int jj = 0; jj < nc; ++jj) {
                    const int p = p0 + jj;
                    o[2 * jj] = in[(std::size_t(p / 2) * snr + kk) * 2 + p % 2];
                }
            }
        }
    });
}

void lowp_gemm_transposed_a(const KernelSet& ks, int M, int N, int K, const float* a, std::ptrdiff_t lda,
                            const float* const* b_rows, float* c, std::ptrdiff_t ldc, bool accumulate, int nthreads) {
    if (M <= 0 || N <= 0) return;
    if (K <= 0) {
        for (int i = 0; i < M && !accumulate; ++i) std::fill(c + i * ldc, c + i * ldc + N, 0.0f);
        return;
    }
    const Bf16Kernels& kb = ks.bf16;
    const int kc_max = std::max(kb.k_align, kTransposedKBlock / kb.k_align * kb.k_align);
    const int kc_first = std::min(K, kc_max);
    // Sized for the first (largest) block; nothing may throw in the regions.
    LowpMatrix b;
    lowp_detail::size_matrix(ks, Precision::bf16, kc_first, N, b);
    LowpRows at;
    at.reserve(ks, Precision::bf16, M, kc_first);
    const double flops = 2.0 * M * N * double(K);
    const int team = flops < 2e5 ? 1 : std::max(1, nthreads);
    const std::size_t per_thread = std::size_t(kc_first) * std::max(b.nr, kTransposeRows);
    std::vector<float> tmp(per_thread * team);
    const int groups = (M + kTransposeRows - 1) / kTransposeRows;
    for (int k0 = 0; k0 < K; k0 += kc_max) {
        const int kc = std::min(kc_max, K - k0);
        b.K = kc;
        b.Kp = lowp_padded_k(ks, Precision::bf16, kc);
        at.reserve_within(kc);
        // The blocks after the first add onto the sums so far.
        const bool acc = accumulate || k0 > 0;
        parallel_region(team, [&](int tid, int nt) {
            float* t = tmp.data() + per_thread * tid;
            int lo, hi;
            // The block's rows of B, a panel's columns gathered, then packed.
            split_range(b.panels(), tid, nt, lo, hi);
            for (int panel = lo; panel < hi; ++panel) {
                const int j0 = panel * b.nr, nc = std::min(b.nr, N - j0);
                for (int p = 0; p < kc; ++p)
                    std::memcpy(t + std::size_t(p) * b.nr, b_rows[k0 + p] + j0, sizeof(float) * nc);
                kb.pack_panel(kc, b.Kp, nc, t, b.nr, 1, reinterpret_cast<bf16_t*>(b.panel(j0)));
            }
            // A's columns as rows, a few at a time transposed into scratch, then converted.
            split_range(groups, tid, nt, lo, hi);
            for (int gi = lo; gi < hi; ++gi) {
                const int i0 = gi * kTransposeRows, m = std::min(kTransposeRows, M - i0);
                for (int p = 0; p < kc; ++p) {
                    const float* src = a + std::ptrdiff_t(k0 + p) * lda + i0;
                    for (int ii = 0; ii < m; ++ii) t[std::size_t(ii) * kc + p] = src[ii];
                }
                kb.convert_rows(m, kc, at.Kp, t, kc, reinterpret_cast<bf16_t*>(at.row(i0)), at.Kp);
            }
            // Every tile reads panels and rows other threads made.
            region_barrier(nt);
            product_tiles(ks, M, at, b, c, ldc, acc, tid, nt);
        });
    }
}

}  // namespace rnnkit
