// Scalar building blocks of the low-precision kernels (product_table.h):
// one value's bf16 rounding and one row's int8 quantization, written once
// so that every ISA's vector code has the same reference to match.
#pragma once
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>

#include "kernels/product_table.h"

namespace rnnkit {
namespace RNNKIT_NS {
namespace lowp {

// Round to nearest even; a NaN stays a (quiet) NaN.
inline bf16_t to_bf16(float f) {
    std::uint32_t u;
    std::memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return bf16_t((u >> 16) | 0x40u);
    return bf16_t((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

inline float from_bf16(bf16_t b) {
    const std::uint32_t u = std::uint32_t(b) << 16;
    float f;
    std::memcpy(&f, &u, 4);
    return f;
}

// One row's quantization parameters (Int8Kernels::quantize_rows) from its
// finite extremes lo = min(0, min a), hi = max(0, max a): scale = (hi -
// lo) / 255 (hi / 255 - lo / 255 where the range overflows; 1 where it is
// below FLT_MIN, a zero row included, whose values then all round to 0)
// and zero point zp = clamp(nearbyint(-lo / scale), 0, 255).
struct RowQuant {
    float scale;
    std::int32_t zp;
};
inline RowQuant row_quant(float lo, float hi) {
    float scale = (hi - lo) / 255.0f;
    if (!(scale <= std::numeric_limits<float>::max())) scale = hi / 255.0f - lo / 255.0f;
    if (!(scale >= std::numeric_limits<float>::min())) scale = 1.0f;
    float z = std::nearbyint(-lo / scale);
    z = z > 255.0f ? 255.0f : (z < 0.0f ? 0.0f : z);
    return {scale, std::int32_t(z)};
}

// One value: clamp(nearbyint(a / scale) + zp, 0, 255), with a finite and
// scale a normal float (|a / scale| <= 256, no overflow, no NaN).
inline std::uint8_t quantize_value(float a, float scale, std::int32_t zp) {
    const std::int32_t u = std::int32_t(std::nearbyint(a / scale)) + zp;
    return std::uint8_t(u > 255 ? 255 : (u < 0 ? 0 : u));
}

// Quantizes one row (product_table.h, Int8Kernels::quantize_rows): returns
// its scale and zero point. A non-finite value makes the scale NaN (the
// row's products come out NaN as float's would), zp 0 and every byte 0.
// Padding p in [k, kp) holds zp (B's padding is zero: it never counts).
inline RowQuant quantize_row(int k, int kp, const float* a, std::uint8_t* dst) {
    float lo = 0.0f, hi = 0.0f;
    bool finite = true;
    for (int p = 0; p < k; ++p) {
        const float v = a[p];
        finite = finite && std::fabs(v) <= std::numeric_limits<float>::max();
        lo = v < lo ? v : lo;
        hi = v > hi ? v : hi;
    }
    if (!finite) {
        for (int p = 0; p < kp; ++p) dst[p] = 0;
        return {std::numeric_limits<float>::quiet_NaN(), 0};
    }
    const RowQuant r = row_quant(lo, hi);
    for (int p = 0; p < k; ++p) dst[p] = quantize_value(a[p], r.scale, r.zp);
    for (int p = k; p < kp; ++p) dst[p] = std::uint8_t(r.zp);
    return r;
}

}  // namespace lowp
}  // namespace RNNKIT_NS
}  // namespace rnnkit
