// The accuracy contract of the vector sigmoid and tanh of every ISA,
// checked by tests/test_activations.py on dense grids and special values.
//
// Relative error |f(x) - exact| / |exact|, for results of at least the
// smallest normal number; results below it (sigmoid(x) for x < -87 in
// float32, -708 in float64) may be flushed to zero. Measured maxima are
// about half of these bounds (exp to ~1-2 ulp, then one division).
#pragma once

namespace rnnkit {

constexpr double kSigmoidMaxRelErrF32 = 4.0 * 1.1920928955078125e-07;   // 4 eps(float32)
constexpr double kTanhMaxRelErrF32 = 4.0 * 1.1920928955078125e-07;
constexpr double kSigmoidMaxRelErrF64 = 4.0 * 2.220446049250313e-16;    // 4 eps(float64)
constexpr double kTanhMaxRelErrF64 = 4.0 * 2.220446049250313e-16;

}  // namespace rnnkit
