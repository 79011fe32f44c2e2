// The C++ objects behind rnnkit.PackedWeights and the training contexts:
// type-erased over float/double so Python sees one class of each.
#pragma once
#include <pybind11/pybind11.h>

#include <cstdint>
#include <memory>

#include "layer/rnn.h"

namespace rnnkit {
namespace bind {

struct PackedHandle {
    CellKind cell;
    bool is_double;
    std::shared_ptr<PackedRnn<float>> f32;
    std::shared_ptr<PackedRnn<double>> f64;

    template <typename T> const std::shared_ptr<PackedRnn<T>>& get() const;
    template <typename T> std::shared_ptr<PackedRnn<T>>& get() {
        return const_cast<std::shared_ptr<PackedRnn<T>>&>(static_cast<const PackedHandle*>(this)->get<T>());
    }
    int input_size() const { return is_double ? f64->I : f32->I; }
    int hidden_size() const { return is_double ? f64->H : f32->H; }
    Isa isa() const { return is_double ? f64->isa : f32->isa; }
    bool linear_before_reset() const { return is_double ? f64->linear_before_reset : f32->linear_before_reset; }
    Precision products() const { return is_double ? Precision::full : f32->products; }
};
template <> inline const std::shared_ptr<PackedRnn<float>>& PackedHandle::get<float>() const { return f32; }
template <> inline const std::shared_ptr<PackedRnn<double>>& PackedHandle::get<double>() const { return f64; }

struct ContextHandle {
    CellKind cell;
    bool is_double;
    bool single_step;    // made by *_cell(training=True): grads have no time axis
    std::shared_ptr<TrainingContext<float>> f32;
    std::shared_ptr<TrainingContext<double>> f64;
    bool packed = false; // made with batch_sizes: dy and dx are packed (N, H), (N, I)
    // The context reads x in backward instead of keeping a copy. x holds the
    // array alive; an array the caller can still write to is fingerprinted
    // so that backward refuses one changed since (as autograd refuses a
    // saved tensor modified in place).
    pybind11::object x;
    bool x_callers = false;
    std::uint64_t x_fingerprint = 0;

    template <typename T> std::shared_ptr<TrainingContext<T>>& get();
};
template <> inline std::shared_ptr<TrainingContext<float>>& ContextHandle::get<float>() { return f32; }
template <> inline std::shared_ptr<TrainingContext<double>>& ContextHandle::get<double>() { return f64; }

}  // namespace bind
}  // namespace rnnkit
