// Templates of lowp_gemm.h: packing, matching and unpacking of columns.
#pragma once
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "layer/threading.h"

namespace rnnkit {

namespace lowp_detail {

// Quantizes the K values of one column symmetrically (scale = max|w| /
// 127, q = clamp(nearbyint(w * 127 / max|w|), -127, 127)); returns its
// scale.
float quantize_column(int K, const float* col, std::int8_t* q);

// Fills panel number `panel` of out from the columns (tmp: K * nr floats
// of scratch, qtmp: K * nr int8).
template <typename ColumnFn>
void fill_panel(const KernelSet& ks, LowpMatrix& out, int panel, ColumnFn& column, float* tmp, std::int8_t* qtmp) {
    const int j0 = panel * out.nr, nc = std::min(out.nr, out.N - j0), K = out.K;
    if (out.prec == Precision::bf16) {
        const float* first = column(j0);
        std::ptrdiff_t stride = nc > 1 ? column(j0 + 1) - first : 0;
        bool strided = true;
        for (int jj = 2; jj < nc && strided; ++jj) strided = column(j0 + jj) == first + jj * stride;
        if (!strided) {
            for (int jj = 0; jj < nc; ++jj) std::memcpy(tmp + std::size_t(jj) * K, column(j0 + jj), sizeof(float) * K);
            first = tmp;
            stride = K;
        }
        ks.bf16.pack_panel(K, out.Kp, nc, first, 1, stride, reinterpret_cast<bf16_t*>(out.panel(j0)));
        return;
    }
    std::int32_t* colsum = out.colsum.data() + j0;
    for (int jj = 0; jj < out.nr; ++jj) {
        std::int8_t* q = qtmp + std::size_t(jj) * K;
        if (jj >= nc) {
            out.scale.data()[j0 + jj] = 0.0f;
            colsum[jj] = 0;
            continue;
        }
        out.scale.data()[j0 + jj] = quantize_column(K, column(j0 + jj), q);
        std::int32_t sum = 0;
        for (int p = 0; p < K; ++p) sum += q[p];
        colsum[jj] = sum;
    }
    ks.int8.pack_panel(K, out.Kp, nc, qtmp, 1, K, reinterpret_cast<std::int8_t*>(out.panel(j0)));
}

void size_matrix(const KernelSet& ks, Precision prec, int K, int N, LowpMatrix& out);

// The value unpacking gives a weight quantized to +-127: a float v near
// 127 * scale with v / 127 == scale exactly, so that quantizing the
// unpacked column again finds the same scale (and the same q everywhere).
float largest_dequantized(float scale);

}  // namespace lowp_detail

template <typename ColumnFn>
void pack_lowp_columns(const KernelSet& ks, Precision prec, int K, int N, ColumnFn column, LowpMatrix& out,
                       int nthreads) {
    lowp_detail::size_matrix(ks, prec, K, N, out);
    const int panels = out.panels();
    const bool big = std::size_t(K) * N > (std::size_t(1) << 16);
    const int team = big ? std::max(1, std::min(nthreads, panels)) : 1;
    // Scratch allocated here: nothing may throw inside the parallel region.
    std::vector<float> tmp(std::size_t(team) * K * out.nr);
    std::vector<std::int8_t> qtmp(prec == Precision::int8 ? std::size_t(team) * K * out.nr : 0);
    parallel_region(team, [&](int tid, int nth) {
        int lo, hi;
        split_range(panels, tid, nth, lo, hi);
        float* t = tmp.data() + std::size_t(tid) * K * out.nr;
        std::int8_t* q = qtmp.empty() ? nullptr : qtmp.data() + std::size_t(tid) * K * out.nr;
        for (int panel = lo; panel < hi; ++panel) lowp_detail::fill_panel(ks, out, panel, column, t, q);
    });
}

template <typename ColumnFn>
bool lowp_columns_match(const KernelSet& ks, const LowpMatrix& m, ColumnFn column, int nthreads) {
    // Each panel packed again into scratch (with its scales) and compared
    // as bytes: the same code as packing, so "equal" means exactly that a
    // repack would change nothing. Panels are shared out over threads as
    // packing shares them; every thread stops once any has found a change.
    const int panels = m.panels();
    const bool big = std::size_t(m.K) * m.N > (std::size_t(1) << 16);
    const int team = big ? std::max(1, std::min(nthreads, panels)) : 1;
    // Scratch allocated here: nothing may throw inside the parallel region.
    std::vector<LowpMatrix> one(team);
    for (LowpMatrix& o : one) lowp_detail::size_matrix(ks, m.prec, m.K, std::min(m.N, m.nr), o);
    if (one[0].nr != m.nr || one[0].Kp != m.Kp) return false;
    const std::size_t per = std::size_t(m.K) * m.nr;
    std::vector<float> tmp(team * per);
    std::vector<std::int8_t> qtmp(m.prec == Precision::int8 ? team * per : 0);
    std::atomic<bool> same{true};
    parallel_region(team, [&](int tid, int nth) {
        int lo, hi;
        split_range(panels, tid, nth, lo, hi);
        LowpMatrix& mine = one[tid];
        float* t = tmp.data() + tid * per;
        std::int8_t* q = qtmp.empty() ? nullptr : qtmp.data() + tid * per;
        for (int panel = lo; panel < hi && same.load(std::memory_order_relaxed); ++panel) {
            const int j0 = panel * m.nr;
            mine.N = std::min(m.nr, m.N - j0);
            auto shifted = [&](int n) { return column(j0 + n); };
            lowp_detail::fill_panel(ks, mine, 0, shifted, t, q);
            bool equal = std::memcmp(mine.panel(0), m.panel(j0), m.panel_bytes()) == 0;
            if (equal && m.prec == Precision::int8)
                equal = std::memcmp(mine.scale.data(), m.scale.data() + j0, sizeof(float) * mine.N) == 0 &&
                        std::memcmp(mine.colsum.data(), m.colsum.data() + j0, sizeof(std::int32_t) * mine.N) == 0;
            if (!equal) same.store(false, std::memory_order_relaxed);
        }
    });
    return same.load();
}

template <typename ColumnFn>
void unpack_lowp_columns(const LowpMatrix& m, ColumnFn column) {
    const int g = m.group, nr = m.nr;
    for (int j = 0; j < m.N; ++j) {
        const std::uint8_t* panel = m.panel(j / nr * nr);
        const int jj = j % nr;
        float* dst = column(j);
        const float scale = m.prec == Precision::int8 ? m.scale.data()[j] : 0.0f;
        const float top = m.prec == Precision::int8 ? lowp_detail::largest_dequantized(scale) : 0.0f;
        for (int p = 0; p < m.K; ++p) {
            const std::size_t at = (std::size_t(p / g) * nr + jj) * g + p % g;
            if (m.prec == Precision::bf16) {
                bf16_t b;
                std::memcpy(&b, panel + 2 * at, 2);
                const std::uint32_t u = std::uint32_t(b) << 16;
                std::memcpy(dst + p, &u, 4);
            } else {
                const int q = std::int8_t(panel[at]);
                dst[p] = q == 127 || q == -127 ? (q > 0 ? top : -top) : float(q) * scale;
            }
        }
    }
}

}  // namespace rnnkit
