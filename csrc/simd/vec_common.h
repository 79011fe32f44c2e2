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
    // 1.5 * 2^23 + bias: x log2 e + shifter rounds to an integer, and the
    // mantissa bits below the 1.5 hold n + bias (|n| < 2^22).
    static constexpr float shifter = 0x1.8p23f + 127.0f;
    // expm1(r) = r + r^2 q(r), q of degree 4 (highest power first): near
    // minimax (Lawson-refined) for the relative error of expm1 on |r| <=
    // ln 2 / 2 + 1e-4, below 1.8e-8 (0.15 eps) with the coefficients
    // rounded to float, as low as the degree-7 Taylor polynomial's 1.5e-8
    // with one FMA less.
    static constexpr int degree = 6;
    static constexpr float coef[5] = {1.388251898e-03f, 8.366533555e-03f, 4.166720062e-02f, 1.666654348e-01f,
                                      4.999999702e-01f};
};

template <> struct ExpConst<double> {
    static constexpr double log2e = 1.4426950408889634074;
    static constexpr double ln2_hi = 6.93147180369123816490e-01;
    static constexpr double ln2_lo = 1.90821492927058770002e-10;
    // As for float: n >= -1023, and every normal e^x (x >= -708.40) computed.
    static constexpr double x_min = -709.0;
    static constexpr double shifter = 0x1.8p52 + 1023.0;  // 1.5 * 2^52 + bias
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
// A NaN x passes the clamp and makes p NaN, so whatever callers build from
// p is NaN too, without a test of its own.
// Each stage runs over all N registers before the next: one register's
// chain is ~20 dependent operations, and N independent chains side by side
// keep the FMA pipes busy where one at a time would leave them waiting.
template <typename T, int N>
inline void exp_parts_neg(const typename Vec<T>::reg* x, typename Vec<T>::reg* scale, typename Vec<T>::reg* p) {
    using V = Vec<T>;
    using C = ExpConst<T>;
    typename V::reg n[N], r[N], q[N];
    // Every ISA's max(a, b) is NaN where b is NaN.
    for (int i = 0; i < N; ++i) r[i] = V::max(V::set1(C::x_min), x[i]);
    if constexpr (V::exact_fma) {
        // n = round(x log2 e) by one FMA with the shifter, which leaves n +
        // bias in the low mantissa bits: shifted into the exponent field
        // they are 2^n, and taking the shifter off again gives n exactly.
        for (int i = 0; i < N; ++i) {
            const auto t = V::fmadd(r[i], V::set1(C::log2e), V::set1(C::shifter));
            scale[i] = V::shift_to_exponent(t);
            n[i] = V::sub(t, V::set1(C::shifter));
        }
    } else {
        for (int i = 0; i < N; ++i) {
            n[i] = V::round(V::mul(r[i], V::set1(C::log2e)));
            scale[i] = V::pow2(n[i]);
        }
    }
    for (int i = 0; i < N; ++i) r[i] = V::fmadd(n[i], V::set1(-C::ln2_hi), r[i]);
    for (int i = 0; i < N; ++i) r[i] = V::fmadd(n[i], V::set1(-C::ln2_lo), r[i]);
    // Horner on q from its highest power; p = r + r^2 q = expm1(r).
    for (int i = 0; i < N; ++i) q[i] = V::fmadd(V::set1(C::coef[0]), r[i], V::set1(C::coef[1]));
    for (int k = 2; k < C::degree - 1; ++k)
        for (int i = 0; i < N; ++i) q[i] = V::fmadd(q[i], r[i], V::set1(C::coef[k]));
    for (int i = 0; i < N; ++i) p[i] = V::fmadd(V::mul(r[i], r[i]), q[i], r[i]);
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
    for (int i = 0; i < NS; ++i) a[i] = V::neg_abs(s[i]);
    for (int i = 0; i < NT; ++i) a[NS + i] = V::neg_abs(V::add(t[i], t[i]));
    exp_parts_neg<T, N>(a, scale, p);
    const R one = V::set1(T(1));
    // Below 0 the numerator is e^-|x| itself: one division either way.
    for (int i = 0; i < NS; ++i) {
        const R e = V::fmadd(scale[i], p[i], scale[i]);
        s[i] = V::div(V::select(V::lt(s[i], V::zero()), e, one), V::add(one, e));
    }
    // expm1 <= 0, so the quotient is -tanh(|x|): copysign sets the sign.
    for (int i = 0; i < NT; ++i) {
        const R em1 = V::fmadd(scale[NS + i], p[NS + i], V::sub(scale[NS + i], one));
        t[i] = V::copysign(V::div(em1, V::add(em1, V::set1(T(2)))), t[i]);
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
