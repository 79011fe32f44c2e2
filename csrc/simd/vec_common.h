// ISA-generic helpers written once against the Vec<T> vocabulary; included
// after the ISA header, so every function lands in that ISA's namespace and
// no instruction of one ISA can leak into another object.
#pragma once
#include <cstddef>

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

// For x <= 0: e^x and e^x - 1, both accurate to a few ulp in relative terms
// (expm1 has no cancellation near 0 because it is 2^n * p(r) + (2^n - 1)
// with p(r) = expm1(r) evaluated directly). Below x_min: 0 and -1.
// NaN inputs give unspecified numbers; callers restore NaN.
template <typename T>
inline void exp_expm1_neg(typename Vec<T>::reg x, typename Vec<T>::reg* e, typename Vec<T>::reg* em1) {
    using V = Vec<T>;
    using C = ExpConst<T>;
    typename V::reg xmin = V::set1(C::x_min);
    typename V::reg xc = V::max(x, xmin);
    // An explicit rounding instruction, not the add-and-subtract-2^23 trick:
    // that one breaks under excess precision (x87) or value-unsafe math.
    typename V::reg n = V::round(V::mul(xc, V::set1(C::log2e)));
    typename V::reg r = V::fmadd(n, V::set1(-C::ln2_hi), xc);
    r = V::fmadd(n, V::set1(-C::ln2_lo), r);
    // Horner: q = 1/2! + r/3! + ... ; p = r + r^2 q = expm1(r).
    typename V::reg q = V::set1(C::coef[0]);
    for (int k = 1; k < C::degree - 1; ++k) q = V::fmadd(q, r, V::set1(C::coef[k]));
    typename V::reg p = V::fmadd(V::mul(r, r), q, r);
    typename V::reg scale = V::pow2(n);
    typename V::reg one = V::set1(T(1));
    typename V::mask under = V::lt(x, xmin);
    if (e) *e = V::select(under, V::zero(), V::fmadd(scale, p, scale));
    if (em1) *em1 = V::select(under, V::set1(T(-1)), V::fmadd(scale, p, V::sub(scale, one)));
}

// sigmoid(x) = 1 / (1 + e^-|x|) for x >= 0 and e^-|x| / (1 + e^-|x|) below:
// the exponential never overflows and both halves keep full relative
// accuracy. NaN propagates, sigmoid(+-inf) = 1 / 0, sigmoid(+-0) = 0.5.
template <typename T>
inline typename Vec<T>::reg sigmoid(typename Vec<T>::reg x) {
    using V = Vec<T>;
    typename V::reg e;
    exp_expm1_neg<T>(V::sub(V::zero(), V::abs(x)), &e, nullptr);
    typename V::reg pos = V::div(V::set1(T(1)), V::add(V::set1(T(1)), e));
    typename V::reg res = V::select(V::lt(x, V::zero()), V::mul(e, pos), pos);
    return V::select(V::isnan(x), x, res);
}

// tanh(|x|) = -expm1(-2|x|) / (expm1(-2|x|) + 2), sign restored afterwards:
// no cancellation near 0 (tanh(+-0) = +-0), exactly +-1 once e^-2|x| is
// below half an ulp of 1, NaN propagates.
template <typename T>
inline typename Vec<T>::reg tanh(typename Vec<T>::reg x) {
    using V = Vec<T>;
    typename V::reg em1;
    typename V::reg a = V::abs(x);
    exp_expm1_neg<T>(V::sub(V::zero(), V::add(a, a)), nullptr, &em1);
    typename V::reg res = V::div(V::abs(em1), V::add(em1, V::set1(T(2))));
    res = V::copysign_pos(res, x);
    return V::select(V::isnan(x), x, res);
}

}  // namespace RNNKIT_NS
}  // namespace rnnkit
