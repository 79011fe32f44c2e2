// Direct access to single kernels for the accuracy and GEMM tests, to the
// fingerprint that guards a training context's input, and to the core
// round trip the time loops' thread plan measures, and to the plans the
// time loops make (describe_plan).
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "bindings/bind_common.h"
#include "dispatch.h"
#include "kernels/activation_accuracy.h"
#include "layer/fingerprint.h"
#include "layer/gemm_driver.h"
#include "layer/layer_plan.h"
#include "layer/lowp_gemm.h"
#include "layer/threading.h"
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

// C = A @ B (or C = c + A @ B, the sum starting from c) with bf16 or int8
// products: B packed by columns as weights are (pack_lowp_columns), A
// converted and multiplied by the threaded driver (lowp_gemm_parallel), or
// (bf16, single_call) by one gemm call over all of C: any m x n, as the AMX
// kernels hand small products over.
py::array lowp_gemm(py::handle a_obj, py::handle b_obj, const std::string& precision, py::handle isa,
                    py::handle c_obj, py::handle threads_obj, bool single_call) {
    Precision prec;
    if (precision == "bfloat16")
        prec = Precision::bf16;
    else if (precision == "int8")
        prec = Precision::int8;
    else
        raise_value_error("precision: expected 'bfloat16' or 'int8', got '" + precision + "'");
    const KernelSet& ks = kernels_named(isa);
    Arr<float> a = take_array<float>(a_obj, "a", {{kAnySize, "M"}, {kAnySize, "K"}});
    Arr<float> b = take_array<float>(b_obj, "b", {{a.shape(1), "K"}, {kAnySize, "N"}});
    if (a.shape(0) > (1 << 30) || a.shape(1) > (1 << 30) || b.shape(1) > (1 << 30))
        raise_value_error("a, b: dimensions above 2^30 are not supported");
    const int M = int(a.shape(0)), K = int(a.shape(1)), N = int(b.shape(1));
    if (M < 1 || K < 1 || N < 1) raise_value_error("a, b: expected non-empty matrices");
    const bool accumulate = !c_obj.is_none();
    Arr<float> c({py::ssize_t(M), py::ssize_t(N)});
    if (accumulate) {
        Arr<float> c0 = take_array<float>(c_obj, "c", {{M, "M"}, {N, "N"}});
        std::copy(c0.data(), c0.data() + std::size_t(M) * N, c.mutable_data());
    }
    const int nth = threads_obj.is_none() ? get_num_threads() : py::cast<int>(threads_obj);
    if (nth < 1) raise_value_error("threads: expected >= 1");
    {
        py::gil_scoped_release release;
        std::vector<float> bt(std::size_t(N) * K);
        for (int p = 0; p < K; ++p)
            for (int j = 0; j < N; ++j) bt[std::size_t(j) * K + p] = b.data()[std::size_t(p) * N + j];
        LowpMatrix bp;
        pack_lowp_columns(ks, prec, K, N, [&](int j) { return bt.data() + std::size_t(j) * K; }, bp, nth);
        LowpRows rows;
        if (single_call && prec == Precision::bf16) {
            rows.reserve(ks, prec, M, K);
            convert_rows(ks, M, a.data(), K, rows);
            ks.bf16.gemm(M, N, bp.Kp, reinterpret_cast<const bf16_t*>(rows.row(0)), rows.Kp,
                         reinterpret_cast<const bf16_t*>(bp.panel(0)), c.mutable_data(), N, accumulate);
        } else {
            lowp_gemm_parallel(ks, M, a.data(), K, bp, c.mutable_data(), N, accumulate, rows, nth);
        }
    }
    return c;
}

// One ISA's Int8Kernels::quantize_rows on the rows of a: (the rows as
// uint8, K padded to the kernels' k_align; one scale and one zero point
// per row).
py::tuple int8_quantize_rows(py::handle isa, py::handle a_obj) {
    const KernelSet& ks = kernels_named(isa);
    Arr<float> a = take_array<float>(a_obj, "a", {{kAnySize, "M"}, {kAnySize, "K"}});
    const int M = int(a.shape(0)), K = int(a.shape(1));
    const int Kp = lowp_padded_k(ks, Precision::int8, K);
    py::array_t<std::uint8_t> q({py::ssize_t(M), py::ssize_t(Kp)});
    Arr<float> scale({py::ssize_t(M)});
    py::array_t<std::int32_t> zero_point({py::ssize_t(M)});
    if (M > 0) {
        py::gil_scoped_release release;
        ks.int8.quantize_rows(M, K, Kp, a.data(), K, q.mutable_data(), Kp, scale.mutable_data(),
                              zero_point.mutable_data());
    }
    return py::make_tuple(q, scale, zero_point);
}

// The bits of bf16(x) for a 1-D float32 x, by an ISA's convert_rows.
py::array bf16_round(py::handle x_obj, py::handle isa) {
    const KernelSet& ks = kernels_named(isa);
    Arr<float> x = take_array<float>(x_obj, "x", {{kAnySize, "n"}});
    if (x.shape(0) > (1 << 30)) raise_value_error("x: sizes above 2^30 are not supported");
    const int n = int(x.shape(0));
    Arr<std::uint16_t> out({py::ssize_t(n)});
    if (n > 0) {
        py::gil_scoped_release release;
        ks.bf16.convert_rows(1, n, n, x.data(), n, out.mutable_data(), n);
    }
    return out;
}

// What a plan reads of a layer, from its shape and the ISA's kernels.
LayerShape shape_of(CellKind cell, bool linear_before_reset, int I, int H, bool f64, const KernelSet& ks) {
    LayerShape s;
    s.cell = cell;
    s.lbr = cell == CellKind::lstm || linear_before_reset;
    s.I = I;
    s.H = H;
    s.G = gate_count(cell);
    s.layout = GateLayout{H, s.G, !s.lbr};
    s.elem_bytes = f64 ? sizeof(double) : sizeof(float);
    s.gemm_mr = f64 ? ks.f64.gemm_mr : ks.f32.gemm_mr;
    s.gemm_nr = f64 ? ks.f64.gemm_nr : ks.f32.gemm_nr;
    s.gemm_tile_rows = f64 ? ks.f64.gemm_tile_rows : ks.f32.gemm_tile_rows;
    s.gemm_kc = f64 ? ks.f64.gemm_kc : ks.f32.gemm_kc;
    s.gemm_mc = f64 ? ks.f64.gemm_mc : ks.f32.gemm_mc;
    return s;
}

// The plans a forward and a backward call of this shape would make, as a
// dict: what the time loops decide, without running them. threads: the
// call's threads (None: get_num_threads()); loop_threads: the time loop's,
// in place of thread_plan's choice (which may measure the cores).
py::dict describe_plan(const std::string& cell, int input_size, int hidden_size, int steps, int batch,
                       py::handle batch_sizes_obj, bool reverse, bool training, const std::string& dtype,
                       py::handle isa, bool linear_before_reset, py::handle threads_obj, py::handle loop_obj) {
    if (cell != "lstm" && cell != "gru") raise_value_error("cell: expected 'lstm' or 'gru', got '" + cell + "'");
    if (dtype != "float32" && dtype != "float64")
        raise_value_error("dtype: expected 'float32' or 'float64', got '" + dtype + "'");
    if (input_size < 1 || hidden_size < 1 || steps < 1 || batch < 1)
        raise_value_error("input_size, hidden_size, steps, batch: expected each >= 1");
    std::vector<int> sizes;
    if (!batch_sizes_obj.is_none()) {
        for (py::handle v : py::iter(batch_sizes_obj)) sizes.push_back(py::cast<int>(v));
        bool ok = int(sizes.size()) == steps && sizes[0] == batch;
        for (std::size_t t = 0; ok && t < sizes.size(); ++t) ok = sizes[t] >= 1 && (t == 0 || sizes[t] <= sizes[t - 1]);
        if (!ok) raise_value_error("batch_sizes: expected `steps` non-increasing sizes >= 1, the first equal to batch");
    }
    const int nthreads = threads_obj.is_none() ? get_num_threads() : py::cast<int>(threads_obj);
    if (nthreads < 1) raise_value_error("threads: expected >= 1");
    const LayerShape shape = shape_of(cell == "lstm" ? CellKind::lstm : CellKind::gru, linear_before_reset,
                                      input_size, hidden_size, dtype == "float64", kernels_named(isa));
    StepRows rows;
    rows.init(steps, batch, sizes.empty() ? nullptr : sizes.data());
    const int mean_rows = int((rows.total() + steps - 1) / steps);
    ThreadPlan tp;
    if (loop_obj.is_none()) {
        py::gil_scoped_release release;
        tp = thread_plan(shape, mean_rows, steps, nthreads);
    } else {
        tp = ThreadPlan{py::cast<int>(loop_obj), nthreads};
        if (tp.loop < 1 || tp.loop > nthreads) raise_value_error("loop_threads: expected 1 <= loop_threads <= threads");
    }
    const ForwardPlan fp = plan_forward(shape, rows, reverse, training, tp);
    const BackwardPlan bp = plan_backward(shape, rows, reverse, tp);
    py::list chunks;
    for (const ProjectionChunk& c : fp.chunks) chunks.append(py::make_tuple(c.s0, c.n, c.fill, c.r_lo));
    py::dict fwd, bwd, out;
    fwd["schedule"] = schedule_name(fp.schedule);
    fwd["chunk_steps"] = fp.chunk_steps;
    fwd["chunk_rows"] = fp.chunk_rows;
    fwd["chunks"] = chunks;
    fwd["projection_buffers"] = fp.projection_buffers;
    py::list pieces;
    for (const ProjectionPiece& q : fp.pieces) pieces.append(py::make_tuple(q.i0, q.rows, q.j0, q.j1));
    fwd["pieces"] = pieces;
    py::list first_piece;
    for (int i : fp.first_piece) first_piece.append(i);
    fwd["first_piece"] = first_piece;
    fwd["calls_per_step"] = fp.calls_per_step;
    fwd["state_pingpong"] = fp.state_pingpong;
    bwd["same_sides"] = bp.same_sides;
    bwd["operand_rows_x"] = bp.operand_rows_x;
    bwd["operand_rows_h"] = bp.operand_rows_h;
    bwd["h_contiguous"] = bp.h_contiguous;
    out["loop_threads"] = tp.loop;
    out["other_threads"] = tp.other;
    out["forward"] = fwd;
    out["backward"] = bwd;
    return out;
}

}  // namespace

void register_testing(py::module_& m) {
    m.def("sigmoid", [](py::handle x, py::handle isa) { return activation(Activation::sigmoid, x, isa); },
          py::arg("x"), py::arg("isa") = py::none());
    m.def("tanh", [](py::handle x, py::handle isa) { return activation(Activation::tanh, x, isa); },
          py::arg("x"), py::arg("isa") = py::none());
    m.def("gemm", &gemm, py::arg("a"), py::arg("b"), py::arg("isa") = py::none(), py::arg("b_packing") = "rows");
    m.def("lowp_gemm", &lowp_gemm, py::arg("a"), py::arg("b"), py::arg("precision"), py::arg("isa") = py::none(),
          py::arg("c") = py::none(), py::arg("threads") = py::none(), py::arg("single_call") = false);
    m.def("bf16_round", &bf16_round, py::arg("x"), py::arg("isa") = py::none());
    m.def("fingerprint", [](py::bytes data) {
        const std::string s = data;
        return fingerprint(s.data(), s.size());
    }, py::arg("data"));
    m.def("core_round_trip_ns", [] {
        py::gil_scoped_release release;
        return core_round_trip_ns();
    });
    // Whether this process is a fork child that runs everything on one thread.
    m.def("single_threaded_after_fork", [] { return single_threaded_after_fork(); });
    m.def("describe_plan", &describe_plan, py::arg("cell"), py::arg("input_size"), py::arg("hidden_size"),
          py::arg("steps"), py::arg("batch"), py::arg("batch_sizes") = py::none(), py::arg("reverse") = false,
          py::arg("training") = false, py::arg("dtype") = "float32", py::arg("isa") = py::none(),
          py::arg("linear_before_reset") = true, py::arg("threads") = py::none(),
          py::arg("loop_threads") = py::none());
    m.def("int8_quantize_rows", &int8_quantize_rows, py::arg("isa"), py::arg("a"));
    m.attr("SIGMOID_MAX_REL_ERR_F32") = kSigmoidMaxRelErrF32;
    m.attr("TANH_MAX_REL_ERR_F32") = kTanhMaxRelErrF32;
    m.attr("SIGMOID_MAX_REL_ERR_F64") = kSigmoidMaxRelErrF64;
    m.attr("TANH_MAX_REL_ERR_F64") = kTanhMaxRelErrF64;
}

}  // namespace bind
}  // namespace rnnkit
