// Direct access to single kernels for the accuracy and GEMM tests, to the
// fingerprint that guards a training context's input, and to the core
// round trip the time loops' thread plan measures.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <string>
#include <vector>

#include "bindings/bind_common.h"
#include "dispatch.h"
#include "kernels/activation_accuracy.h"
#include "layer/fingerprint.h"
#include "layer/gemm_driver.h"
#include "layer/threading.h"

namespace rnnkit {
namespace bind {

namespace {

template <typename T> using Arr = py::array_t<T, py::array::c_style>;

const KernelSet& kernels_named(py::handle isa_obj) {
    if (isa_obj.is_none()) return kernels_for(active_isa());
    try {
        return kernels_for(isa_from_name(py::cast<std::string>(isa_obj)));
    } catch (const std::invalid_argument& e) {
        throw py::value_error(std::string("isa: ") + e.what());
    }
}

enum class Activation { sigmoid, tanh };

template <typename T>
py::array apply(Activation f, py::handle x_obj, const Kernels<T>& k) {
    Arr<T> x = take_array<T>(x_obj, "x", {{kAnySize, "n"}});
    Arr<T> y({x.shape(0)});
    {
        py::gil_scoped_release release;
        (f == Activation::sigmoid ? k.sigmoid : k.tanh)(x.shape(0), x.data(), y.mutable_data());
    }
    return y;
}

py::array activation(Activation f, py::handle x, py::handle isa) {
    const KernelSet& ks = kernels_named(isa);
    bool is_double = false;
    if (!is_float_dtype(x, &is_double)) raise_type_error("x: expected a 1-D numpy.ndarray of dtype float32 or float64");
    return is_double ? apply<double>(f, x, ks.f64) : apply<float>(f, x, ks.f32);
}

// How the test packs B: from its rows (B row-major, as the weight-gradient
// products do), from its columns (B^T row-major, as weights are packed) or
// as the transpose of a pack of B^T (as the backward passes do).
enum class BPacking { rows, columns, transposed };

BPacking parse_b_packing(const std::string& s) {
    if (s == "rows") return BPacking::rows;
    if (s == "columns") return BPacking::columns;
    if (s == "transposed") return BPacking::transposed;
    throw py::value_error("b_packing: expected 'rows', 'columns' or 'transposed', got '" + s + "'");
}

// C = A @ B through packing, the driver and the micro-kernel.
template <typename T>
py::array gemm_impl(py::handle a_obj, py::handle b_obj, BPacking how, const Kernels<T>& k) {
    Arr<T> a = take_array<T>(a_obj, "a", {{kAnySize, "M"}, {kAnySize, "K"}});
    Arr<T> b = take_array<T>(b_obj, "b", {{a.shape(1), "K"}, {kAnySize, "N"}});
    if (a.shape(0) > (1 << 30) || a.shape(1) > (1 << 30) || b.shape(1) > (1 << 30))
        raise_value_error("a, b: dimensions above 2^30 are not supported");
    const int M = int(a.shape(0)), K = int(a.shape(1)), N = int(b.shape(1));
    if (M < 1 || K < 1 || N < 1) raise_value_error("a, b: expected non-empty matrices");
    Arr<T> c({py::ssize_t(M), py::ssize_t(N)});
    {
        py::gil_scoped_release release;
        PackedMatrix<T> bp;
        const int nth = get_num_threads();
        if (how == BPacking::rows) {
            pack_matrix(k, K, N, b.data(), N, 1, bp, nth);
        } else {
            std::vector<T> bt(std::size_t(N) * K);
            for (int i = 0; i < K; ++i)
                for (int j = 0; j < N; ++j) bt[std::size_t(j) * K + i] = b.data()[std::size_t(i) * N + j];
            if (how == BPacking::columns) {
                pack_matrix(k, K, N, bt.data(), 1, K, bp, nth);
            } else {
                PackedMatrix<T> btp;
                pack_matrix(k, N, K, bt.data(), K, 1, btp, nth);
                pack_transposed(k, btp, bp, nth);
            }
        }
        gemm_parallel(k, M, a.data(), K, 1, bp, c.mutable_data(), N, false, nth);
    }
    return c;
}

py::array gemm(py::handle a, py::handle b, py::handle isa, const std::string& b_packing) {
    const KernelSet& ks = kernels_named(isa);
    const BPacking how = parse_b_packing(b_packing);
    bool is_double = false;
    if (!is_float_dtype(a, &is_double)) raise_type_error("a: expected a numpy.ndarray of dtype float32 or float64");
    return is_double ? gemm_impl<double>(a, b, how, ks.f64) : gemm_impl<float>(a, b, how, ks.f32);
}

}  // namespace

void register_testing(py::module_& m) {
    m.def("sigmoid", [](py::handle x, py::handle isa) { return activation(Activation::sigmoid, x, isa); },
          py::arg("x"), py::arg("isa") = py::none());
    m.def("tanh", [](py::handle x, py::handle isa) { return activation(Activation::tanh, x, isa); },
          py::arg("x"), py::arg("isa") = py::none());
    m.def("gemm", &gemm, py::arg("a"), py::arg("b"), py::arg("isa") = py::none(), py::arg("b_packing") = "rows");
    m.def("fingerprint", [](py::bytes data) {
        const std::string s = data;
        return fingerprint(s.data(), s.size());
    }, py::arg("data"));
    m.def("core_round_trip_ns", [] {
        py::gil_scoped_release release;
        return core_round_trip_ns();
    });
    m.attr("SIGMOID_MAX_REL_ERR_F32") = kSigmoidMaxRelErrF32;
    m.attr("TANH_MAX_REL_ERR_F32") = kTanhMaxRelErrF32;
    m.attr("SIGMOID_MAX_REL_ERR_F64") = kSigmoidMaxRelErrF64;
    m.attr("TANH_MAX_REL_ERR_F64") = kTanhMaxRelErrF64;
}

}  // namespace bind
}  // namespace rnnkit
