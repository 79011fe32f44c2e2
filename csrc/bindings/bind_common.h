// Argument checking shared by the bindings: every bad input becomes a
// TypeError or ValueError that names the argument and what was expected.
#pragma once
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstddef>
#include <initializer_list>
#include <optional>
#include <string>

namespace rnnkit {
namespace bind {

namespace py = pybind11;

// One expected dimension: a fixed size, or kAnySize with a label ("T").
struct Dim {
    py::ssize_t size;
    const char* label;
};
constexpr py::ssize_t kAnySize = -1;

// Largest dimension (and T * B, G * H) the int-indexed drivers accept; 2^30
// leaves room for the blocking arithmetic (rounding up to tiles) in int.
// take_array refuses larger dimensions before copying anything.
constexpr py::ssize_t kMaxDim = py::ssize_t(1) << 30;

[[noreturn]] void raise_type_error(const std::string& msg);
[[noreturn]] void raise_value_error(const std::string& msg);

template <typename T> const char* dtype_name();

// Checks that obj is an ndarray of dtype T with the expected shape and
// returns it C-contiguous (a copy only when it was not).
template <typename T>
py::array_t<T, py::array::c_style> take_array(py::handle obj, const char* name, std::initializer_list<Dim> dims);

// Same, but None is allowed and gives no array (callers pass nullptr on).
template <typename T>
std::optional<py::array_t<T, py::array::c_style>> take_optional(py::handle obj, const char* name,
                                                                std::initializer_list<Dim> dims) {
    if (obj.is_none()) return std::nullopt;
    return take_array<T>(obj, name, dims);
}

template <typename T>
const T* data_or_null(const std::optional<py::array_t<T, py::array::c_style>>& a) {
    return a ? a->data() : nullptr;
}

// "(2, 3)" for messages.
std::string shape_text(std::initializer_list<py::ssize_t> shape);

// Elements of an array of this shape; ValueError when its bytes
// (elem_bytes each) would not fit in size_t.
std::size_t checked_elements(std::initializer_list<py::ssize_t> shape, std::size_t elem_bytes);

// An uninitialised C-contiguous output array. Large ones take their memory
// from the block cache and give it back when the array dies: a training
// loop's outputs (y, dx, the weight gradients) then reuse pages already
// faulted in instead of fresh ones the OS has to zero each call.
template <typename T>
py::array_t<T, py::array::c_style> new_array(std::initializer_list<py::ssize_t> shape);

// "float32" / "float64" for dtype checks before the element type is known.
bool is_float_dtype(py::handle obj, bool* is_double);

}  // namespace bind
}  // namespace rnnkit
