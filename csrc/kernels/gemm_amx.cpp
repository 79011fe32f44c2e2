// AMX tile kernels of the low-precision products (product_table.h):
// tdpbf16ps (bf16 pairs, float32 sums) and tdpbusd (u8 x s8 quads, int32
// sums). Compiled only where the compiler targets AMX (the amx ISA); every
// other ISA gets a fill_amx that leaves its table as it is.
//
// A call's block is 32 rows x 32 columns (one panel) in four C tiles of
// 16 x 16; per K step two A tiles (16 rows each) and two B tiles (16
// columns each) are loaded. A B tile is a panel slice as it lies: one tile
// row is one k pair (bf16) or quad (int8) of 16 columns, 64 bytes, and the
// rows are nr * group elements (128 bytes) apart.
//
// Below kAmxMinRows rows a tile does mostly zero work and the product is
// memory bound, so those calls go to the vector kernels the table held
// before (gemm_bf16.cpp / gemm_int8.cpp of this ISA).
#include "kernels/kernels_isa.h"

#if defined(__AMX_TILE__) && defined(__AMX_BF16__) && defined(__AMX_INT8__) && defined(__AVX512F__)
#include <immintrin.h>

#include <cstring>

namespace rnnkit {
namespace RNNKIT_NS {

namespace {

static_assert(kBf16NR == 32 && kInt8NR == 32, "the AMX kernels take panels of 32 columns (two B tiles)");
static_assert(kBf16KAlign % 32 == 0 && kInt8KAlign % 64 == 0, "the AMX kernels step K by one full tile");

// Rows from which a call runs on tiles (see above): a tile of 8 rows still
// does 8 x 16 x 32 multiply-adds per instruction, 4x what vdpbf16ps does.
constexpr int kAmxMinRows = 8;

// Tiles 0-3: C (row tile r, column tile c) = 2r + c; 4-5: A; 6-7: B.
// Every tile row is 64 bytes; only the rows of C and A change with m.
struct alignas(64) TileConfig {
    std::uint8_t palette_id;
    std::uint8_t start_row;
    std::uint8_t reserved[14];
    std::uint16_t colsb[16];
    std::uint8_t rows[16];
};
static_assert(sizeof(TileConfig) == 64, "ldtilecfg reads 64 bytes");

// Makes the tiles of rows0 (first row tile) and rows1 (second) the
// thread's configuration. The present one is read back (sttilecfg)
// rather than remembered, so a thread whose tiles other code configured
// or released (oneDNN in the same thread, a signal handler) still gets
// ours; ldtilecfg, which also zeroes every tile, runs only on a change.
void configure(int rows0, int rows1) {
    TileConfig want;
    std::memset(&want, 0, sizeof want);
    want.palette_id = 1;
    for (int t = 0; t < 8; ++t) want.colsb[t] = 64;
    want.rows[0] = want.rows[1] = want.rows[4] = std::uint8_t(rows0);
    want.rows[2] = want.rows[3] = want.rows[5] = std::uint8_t(rows1);
    want.rows[6] = want.rows[7] = 16;
    TileConfig now;
    _tile_storeconfig(&now);
    if (std::memcmp(&now, &want, sizeof want) != 0) _tile_loadconfig(&want);
}

// The tiles are left configured after a call: releasing them would make
// the next call (often microseconds later) pay for ldtilecfg again. The
// OS saves a thread's 8 KiB of tile data while they are in use.

// ---- float32 C tiles (bf16) ----

// A C tile of fewer than 16 valid columns passes through a 16 x 16
// scratch (a tile row is 64 bytes, which would overrun C's row).
inline void stage_c(const float* c, std::ptrdiff_t ldc, int rows, int cols, float* tmp) {
    for (int i = 0; i < rows; ++i) std::memcpy(tmp + 16 * i, c + i * ldc, sizeof(float) * cols);
}
inline void unstage_c(float* c, std::ptrdiff_t ldc, int rows, int cols, const float* tmp) {
    for (int i = 0; i < rows; ++i) std::memcpy(c + i * ldc, tmp + 16 * i, sizeof(float) * cols);
}

// C tile T from c (rows x cols valid, rows as configured): zero without
// accumulate, else C's values. The tile intrinsics spell their tile into
// the instruction's text, so T must be a literal: macros, not templates.
#define RNNKIT_AMX_LOAD_C(T, c, ldc, rows, cols, accumulate, tmp)  \
    do {                                                            \
        if (!(accumulate)) {                                        \
            _tile_zero(T);                                          \
        } else if ((cols) == 16) {                                  \
            _tile_loadd(T, (c), (ldc) * sizeof(float));             \
        } else {                                                    \
            stage_c((c), (ldc), (rows), (cols), (tmp));             \
            _tile_loadd(T, (tmp), 64);                              \
        }                                                           \
    } while (0)

#define RNNKIT_AMX_STORE_C(T, c, ldc, rows, cols, tmp)              \
    do {                                                            \
        if ((cols) == 16) {                                         \
            _tile_stored(T, (c), (ldc) * sizeof(float));            \
        } else {                                                    \
            _tile_stored(T, (tmp), 64);                             \
            unstage_c((c), (ldc), (rows), (cols), (tmp));           \
        }                                                           \
    } while (0)

// One block of up to 32 rows x 32 columns of one panel: R row tiles, N
// column tiles (1 or 2 each), rows0/rows1 and cols0/cols1 valid in each.
template <int R, int N>
void bf16_block(int kp, const bf16_t* a, std::ptrdiff_t lda, const bf16_t* panel, float* c, std::ptrdiff_t ldc,
                int rows1, int cols1, bool accumulate) {
    constexpr int NR = kBf16NR;
    const int rows0 = 16, cols0 = 16;
    alignas(64) float tmp[2][16 * 16];
    const int r0 = R == 2 ? rows0 : rows1, c0 = N == 2 ? cols0 : cols1;
    RNNKIT_AMX_LOAD_C(0, c, ldc, r0, c0, accumulate, tmp[0]);
    if (N == 2) RNNKIT_AMX_LOAD_C(1, c + 16, ldc, r0, cols1, accumulate, tmp[0]);
    if (R == 2) {
        RNNKIT_AMX_LOAD_C(2, c + 16 * ldc, ldc, rows1, c0, accumulate, tmp[1]);
        if (N == 2) RNNKIT_AMX_LOAD_C(3, c + 16 * ldc + 16, ldc, rows1, cols1, accumulate, tmp[1]);
    }
    const std::size_t sa = std::size_t(lda) * sizeof(bf16_t), sb = NR * 2 * sizeof(bf16_t);
    for (int p = 0; p < kp; p += 32) {
        // Panel row p / 2 (a k pair) starts at element p / 2 * NR * 2.
        const bf16_t* bp = panel + std::size_t(p) * NR;
        _tile_loadd(4, a + p, sa);
        _tile_loadd(6, bp, sb);
        if (N == 2) _tile_loadd(7, bp + 32, sb);
        if (R == 2) _tile_loadd(5, a + 16 * lda + p, sa);
        _tile_dpbf16ps(0, 4, 6);
        if (N == 2) _tile_dpbf16ps(1, 4, 7);
        if (R == 2) _tile_dpbf16ps(2, 5, 6);
        if (R == 2 && N == 2) _tile_dpbf16ps(3, 5, 7);
    }
    RNNKIT_AMX_STORE_C(0, c, ldc, r0, c0, tmp[0]);
    if (N == 2) RNNKIT_AMX_STORE_C(1, c + 16, ldc, r0, cols1, tmp[0]);
    if (R == 2) {
        RNNKIT_AMX_STORE_C(2, c + 16 * ldc, ldc, rows1, c0, tmp[1]);
        if (N == 2) RNNKIT_AMX_STORE_C(3, c + 16 * ldc + 16, ldc, rows1, cols1, tmp[1]);
    }
}

// Calls f(i0, rows, rows of the second row tile or 0) for each block of
// up to 32 rows, after making the tile configuration match it.
template <typename F>
void for_row_blocks(int m, F f) {
    for (int i0 = 0; i0 < m; i0 += 32) {
        const int rows = m - i0 < 32 ? m - i0 : 32;
        if (rows > 16)
            configure(16, rows - 16);
        else
            configure(rows, 16);
        f(i0, rows);
    }
}

void amx_gemm_bf16(int m, int n, int kp, const bf16_t* a, std::ptrdiff_t lda, const bf16_t* b, float* c,
                   std::ptrdiff_t ldc, bool accumulate) {
    constexpr int NR = kBf16NR;
    for_row_blocks(m, [&](int i0, int rows) {
        const bf16_t* ai = a + i0 * lda;
        for (int j = 0; j < n; j += NR) {
            const bf16_t* panel = b + std::size_t(j / NR) * kp * NR;
            float* cij = c + i0 * ldc + j;
            const int cols = n - j < NR ? n - j : NR;
            // The second row / column tile's valid rows / columns.
            const int rows1 = rows > 16 ? rows - 16 : rows, cols1 = cols > 16 ? cols - 16 : cols;
            if (rows > 16) {
                if (cols > 16)
                    bf16_block<2, 2>(kp, ai, lda, panel, cij, ldc, rows1, cols1, accumulate);
                else
                    bf16_block<2, 1>(kp, ai, lda, panel, cij, ldc, rows1, cols1, accumulate);
            } else {
                if (cols > 16)
                    bf16_block<1, 2>(kp, ai, lda, panel, cij, ldc, rows1, cols1, accumulate);
                else
                    bf16_block<1, 1>(kp, ai, lda, panel, cij, ldc, rows1, cols1, accumulate);
            }
        }
    });
}

#undef RNNKIT_AMX_LOAD_C
#undef RNNKIT_AMX_STORE_C

// ---- int32 C tiles (int8) ----

// One block of up to 32 x 32 int32 sums into acc (32 x 32, row-major).
template <int R, int N>
void int8_block(int kp, const std::uint8_t* a, std::ptrdiff_t lda, const std::int8_t* panel, std::int32_t* acc) {
    constexpr int NR = kInt8NR;
    _tile_zero(0);
    if (N == 2) _tile_zero(1);
    if (R == 2) _tile_zero(2);
    if (R == 2 && N == 2) _tile_zero(3);
    const std::size_t sa = std::size_t(lda), sb = NR * 4;
    for (int p = 0; p < kp; p += 64) {
        // Panel row p / 4 (a k quad) starts at byte p / 4 * NR * 4.
        const std::int8_t* bp = panel + std::size_t(p) * NR;
        _tile_loadd(4, a + p, sa);
        _tile_loadd(6, bp, sb);
        if (N == 2) _tile_loadd(7, bp + 64, sb);
        if (R == 2) _tile_loadd(5, a + 16 * lda + p, sa);
        _tile_dpbusd(0, 4, 6);
        if (N == 2) _tile_dpbusd(1, 4, 7);
        if (R == 2) _tile_dpbusd(2, 5, 6);
        if (R == 2 && N == 2) _tile_dpbusd(3, 5, 7);
    }
    constexpr std::size_t sc = 32 * sizeof(std::int32_t);
    _tile_stored(0, acc, sc);
    if (N == 2) _tile_stored(1, acc + 16, sc);
    if (R == 2) _tile_stored(2, acc + 16 * 32, sc);
    if (R == 2 && N == 2) _tile_stored(3, acc + 16 * 32 + 16, sc);
}

// C[i][j] (+)= (float(acc - comp[j]) * a_scale[i]) * b_scale[j], the
// portable kernel's expression and order (bitwise equal to it).
void dequantize(int rows, int cols, const std::int32_t* acc, const float* a_scale, const std::int32_t* comp,
                const float* b_scale, float* c, std::ptrdiff_t ldc, bool accumulate) {
    for (int j = 0; j < cols; j += 16) {
        const __mmask16 k = cols - j >= 16 ? __mmask16(0xffff) : __mmask16((1u << (cols - j)) - 1);
        const __m512i cj = _mm512_maskz_loadu_epi32(k, comp + j);
        const __m512 bj = _mm512_maskz_loadu_ps(k, b_scale + j);
        for (int i = 0; i < rows; ++i) {
            const __m512i s = _mm512_sub_epi32(_mm512_maskz_loadu_epi32(k, acc + i * 32 + j), cj);
            __m512 v = _mm512_mul_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(s), _mm512_set1_ps(a_scale[i])), bj);
            float* ci = c + i * ldc + j;
            if (accumulate) v = _mm512_add_ps(_mm512_maskz_loadu_ps(k, ci), v);
            _mm512_mask_storeu_ps(ci, k, v);
        }
    }
}

void amx_gemm_int8(int m, int n, int kp, const std::uint8_t* a, std::ptrdiff_t lda, const float* a_scale,
                   const std::int8_t* b, const std::int32_t* comp, const float* b_scale, float* c,
                   std::ptrdiff_t ldc, bool accumulate) {
    constexpr int NR = kInt8NR;
    alignas(64) std::int32_t acc[32 * 32];
    for_row_blocks(m, [&](int i0, int rows) {
        const std::uint8_t* ai = a + i0 * lda;
        for (int j = 0; j < n; j += NR) {
            const std::int8_t* panel = b + std::size_t(j / NR) * kp * NR;
            const int cols = n - j < NR ? n - j : NR;
            if (rows > 16) {
                if (cols > 16)
                    int8_block<2, 2>(kp, ai, lda, panel, acc);
                else
                    int8_block<2, 1>(kp, ai, lda, panel, acc);
            } else {
                if (cols > 16)
                    int8_block<1, 2>(kp, ai, lda, panel, acc);
                else
                    int8_block<1, 1>(kp, ai, lda, panel, acc);
            }
            dequantize(rows, cols, acc, a_scale + i0, comp + j, b_scale + j, c + i0 * ldc + j, ldc, accumulate);
        }
    });
}

// The vector kernels the table held before fill_amx: they take the calls
// of fewer than kAmxMinRows rows. Set once, when the registry fills the
// amx table (before any product can run).
decltype(Bf16Kernels::gemm) vector_bf16_gemm = nullptr;
decltype(Int8Kernels::gemm) vector_int8_gemm = nullptr;

void gemm_bf16(int m, int n, int kp, const bf16_t* a, std::ptrdiff_t lda, const bf16_t* b, float* c,
               std::ptrdiff_t ldc, bool accumulate) {
    if (m < kAmxMinRows)
        vector_bf16_gemm(m, n, kp, a, lda, b, c, ldc, accumulate);
    else
        amx_gemm_bf16(m, n, kp, a, lda, b, c, ldc, accumulate);
}

void gemm_int8(int m, int n, int kp, const std::uint8_t* a, std::ptrdiff_t lda, const float* a_scale,
               const std::int8_t* b, const std::int32_t* comp, const float* b_scale, float* c, std::ptrdiff_t ldc,
               bool accumulate) {
    if (m < kAmxMinRows)
        vector_int8_gemm(m, n, kp, a, lda, a_scale, b, comp, b_scale, c, ldc, accumulate);
    else
        amx_gemm_int8(m, n, kp, a, lda, a_scale, b, comp, b_scale, c, ldc, accumulate);
}

}  // namespace

void fill_amx(KernelSet& set) {
    vector_bf16_gemm = set.bf16.gemm;
    vector_int8_gemm = set.int8.gemm;
    set.bf16.gemm = gemm_bf16;
    set.int8.gemm = gemm_int8;
}

}  // namespace RNNKIT_NS
}  // namespace rnnkit

#else

namespace rnnkit {
namespace RNNKIT_NS {

// Not an AMX build of the kernels: the vector kernels stay.
void fill_amx(KernelSet&) {}

}  // namespace RNNKIT_NS
}  // namespace rnnkit

#endif
