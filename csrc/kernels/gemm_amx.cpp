// AMX tile kernels of the low-precision products (product_table.h):
// tdpbf16ps (bf16 pairs, float32 sums) and tdpbusd (u8 x s8 quads, int32
// sums). Compiled only where the compiler targets AMX (the amx ISA); every
// other ISA gets a fill_amx that leaves its table as it is.
//
// A block is 32 rows x 32 columns (one panel) in four C tiles of 16 x 16;
// per K step two A tiles (16 rows each) and two B tiles (16 columns each)
// are loaded. A B tile is a panel slice as it lies: one tile row is one k
// pair (bf16) or quad (int8) of 16 columns, 64 bytes, and the rows are
// nr * group elements (128 bytes) apart. A call has up to MR = 128 rows.
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

// The OS saves a thread's 8 KiB of tile data while they are in use.
//
// Other libraries in the same thread may keep their own configuration
// across their calls and not load it again, or take any configured tiles
// for theirs (ONNX Runtime's int8 kernels fault with SIGILL on our tile
// shapes after one of our calls, whether or not they had configured tiles
// before it). A call therefore leaves the tiles as it found them: another
// configuration put back, or released if there was none.
class CallersTiles {
public:
    CallersTiles() { _tile_storeconfig(&caller_); }
    ~CallersTiles() {
        if (caller_.palette_id == 0) {
            _tile_release();
            return;
        }
        TileConfig now;
        _tile_storeconfig(&now);
        if (std::memcmp(&now, &caller_, sizeof now) != 0) _tile_loadconfig(&caller_);
    }
    CallersTiles(const CallersTiles&) = delete;
    CallersTiles& operator=(const CallersTiles&) = delete;

private:
    TileConfig caller_;
};

inline void configure_rows(int rows) {
    if (rows > 16)
        configure(16, rows - 16);
    else
        configure(rows, 16);
}

// Both columns step K by 64 bytes (a tile row: 32 bf16 or 64 int8) and a
// panel by 64 * NR bytes per step; the second column tile starts 64 bytes
// into a panel row. So the tile loops are written once, on bytes; only
// the dot-product instruction differs.
constexpr int kNR = 32;
constexpr std::size_t kBRowBytes = 4 * kNR;  // one panel row: a k pair / quad of 32 columns

// K block of the many-row calls: the panel's slice of kKcBytes * NR bytes
// (16 KiB) stays in L1 while every 32-row block of the call passes over it.
constexpr int kKcBytes = 512;

// Where a pass's C tiles come from or go to: nothing (zero: from only),
// memory (the call's float C, ld_bytes apart; fewer than 16 valid columns
// pass through a 16 x 16 stage, as a tile row is 64 bytes), or a 32 x 32
// scratch of a row block (128-byte rows) holding the sums between K
// blocks or the int8 sums before dequantization (exact either way).
struct CSide {
    enum Kind { zero, memory, scratch } kind;
    void* p;
    std::ptrdiff_t ld_bytes;
};

inline void stage_in(const char* c, std::ptrdiff_t ld, int rows, int cols, float* tmp) {
    for (int i = 0; i < rows; ++i) std::memcpy(tmp + 16 * i, c + i * ld, sizeof(float) * cols);
}
inline void stage_out(char* c, std::ptrdiff_t ld, int rows, int cols, const float* tmp) {
    for (int i = 0; i < rows; ++i) std::memcpy(c + i * ld, tmp + 16 * i, sizeof(float) * cols);
}

// Tile T from / to the C tile at row r0 and byte column b0 of a side,
// rows x cols valid (rows as configured). The tile intrinsics spell their
// tile into the instruction's text, so T must be a literal: macros.
#define RNNKIT_AMX_LOAD_C(T, side, r0, b0, rows, cols, tmp)                       \
    do {                                                                          \
        char* at_ = static_cast<char*>((side).p) + (r0) * (side).ld_bytes + (b0); \
        if ((side).kind == CSide::zero) {                                         \
            _tile_zero(T);                                                        \
        } else if ((side).kind == CSide::scratch || (cols) == 16) {               \
            _tile_loadd(T, at_, (side).ld_bytes);                                 \
        } else {                                                                  \
            stage_in(at_, (side).ld_bytes, (rows), (cols), (tmp));                \
            _tile_loadd(T, (tmp), 64);                                            \
        }                                                                         \
    } while (0)

#define RNNKIT_AMX_STORE_C(T, side, r0, b0, rows, cols, tmp)                      \
    do {                                                                          \
        char* at_ = static_cast<char*>((side).p) + (r0) * (side).ld_bytes + (b0); \
        if ((side).kind == CSide::scratch || (cols) == 16) {                      \
            _tile_stored(T, at_, (side).ld_bytes);                                \
        } else {                                                                  \
            _tile_stored(T, (tmp), 64);                                           \
            stage_out(at_, (side).ld_bytes, (rows), (cols), (tmp));               \
        }                                                                         \
    } while (0)

// What a pass fetches while it runs: b_lines cache lines of B per K step
// from b on into L2 (the next slice of B in the many-row path), and the
// c_rows rows of C it (or the dequantization after it) will write, into
// L1 (C is often far larger than the caches; each tile row of C is on
// another page, and waiting for them at the store was measured to cost
// up to half the time of 1600 x 1024 x 4096).
struct Ahead {
    const char* b = nullptr;
    int b_lines = 0;
    const char* c = nullptr;
    std::ptrdiff_t ldc_bytes = 0;
    int c_rows = 0;
};

// One pass of a block of up to 32 rows x 32 columns of one panel over the
// K bytes [k0, k1): R row tiles and N column tiles (1 or 2 each), rows1 /
// cols1 valid in the last of each. a: the block's first row (lda bytes
// apart); panel: the panel's first byte. Meanwhile the pass fetches what
// comes next (see Ahead), spread over its K steps.
template <bool Int8, int R, int N>
void pass(int k0, int k1, const char* a, std::ptrdiff_t lda, const char* panel, const CSide& from, const CSide& to,
          int rows1, int cols1, const Ahead& ahead) {
    const char* pf = ahead.b;
    const int steps = (k1 - k0) / 64, c_per_step = (ahead.c_rows + steps - 1) / steps;
    int c_row = 0;
    alignas(64) float tmp[16 * 16];
    const int r0 = R == 2 ? 16 : rows1, c0 = N == 2 ? 16 : cols1;
    RNNKIT_AMX_LOAD_C(0, from, 0, 0, r0, c0, tmp);
    if (N == 2) RNNKIT_AMX_LOAD_C(1, from, 0, 64, r0, cols1, tmp);
    if (R == 2) RNNKIT_AMX_LOAD_C(2, from, 16, 0, rows1, c0, tmp);
    if (R == 2 && N == 2) RNNKIT_AMX_LOAD_C(3, from, 16, 64, rows1, cols1, tmp);
    const char* a1 = a + 16 * lda;
    for (int p = k0; p < k1; p += 64) {
        const char* bp = panel + std::size_t(p) * kNR;
        for (int l = 0; l < ahead.b_lines; ++l) _mm_prefetch(pf + 64 * l, _MM_HINT_T1);
        pf += 64 * ahead.b_lines;
        for (int e = c_row + c_per_step < ahead.c_rows ? c_row + c_per_step : ahead.c_rows; c_row < e; ++c_row) {
            const char* row = ahead.c + c_row * ahead.ldc_bytes;
            _mm_prefetch(row, _MM_HINT_T0);
            _mm_prefetch(row + 127, _MM_HINT_T0);
        }
        _tile_loadd(4, a + p, lda);
        _tile_loadd(6, bp, kBRowBytes);
        if (N == 2) _tile_loadd(7, bp + 64, kBRowBytes);
        if (R == 2) _tile_loadd(5, a1 + p, lda);
        if constexpr (Int8) {
            _tile_dpbusd(0, 4, 6);
            if (N == 2) _tile_dpbusd(1, 4, 7);
            if (R == 2) _tile_dpbusd(2, 5, 6);
            if (R == 2 && N == 2) _tile_dpbusd(3, 5, 7);
        } else {
            _tile_dpbf16ps(0, 4, 6);
            if (N == 2) _tile_dpbf16ps(1, 4, 7);
            if (R == 2) _tile_dpbf16ps(2, 5, 6);
            if (R == 2 && N == 2) _tile_dpbf16ps(3, 5, 7);
        }
    }
    RNNKIT_AMX_STORE_C(0, to, 0, 0, r0, c0, tmp);
    if (N == 2) RNNKIT_AMX_STORE_C(1, to, 0, 64, r0, cols1, tmp);
    if (R == 2) RNNKIT_AMX_STORE_C(2, to, 16, 0, rows1, c0, tmp);
    if (R == 2 && N == 2) RNNKIT_AMX_STORE_C(3, to, 16, 64, rows1, cols1, tmp);
}

#undef RNNKIT_AMX_LOAD_C
#undef RNNKIT_AMX_STORE_C

// pass<> for a block of `rows` rows and `cols` columns (1..32 each).
template <bool Int8>
void pass_of(int rows, int cols, int k0, int k1, const char* a, std::ptrdiff_t lda, const char* panel,
             const CSide& from, const CSide& to, const Ahead& ahead) {
    const int rows1 = rows > 16 ? rows - 16 : rows, cols1 = cols > 16 ? cols - 16 : cols;
    if (rows > 16) {
        if (cols > 16)
            pass<Int8, 2, 2>(k0, k1, a, lda, panel, from, to, rows1, cols1, ahead);
        else
            pass<Int8, 2, 1>(k0, k1, a, lda, panel, from, to, rows1, cols1, ahead);
    } else {
        if (cols > 16)
            pass<Int8, 1, 2>(k0, k1, a, lda, panel, from, to, rows1, cols1, ahead);
        else
            pass<Int8, 1, 1>(k0, k1, a, lda, panel, from, to, rows1, cols1, ahead);
    }
}

// int8 products: the sums' dequantization, from the call's arguments.
struct Int8Finish {
    const float* a_scale;
    const std::int32_t* a_zero;
    const std::int32_t* colsum;
    const float* b_scale;
    bool accumulate;
};

// C[i][j] (+)= (float(acc - a_zero[i] * colsum[j]) * a_scale[i]) *
// b_scale[j], the portable kernel's expression and order (bitwise equal to
// it); acc is a 32 x 32 scratch.
void dequantize(int rows, int cols, const std::int32_t* acc, const float* a_scale, const std::int32_t* a_zero,
                const std::int32_t* colsum, const float* b_scale, float* c, std::ptrdiff_t ldc, bool accumulate) {
    for (int j = 0; j < cols; j += 16) {
        const __mmask16 k = cols - j >= 16 ? __mmask16(0xffff) : __mmask16((1u << (cols - j)) - 1);
        const __m512i cj = _mm512_maskz_loadu_epi32(k, colsum + j);
        const __m512 bj = _mm512_maskz_loadu_ps(k, b_scale + j);
        for (int i = 0; i < rows; ++i) {
            const __m512i zc = _mm512_mullo_epi32(_mm512_set1_epi32(a_zero[i]), cj);
            const __m512i s = _mm512_sub_epi32(_mm512_maskz_loadu_epi32(k, acc + i * 32 + j), zc);
            __m512 v = _mm512_mul_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(s), _mm512_set1_ps(a_scale[i])), bj);
            float* ci = c + i * ldc + j;
            if (accumulate) v = _mm512_add_ps(_mm512_maskz_loadu_ps(k, ci), v);
            _mm512_mask_storeu_ps(ci, k, v);
        }
    }
}

constexpr int kMaxBlocks = (kBf16MR > kInt8MR ? kBf16MR : kInt8MR) / 32;

// C[m x n] over the panels of b (kp_bytes of K each) on tiles: bf16 sums
// straight into C (with accumulate starting from it), int8 sums into a
// scratch, then dequantized (fin).
//  - The full 32-row blocks of a call of 64 rows or more with K beyond one
//    K block go K block by K block, so each panel slice is read from L1 by
//    every row block; their sums wait in a scratch between K blocks.
//  - The other rows (and short K): one pass over all of K per block.
template <bool Int8>
void tile_product(int m, int n, int kp_bytes, const char* a, std::ptrdiff_t lda, const char* b, float* c,
                  std::ptrdiff_t ldc, bool accumulate, const Int8Finish* fin) {
    alignas(64) std::int32_t scratch[kMaxBlocks][32 * 32];
    const std::size_t panel_bytes = std::size_t(kp_bytes) * kNR;
    const std::ptrdiff_t ldc_bytes = ldc * std::ptrdiff_t(sizeof(float));
    auto in_scratch = [&](int blk) { return CSide{CSide::scratch, scratch[blk], 32 * sizeof(std::int32_t)}; };
    // The first pass's start (C itself for bf16 with accumulate) and the
    // last pass's destination (C for bf16, the scratch for int8).
    auto start = [&](int i0, int j) {
        return CSide{!Int8 && accumulate ? CSide::memory : CSide::zero, c + i0 * ldc + j, ldc_bytes};
    };
    auto end = [&](int blk, int i0, int j) {
        return Int8 ? in_scratch(blk) : CSide{CSide::memory, c + i0 * ldc + j, ldc_bytes};
    };
    auto finish = [&](int blk, int i0, int rows, int j, int cols) {
        if constexpr (Int8)
            dequantize(rows, cols, scratch[blk], fin->a_scale + i0, fin->a_zero + i0, fin->colsum + j, fin->b_scale + j, c + i0 * ldc + j,
                       ldc, fin->accumulate);
    };
    auto with_c = [&](Ahead ahead, int i0, int j, int rows) {
        ahead.c = reinterpret_cast<const char*>(c + i0 * ldc + j);
        ahead.ldc_bytes = ldc_bytes;
        ahead.c_rows = rows;
        return ahead;
    };
    int blocked = m >= 64 && kp_bytes > kKcBytes ? m / 32 : 0;
    if (blocked > kMaxBlocks) blocked = kMaxBlocks;
    if (blocked > 0) {
        configure(16, 16);
        for (int j = 0; j < n; j += kNR) {
            const char* panel = b + std::size_t(j / kNR) * panel_bytes;
            const int cols = n - j < kNR ? n - j : kNR;
            for (int k0 = 0; k0 < kp_bytes; k0 += kKcBytes) {
                const int k1 = kp_bytes - k0 <= kKcBytes ? kp_bytes : k0 + kKcBytes;
                // The next slice of B (this panel's next K block or the next
                // panel's first: the panels are one stream) is fetched into
                // L2 meanwhile, spread over the passes' K steps; the
                // hardware's prefetchers alone left the first row block
                // waiting on it (measured 10-20% slower on 1600x1024x4096).
                const char* next = panel + std::size_t(k1) * kNR;
                const int steps = (k1 - k0) / 64, lines = (kKcBytes * kNR / 64 + blocked * steps - 1) / (blocked * steps);
                for (int blk = 0; blk < blocked; ++blk) {
                    const int i0 = 32 * blk;
                    Ahead ahead;
                    ahead.b = next + std::size_t(blk) * steps * lines * 64;
                    ahead.b_lines = lines;
                    if (k1 == kp_bytes) ahead = with_c(ahead, i0, j, 32);
                    pass_of<Int8>(32, cols, k0, k1, a + i0 * lda, lda, panel,
                                  k0 == 0 ? start(i0, j) : in_scratch(blk),
                                  k1 == kp_bytes ? end(blk, i0, j) : in_scratch(blk), ahead);
                }
            }
            for (int blk = 0; blk < blocked; ++blk) finish(blk, 32 * blk, 32, j, cols);
        }
    }
    for (int i0 = 32 * blocked; i0 < m; i0 += 32) {
        const int rows = m - i0 < 32 ? m - i0 : 32;
        configure_rows(rows);
        for (int j = 0; j < n; j += kNR) {
            const char* panel = b + std::size_t(j / kNR) * panel_bytes;
            const int cols = n - j < kNR ? n - j : kNR;
            pass_of<Int8>(rows, cols, 0, kp_bytes, a + i0 * lda, lda, panel, start(i0, j), end(0, i0, j),
                          with_c(Ahead(), i0, j, rows));
            finish(0, i0, rows, j, cols);
        }
    }
}

// Rows of a call that go on tiles: all of them, except that a last block
// of fewer than min_rows rows goes to the vector kernel; none when kp is
// not whole tiles (k_bytes a multiple of 64), which a driver that cuts K
// into its own blocks may pass: the vector kernels take any kp.
inline int tile_rows(int m, int kp_bytes, int min_rows) {
    if (m < min_rows || kp_bytes % 64 != 0) return 0;
    const int tail = m % 32;
    return tail != 0 && tail < min_rows ? m - tail : m;
}

// The vector kernels the table held before fill_amx: they take the calls
// of fewer than kAmxMinRows rows. Set once, when the registry fills the
// amx table (before any product can run).
decltype(Bf16Kernels::gemm) vector_bf16_gemm = nullptr;
decltype(Int8Kernels::gemm) vector_int8_gemm = nullptr;

void gemm_bf16(int m, int n, int kp, const bf16_t* a, std::ptrdiff_t lda, const bf16_t* b, float* c,
               std::ptrdiff_t ldc, bool accumulate) {
    // Every row on tiles, however few: AMX rounds its sums its own way
    // (product_table.h), so a row handed to the vector kernel would come
    // out differently with other rows beside it; int8 sums are exact and
    // take the faster kernel for few rows.
    const int mt = tile_rows(m, kp * 2, 1);
    if (mt > 0) {
        const CallersTiles keep;
        tile_product<false>(mt, n, kp * 2, reinterpret_cast<const char*>(a), lda * 2,
                            reinterpret_cast<const char*>(b), c, ldc, accumulate, nullptr);
    }
    if (mt < m) vector_bf16_gemm(m - mt, n, kp, a + mt * lda, lda, b, c + mt * ldc, ldc, accumulate);
}

void gemm_int8(int m, int n, int kp, const std::uint8_t* a, std::ptrdiff_t lda, const float* a_scale,
               const std::int32_t* a_zero, const std::int8_t* b, const std::int32_t* colsum, const float* b_scale,
               float* c, std::ptrdiff_t ldc, bool accumulate) {
    const int mt = tile_rows(m, kp, kAmxMinRows);
    if (mt > 0) {
        const Int8Finish fin{a_scale, a_zero, colsum, b_scale, accumulate};
        const CallersTiles keep;
        tile_product<true>(mt, n, kp, reinterpret_cast<const char*>(a), lda, reinterpret_cast<const char*>(b), c,
                           ldc, accumulate, &fin);
    }
    if (mt < m)
        vector_int8_gemm(m - mt, n, kp, a + mt * lda, lda, a_scale + mt, a_zero + mt, b, colsum, b_scale, c + mt * ldc,
                         ldc, accumulate);
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
