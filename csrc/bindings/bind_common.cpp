#include "bindings/bind_common.h"

#include "layer/buffer.h"

namespace rnnkit {
namespace bind {

void raise_type_error(const std::string& msg) { throw py::type_error(msg); }
void raise_value_error(const std::string& msg) { throw py::value_error(msg); }

template <> const char* dtype_name<float>() { return "float32"; }
template <> const char* dtype_name<double>() { return "float64"; }

namespace {

std::string expected_shape(std::initializer_list<Dim> dims) {
    std::string s = "(";
    bool first = true;
    for (const Dim& d : dims) {
        if (!first) s += ", ";
        s += d.size == kAnySize ? std::string(d.label) : std::to_string(d.size);
        first = false;
    }
    return s + (dims.size() == 1 ? ",)" : ")");
}

std::string actual_shape(const py::array& a) {
    std::string s = "(";
    for (py::ssize_t i = 0; i < a.ndim(); ++i) s += (i ? ", " : "") + std::to_string(a.shape(i));
    return s + (a.ndim() == 1 ? ",)" : ")");
}

}  // namespace

template <typename T>
py::array_t<T, py::array::c_style> take_array(py::handle obj, const char* name, std::initializer_list<Dim> dims) {
    if (!py::isinstance<py::array>(obj))
        raise_type_error(std::string(name) + ": expected a numpy.ndarray of dtype " + dtype_name<T>() + ", got " +
                         std::string(py::str(py::type::of(obj).attr("__name__"))));
    py::array arr = py::reinterpret_borrow<py::array>(obj);
    // Equivalence, not identity: unpickled arrays carry equal but distinct
    // dtype objects. Byte-swapped dtypes are not equivalent and are refused.
    if (!py::isinstance<py::array_t<T>>(arr))
        raise_type_error(std::string(name) + ": expected dtype " + dtype_name<T>() + ", got " +
                         std::string(py::str(arr.dtype())));
    if (arr.ndim() != py::ssize_t(dims.size()))
        raise_value_error(std::string(name) + ": expected a " + std::to_string(dims.size()) + "-D array of shape " +
                          expected_shape(dims) + ", got shape " + actual_shape(arr));
    py::ssize_t i = 0;
    for (const Dim& d : dims) {
        if (d.size != kAnySize && arr.shape(i) != d.size)
            raise_value_error(std::string(name) + ": expected shape " + expected_shape(dims) + ", got shape " +
                              actual_shape(arr));
        ++i;
    }
    // Kernels assume naturally aligned elements (np.frombuffer with an odd
    // offset is not): copy such arrays, and non-contiguous ones, once.
    if (!(arr.flags() & py::detail::npy_api::NPY_ARRAY_ALIGNED_)) arr = arr.attr("copy")();
    return py::array_t<T, py::array::c_style>::ensure(arr);
}

template <typename T>
py::array_t<T, py::array::c_style> new_array(std::initializer_list<py::ssize_t> shape) {
    std::size_t n = 1;
    for (py::ssize_t d : shape) n *= std::size_t(d);
    if (n * sizeof(T) < kCachedBlockMin) return py::array_t<T, py::array::c_style>(shape);
    auto* buf = new AlignedBuffer<T>(n);
    py::capsule owner(buf, [](void* p) { delete static_cast<AlignedBuffer<T>*>(p); });
    return py::array_t<T, py::array::c_style>(shape, buf->data(), owner);
}

template py::array_t<float, py::array::c_style> new_array<float>(std::initializer_list<py::ssize_t>);
template py::array_t<double, py::array::c_style> new_array<double>(std::initializer_list<py::ssize_t>);

template py::array_t<float, py::array::c_style> take_array<float>(py::handle, const char*, std::initializer_list<Dim>);
template py::array_t<double, py::array::c_style> take_array<double>(py::handle, const char*, std::initializer_list<Dim>);

bool is_float_dtype(py::handle obj, bool* is_double) {
    if (!py::isinstance<py::array>(obj)) return false;
    if (py::isinstance<py::array_t<float>>(obj)) { *is_double = false; return true; }
    if (py::isinstance<py::array_t<double>>(obj)) { *is_double = true; return true; }
    return false;
}

}  // namespace bind
}  // namespace rnnkit
