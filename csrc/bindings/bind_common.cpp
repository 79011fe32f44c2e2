#include "bindings/bind_common.h"

#include <cstdint>
#include <memory>

#include "layer/buffer.h"
#include "layer/threading.h"

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
    // The drivers index with int; checked before any copy is made.
    for (py::ssize_t k = 0; k < arr.ndim(); ++k)
        if (arr.shape(k) > kMaxDim)
            raise_value_error(std::string(name) + ": dimension " + std::to_string(k) + " of shape " + actual_shape(arr) +
                              " is above " + std::to_string(kMaxDim) + ", the largest rnnkit supports");
    // Kernels assume naturally aligned elements (np.frombuffer with an odd
    // offset is not): copy such arrays, and non-contiguous ones, once.
    if (!(arr.flags() & py::detail::npy_api::NPY_ARRAY_ALIGNED_)) arr = arr.attr("copy")();
    // The constructor, not ensure(): ensure() swallows a failed copy's
    // MemoryError and returns a null array.
    return py::array_t<T, py::array::c_style>(arr);
}

std::size_t checked_elements(std::initializer_list<py::ssize_t> shape, std::size_t elem_bytes) {
    std::size_t n = 1;
    for (py::ssize_t d : shape) {
        if (d < 0 || (d > 0 && n > SIZE_MAX / elem_bytes / std::size_t(d)))
            raise_value_error("an output of shape " + shape_text(shape) + " has more bytes than memory can address");
        n *= std::size_t(d);
    }
    return n;
}

std::string shape_text(std::initializer_list<py::ssize_t> shape) {
    std::string s = "(";
    bool first = true;
    for (py::ssize_t d : shape) {
        s += (first ? "" : ", ") + std::to_string(d);
        first = false;
    }
    return s + (shape.size() == 1 ? ",)" : ")");
}

template <typename T>
py::array_t<T, py::array::c_style> new_array(std::initializer_list<py::ssize_t> shape) {
    const std::size_t n = checked_elements(shape, sizeof(T));
    // NumPy's own allocation raises MemoryError itself.
    if (n * sizeof(T) < kCachedBlockMin) return py::array_t<T, py::array::c_style>(shape);
    // std::bad_alloc (MemoryError) if the block cannot be had; owned here
    // until the capsule (which may fail to be made) owns it.
    auto buf = std::make_unique<AlignedBuffer<T>>(n);
    T* data = buf->data();
    py::capsule owner(buf.get(), [](void* p) { delete static_cast<AlignedBuffer<T>*>(p); });
    buf.release();
    return py::array_t<T, py::array::c_style>(shape, data, owner);
}

template py::array_t<float, py::array::c_style> new_array<float>(std::initializer_list<py::ssize_t>);
template py::array_t<double, py::array::c_style> new_array<double>(std::initializer_list<py::ssize_t>);

template py::array_t<float, py::array::c_style> take_array<float>(py::handle, const char*, std::initializer_list<Dim>);
template py::array_t<double, py::array::c_style> take_array<double>(py::handle, const char*, std::initializer_list<Dim>);

int take_thread_count(py::handle obj) {
    const std::string range = "between 1 and " + std::to_string(kMaxThreads);
    // bool is an int to Python, never a thread count; numpy integers are.
    if (PyBool_Check(obj.ptr()) || !PyIndex_Check(obj.ptr()))
        raise_type_error("n: expected an int thread count " + range + ", got " +
                         std::string(py::str(py::type::of(obj).attr("__name__"))));
    // Compared as a Python int: no overflow, whatever its size.
    py::int_ n = py::reinterpret_steal<py::int_>(PyNumber_Index(obj.ptr()));
    if (!n) throw py::error_already_set();
    if (n < py::int_(1) || n > py::int_(kMaxThreads))
        raise_value_error("n: expected a thread count " + range + ", got " + std::string(py::str(n)));
    const int count = n.cast<int>();
    // A forked child runs on one thread whatever it asks for; say so once.
    static bool warned = false;
    if (count > 1 && single_threaded_after_fork() && !warned) {
        warned = true;
        if (PyErr_WarnEx(PyExc_RuntimeWarning,
                         "rnnkit: this process was forked from one whose OpenMP threads it cannot use; "
                         "rnnkit runs single-threaded here (start worker processes with 'spawn' or "
                         "'forkserver' to use threads in them)", 1) != 0)
            throw py::error_already_set();
    }
    return count;
}

bool is_float_dtype(py::handle obj, bool* is_double) {
    if (!py::isinstance<py::array>(obj)) return false;
    if (py::isinstance<py::array_t<float>>(obj)) { *is_double = false; return true; }
    if (py::isinstance<py::array_t<double>>(obj)) { *is_double = true; return true; }
    return false;
}

}  // namespace bind
}  // namespace rnnkit
