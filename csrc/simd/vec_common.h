// ISA-generic helpers written once against the Vec<T> vocabulary; included
// after the ISA header, so every function lands in that ISA's namespace and
// no instruction of one ISA can leak into another object.
#pragma once
#include <cstddef>
#include <type_traits>

namespace rnnkit {
namespace RNNKIT_NS {

// Tails shorter than a register go through a zero-filled stack buffer, so the
// lanes of a tail are computed by exactly the same instructions as full ones.
template <typename T>
inline typename Vec<T>::reg load_n(const T* p, int n) {
    alignas(64) T buf[Vec<T>::width] = {};
    for (int i = 0; i < n; ++i) buf[i] = p[i];
    return Vec<T>::load(buf);
}

template <typename T>
inline void store_n(T* p, typename Vec<T>::reg v, int n) {
    alignas(64) T buf[Vec<T>::width];
    Vec<T>::store(buf, v);
    for (int i = 0; i < n; ++i) p[i] = buf[i];
}

template <typename T>
inline typename Vec<T>::reg load_any(const T* p, int n) {
    return n == Vec<T>::width ? Vec<T>::load(p) : load_n(p, n);
}

template <typename T>
inline void store_any(T* p, typename Vec<T>::reg v, int n) {
    if (n == Vec<T>::width) Vec<T>::store(p, v); else store_n(p, v, n);
}

// Constants of exp(x) = 2^n * e^r, n = round(x / ln 2), |r| <= ln2 / 2.
template <typename T> struct ExpConst;

template <> struct ExpConst<float> {
    static constexpr float log2e = 1.44269504088896341f;
    // ln 2 split so that n * ln2_hi is exact for |n| < 2^8 (Cody-Waite).
    static constexpr float ln2_hi = 0.693359375f;
    static constexpr float ln2_lo = -2.12194440e-4f;
    // Lowest x whose n = round(x log2 e) >= -127 keeps the exponent field of
    // 2^n in range (n = -127 encodes 0). Every e^x that is a normal float
    // (x >= -87.34) is computed; below x_min the result is flushed to 0.
    static constexpr float x_min = -88.0f;
    // Taylor coefficients 1/k!, k = 7..2: truncation error of expm1(r) on
    // |r| <= 0.35 is below r^8/8! ~ 5e-9 absolute, 1.5e-8 relative.
    static constexpr int degree = 7;
    static constexpr float coef[6] = {1.0f / 5040, 1.0f / 720, 1.0f / 120, 1.0f / 24, 1.0f / 6, 0.5f};
};

template <> struct ExpConst<double> {
    static constexpr double log2e = 1.4426950408889634074;
    static constexpr double ln2_hi = 6.93147180369123816490e-01;
    static constexpr double ln2_lo = 1.90821492927058770002e-10;
    // As for float: n >= -1023, and every normal e^x (x >= -708.40) computed.
    static constexpr double x_min = -709.0;
    // Taylor coefficients 1/k!, k = 13..2: truncation r^14/14! relative to r
    // is below 1.2e-17 on |r| <= 0.35.
    static constexpr int degree = 13;
    static constexpr double coef[12] = {
        1.0 / 6227020800.0, 1.0 / 479001600.0, 1.0 / 39916800.0, 1.0 / 3628800.0,
        1.0 / 362880.0, 1.0 / 40320.0, 1.0 / 5040.0, 1.0 / 720.0, 1.0 / 120.0,
        1.0 / 24.0, 1.0 / 6.0, 0.5};
};

// For N registers x <= 0 at once: e^x = scale * (1 + p) and
// e^x - 1 = scale * p + (scale - 1), scale = 2^n and p = expm1(r), both
// accurate to a few ulp in relative terms (expm1 has no cancellation near
// 0 because p is evaluated directly). Below x_min, x is clamped there,
// where n = -bias makes scale exactly 0: e^x = 0 and e^x - 1 = -1.
// NaN inputs give unspecified numbers; callers restore NaN.
// Each stage runs over all N registers before the next: one register's
// chain is ~25 dependent operations, and N independent chains side by side
// keep the FMA pipes busy where one at a time would leave them waiting.
template <typename T, int N>
inline void exp_parts_neg(const typename Vec<T>::reg* x, typename Vec<T>::reg* scale, typename Vec<T>::reg* p) {
    using V = Vec<T>;
    using C = ExpConst<T>;
    typename V::reg n[N], r[N], q[N];
    for (int i = 0; i < N; ++i) {
        // An explicit rounding instruction, not the add-and-subtract-2^23
        // trick: that one breaks under excess precision (x87) or
        // value-unsafe math.
        r[i] = V::max(x[i], V::set1(C::x_min));
        n[i] = V::round(V::mul(r[i], V::set1(C::log2e)));
    }
    for (int i = 0; i < N; ++i) r[i] = V::fmadd(n[i], V::set1(-C::ln2_hi), r[i]);
    for (int i = 0; i < N; ++i) r[i] = V::fmadd(n[i], V::set1(-C::ln2_lo), r[i]);
    // Horner: q = 1/2! + r/3! + ... ; p = r + r^2 q = expm1(r).
    for (int i = 0; i < N; ++i) q[i] = V::fmadd(V::set1(C::coef[0]), r[i], V::set1(C::coef[1]));
    for (int k = 2; k < C::degree - 1; ++k)
        for (int i = 0; i < N; ++i) q[i] = V::fmadd(q[i], r[i], V::set1(C::coef[k]));
    for (int i = 0; i < N; ++i) p[i] = V::fmadd(V::mul(r[i], r[i]), q[i], r[i]);
    for (int i = 0; i < N; ++i) scale[i] = V::pow2(n[i]);
}

// sigmoid(x) = 1 / (1 + e^-|x|) for x >= 0 and e^-|x| / (1 + e^-|x|) below:
// the exponential never overflows and both halves keep full relative
// accuracy. NaN propagates, sigmoid(+-inf) = 1 / 0, sigmoid(+-0) = 0.5.
// tanh(|x|) = -expm1(-2|x|) / (expm1(-2|x|) + 2), sign restored afterwards:
// no cancellation near 0 (tanh(+-0) = +-0), exactly +-1 once e^-2|x| is
// below half an ulp of 1, NaN propagates.
// In place, NS registers s through the sigmoid and NT registers t through
// tanh, all interleaved (the gates of a step need both at once).
template <typename T, int NS, int NT>
inline void sigmoid_tanh(typename Vec<T>::reg* s, typename Vec<T>::reg* t) {
    using V = Vec<T>;
    using R = typename V::reg;
    constexpr int N = NS + NT;
    R a[N], scale[N], p[N];
    for (int i = 0; i < NS; ++i) a[i] = V::sub(V::zero(), V::abs(s[i]));
    for (int i = 0; i < NT; ++i) {
        const R m = V::abs(t[i]);
        a[NS + i] = V::sub(V::zero(), V::add(m, m));
    }
    exp_parts_neg<T, N>(a, scale, p);
    const R one = V::set1(T(1));
    for (int i = 0; i < NS; ++i) {
        const R e = V::fmadd(scale[i], p[i], scale[i]);
        const R pos = V::div(one, V::add(one, e));
        const R res = V::select(V::lt(s[i], V::zero()), V::mul(e, pos), pos);
        s[i] = V::select(V::isnan(s[i]), s[i], res);
    }
    for (int i = 0; i < NT; ++i) {
        const R em1 = V::fmadd(scale[NS + i], p[NS + i], V::sub(scale[NS + i], one));
        const R res = V::copysign_pos(V::div(V::abs(em1), V::add(em1, V::set1(T(2)))), t[i]);
        t[i] = V::select(V::isnan(t[i]), t[i], res);
    }
}

// Walks the units [0, s) of one row of a block: pairs of full vectors, then
// one vector at a time (the last may be partial). f(U, u, n) handles U
// vectors (a std::integral_constant) from unit u on, n lanes each, so the
// gate math can run the activations of two vectors side by side.
template <typename T, typename F>
inline void for_unit_vectors(int s, F&& f) {
    constexpr int W = Vec<T>::width;
    int u = 0;
    for (; u + 2 * W <= s; u += 2 * W) f(std::integral_constant<int, 2>{}, u, W);
    for (; u < s; u += W) f(std::integral_constant<int, 1>{}, u, s - u < W ? s - u : W);
}

template <typename T>
inline typename Vec<T>::reg sigmoid(typename Vec<T>::reg x) {
    sigmoid_tanh<T, 1, 0>(&x, nullptr);
    return x;
}

template <typename T>
inline typename Vec<T>::reg tanh(typename Vec<T>::reg x) {
    sigmoid_tanh<T, 0, 1>(nullptr, &x);
    return x;
}

}  // namespace RNNKIT_NS
}  // namespace rnnkit
