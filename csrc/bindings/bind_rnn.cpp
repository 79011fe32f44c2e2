// Bindings of packing, sequence forward/backward and single steps. Each
// entry point checks its arguments, allocates the outputs, releases the GIL
// and hands raw pointers to the drivers.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstring>
#include <string>
#include <vector>

#include "bindings/bind_common.h"
#include "bindings/handles.h"
#include "layer/fingerprint.h"
#include "layer/threading.h"

namespace rnnkit {
namespace bind {

namespace {

template <typename T> using Arr = py::array_t<T, py::array::c_style>;

const char* cell_name(CellKind c) { return c == CellKind::lstm ? "LSTM" : "GRU"; }
const char* cell_prefix(CellKind c) { return c == CellKind::lstm ? "lstm" : "gru"; }

CellKind parse_cell(const std::string& s) {
    if (s == "lstm") return CellKind::lstm;
    if (s == "gru") return CellKind::gru;
    raise_value_error("cell: expected 'lstm' or 'gru', got '" + s + "'");
}

// ---- packing ---------------------------------------------------------------

std::string precision_name(const PackedHandle& h) {
    switch (h.products()) {
        case Precision::bf16: return "bfloat16";
        case Precision::int8: return "int8";
        case Precision::full: break;
    }
    return h.is_double ? "float64" : "float32";
}

// The products' precision a pack() call asks for: None, "float32" or
// "float64" (the weights' own dtype), "bfloat16" or "int8" (float32 weights).
Precision parse_precision(py::handle obj, bool is_double) {
    if (obj.is_none()) return Precision::full;
    if (!py::isinstance<py::str>(obj))
        raise_type_error("precision: expected a str ('bfloat16', 'int8', 'float32' or 'float64') or None, got " +
                         std::string(py::str(py::type::of(obj).attr("__name__"))));
    const std::string s = obj.cast<std::string>();
    if (s == "bfloat16" || s == "int8") {
        if (is_double)
            raise_value_error("precision: '" + s + "' packs float32 weights, got weights of dtype float64");
        return s == "int8" ? Precision::int8 : Precision::bf16;
    }
    if (s == (is_double ? "float64" : "float32")) return Precision::full;
    raise_value_error(std::string("precision: expected 'bfloat16', 'int8' or the weights' dtype '") +
                      (is_double ? "float64" : "float32") + "', got '" + s + "'");
}

template <typename T>
PackedHandle pack_impl(CellKind cell, py::handle w_ih_obj, py::handle w_hh_obj, py::handle b_ih_obj,
                       py::handle b_hh_obj, bool linear_before_reset, Precision products) {
    const int G = gate_count(cell);
    const std::string gh_label = std::to_string(G) + "*H";
    Arr<T> w_ih = take_array<T>(w_ih_obj, "weight_ih", {{kAnySize, gh_label.c_str()}, {kAnySize, "I"}});
    const py::ssize_t rows = w_ih.shape(0), I = w_ih.shape(1);
    if (rows < G || rows % G != 0)
        raise_value_error("weight_ih: expected shape (" + gh_label + ", I) with H >= 1, got " + std::to_string(rows) +
                          " rows, which is not a positive multiple of " + std::to_string(G));
    if (I < 1) raise_value_error("weight_ih: expected at least one column (input_size >= 1)");
    const py::ssize_t H = rows / G;
    // The drivers index with int: every dimension and G*H must fit.
    if (rows > kMaxDim || I > kMaxDim)
        raise_value_error("weight_ih: dimensions above " + std::to_string(kMaxDim) + " are not supported");
    Arr<T> w_hh = take_array<T>(w_hh_obj, "weight_hh", {{rows, "G*H"}, {H, "H"}});
    auto b_ih = take_optional<T>(b_ih_obj, "bias_ih", {{rows, "G*H"}});
    auto b_hh = take_optional<T>(b_hh_obj, "bias_hh", {{rows, "G*H"}});

    PackedHandle h{cell, std::is_same<T, double>::value, nullptr, nullptr};
    std::shared_ptr<PackedRnn<T>> packed;
    {
        py::gil_scoped_release release;
        packed = pack_rnn<T>(cell, active_isa(), int(I), int(H), w_ih.data(), w_hh.data(), data_or_null(b_ih),
                             data_or_null(b_hh), get_num_threads(), linear_before_reset, products);
    }
    if constexpr (std::is_same<T, double>::value) h.f64 = packed; else h.f32 = packed;
    return h;
}

PackedHandle pack(const std::string& cell_s, py::handle w_ih, py::handle w_hh, py::handle b_ih, py::handle b_hh,
                  bool linear_before_reset, py::handle precision) {
    const CellKind cell = parse_cell(cell_s);
    if (cell == CellKind::lstm && !linear_before_reset)
        raise_value_error("linear_before_reset: False applies to GRU weights only, got cell 'lstm'");
    bool is_double = false;
    if (!is_float_dtype(w_ih, &is_double)) {
        if (!py::isinstance<py::array>(w_ih))
            raise_type_error("weight_ih: expected a numpy.ndarray of dtype float32 or float64, got " +
                             std::string(py::str(py::type::of(w_ih).attr("__name__"))));
        raise_type_error("weight_ih: expected dtype float32 or float64, got " +
                         std::string(py::str(py::reinterpret_borrow<py::array>(w_ih).dtype())));
    }
    const Precision products = parse_precision(precision, is_double);
    return is_double ? pack_impl<double>(cell, w_ih, w_hh, b_ih, b_hh, linear_before_reset, products)
                     : pack_impl<float>(cell, w_ih, w_hh, b_ih, b_hh, linear_before_reset, products);
}

// New weights of the same shape into existing packed weights. In place
// when nothing else holds them (the usual optimizer loop: forward,
// backward, update); a training context or a call still running keeps the
// old ones, and the handle gets a fresh pack instead (copy on write). A
// change of the active ISA since packing also packs afresh, for it.
template <typename T>
void update_impl(PackedHandle& h, py::handle w_ih_obj, py::handle w_hh_obj, py::handle b_ih_obj,
                 py::handle b_hh_obj) {
    std::shared_ptr<PackedRnn<T>>& w = h.get<T>();
    const py::ssize_t I = w->I, H = w->H, GH = py::ssize_t(w->G) * H;
    Arr<T> w_ih = take_array<T>(w_ih_obj, "weight_ih", {{GH, "G*H"}, {I, "I"}});
    Arr<T> w_hh = take_array<T>(w_hh_obj, "weight_hh", {{GH, "G*H"}, {H, "H"}});
    auto b_ih = take_optional<T>(b_ih_obj, "bias_ih", {{GH, "G*H"}});
    auto b_hh = take_optional<T>(b_hh_obj, "bias_hh", {{GH, "G*H"}});
    if (w.use_count() > 1 || w->isa != active_isa()) {
        std::shared_ptr<PackedRnn<T>> fresh;
        {
            py::gil_scoped_release release;
            fresh = pack_rnn<T>(w->cell, active_isa(), int(I), int(H), w_ih.data(), w_hh.data(), data_or_null(b_ih),
                                data_or_null(b_hh), get_num_threads(), w->linear_before_reset, w->products);
        }
        w = std::move(fresh);
        return;
    }
    // The GIL stays held: another Python thread cannot start a call on these
    // weights (and take a reference) while their buffers are rewritten.
    repack_rnn<T>(*w, w_ih.data(), w_hh.data(), data_or_null(b_ih), data_or_null(b_hh), get_num_threads());
}

void update(PackedHandle& h, py::handle w_ih, py::handle w_hh, py::handle b_ih, py::handle b_hh) {
    if (h.is_double) update_impl<double>(h, w_ih, w_hh, b_ih, b_hh);
    else update_impl<float>(h, w_ih, w_hh, b_ih, b_hh);
}

// ---- unpacking and comparing ------------------------------------------------------

// The weights in PyTorch layout, read back from the panels (exact):
// (weight_ih, weight_hh, bias_ih or None, bias_hh or None).
template <typename T>
py::tuple unpack_impl(std::shared_ptr<const PackedRnn<T>> w) {
    const py::ssize_t I = w->I, H = w->H, GH = py::ssize_t(w->G) * H;
    Arr<T> w_ih = new_array<T>({GH, I}), w_hh = new_array<T>({GH, H});
    {
        // w is a reference of our own: an update() meanwhile packs afresh.
        py::gil_scoped_release release;
        unpack_rnn<T>(*w, w_ih.mutable_data(), w_hh.mutable_data());
    }
    auto bias = [GH](const AlignedBuffer<T>& b) -> py::object {
        if (!b.size()) return py::none();
        Arr<T> a({GH});
        std::memcpy(a.mutable_data(), b.data(), std::size_t(GH) * sizeof(T));
        return std::move(a);
    };
    return py::make_tuple(w_ih, w_hh, bias(w->b_ih_given), bias(w->b_hh_given));
}

py::tuple unpack(const PackedHandle& h) {
    return h.is_double ? unpack_impl<double>(h.f64) : unpack_impl<float>(h.f32);
}

// An argument of matches(): an ndarray (else TypeError, as pack) that may
// still not be of the pack's dtype and shape, which is no match.
template <typename T>
bool same_kind(py::handle obj, const char* name, std::initializer_list<py::ssize_t> shape) {
    if (!py::isinstance<py::array>(obj))
        raise_type_error(std::string(name) + ": expected a numpy.ndarray, got " +
                         std::string(py::str(py::type::of(obj).attr("__name__"))));
    const py::array a = py::reinterpret_borrow<py::array>(obj);
    if (!py::isinstance<py::array_t<T>>(a) || a.ndim() != py::ssize_t(shape.size())) return false;
    py::ssize_t i = 0;
    for (py::ssize_t d : shape)
        if (a.shape(i++) != d) return false;
    return true;
}

template <typename T>
bool matches_impl(std::shared_ptr<const PackedRnn<T>> w, py::handle w_ih_obj, py::handle w_hh_obj, py::handle b_ih_obj,
                  py::handle b_hh_obj) {
    const py::ssize_t I = w->I, H = w->H, GH = py::ssize_t(w->G) * H;
    // Every argument is checked for its type before any mismatch answers.
    bool fits = same_kind<T>(w_ih_obj, "weight_ih", {GH, I});
    fits = same_kind<T>(w_hh_obj, "weight_hh", {GH, H}) && fits;
    if (!b_ih_obj.is_none()) fits = same_kind<T>(b_ih_obj, "bias_ih", {GH}) && fits;
    if (!b_hh_obj.is_none()) fits = same_kind<T>(b_hh_obj, "bias_hh", {GH}) && fits;
    if (!fits) return false;
    // Strided or misaligned arrays are compared through take_array's copy.
    Arr<T> w_ih = take_array<T>(w_ih_obj, "weight_ih", {{GH, "G*H"}, {I, "I"}});
    Arr<T> w_hh = take_array<T>(w_hh_obj, "weight_hh", {{GH, "G*H"}, {H, "H"}});
    auto b_ih = take_optional<T>(b_ih_obj, "bias_ih", {{GH, "G*H"}});
    auto b_hh = take_optional<T>(b_hh_obj, "bias_hh", {{GH, "G*H"}});
    py::gil_scoped_release release;
    return rnn_matches<T>(*w, w_ih.data(), w_hh.data(), data_or_null(b_ih), data_or_null(b_hh), get_num_threads());
}

bool matches(const PackedHandle& h, py::handle w_ih, py::handle w_hh, py::handle b_ih, py::handle b_hh) {
    return h.is_double ? matches_impl<double>(h.f64, w_ih, w_hh, b_ih, b_hh)
                       : matches_impl<float>(h.f32, w_ih, w_hh, b_ih, b_hh);
}

// ---- forward -----------------------------------------------------------------

const PackedHandle& take_weights(py::handle obj, CellKind cell, const char* fn) {
    if (!py::isinstance<PackedHandle>(obj))
        raise_type_error(std::string("weights: expected rnnkit.PackedWeights (from rnnkit.pack_") + cell_prefix(cell) +
                         "), got " + std::string(py::str(py::type::of(obj).attr("__name__"))));
    const PackedHandle& w = obj.cast<const PackedHandle&>();
    if (w.cell != cell)
        raise_value_error(std::string("weights: ") + fn + " needs " + cell_name(cell) + " weights (rnnkit.pack_" +
                          cell_prefix(cell) + "), got weights packed for " + cell_name(w.cell));
    return w;
}

// batch_sizes of a packed sequence (PyTorch's PackedSequence.batch_sizes):
// a 1-D array-like of integers, every entry >= 1, non-increasing.
std::vector<int> take_batch_sizes(py::handle obj) {
    const std::string expected = "batch_sizes: expected a 1-D array-like of integers (rows per time step)";
    py::array arr;
    try {
        arr = py::module_::import("numpy").attr("asarray")(obj);
    } catch (py::error_already_set&) {
        raise_type_error(expected + ", got " + std::string(py::str(py::type::of(obj).attr("__name__"))));
    }
    // Not numbers at all (objects, strings): a type error whatever the shape.
    const char kind = arr.dtype().kind();
    const std::string got_dtype = ", got dtype " + std::string(py::str(arr.dtype()));
    if (kind != 'i' && kind != 'u' && kind != 'f' && kind != 'c' && kind != 'b') raise_type_error(expected + got_dtype);
    if (arr.ndim() != 1)
        raise_value_error(expected + ", got a " + std::to_string(arr.ndim()) + "-D array");
    // Before the integer check: an empty list becomes a float64 array.
    if (arr.size() < 1) raise_value_error("batch_sizes: expected at least one time step (length T >= 1), got none");
    if (kind != 'i' && kind != 'u') raise_type_error(expected + got_dtype);
    // The constructor raises (MemoryError) where ensure() would return null.
    py::array_t<long long, py::array::c_style | py::array::forcecast> v(arr);
    std::vector<int> sizes(std::size_t(v.size()));
    long long total = 0;
    for (py::ssize_t t = 0; t < v.size(); ++t) {
        const long long b = v.data()[t];
        const std::string at = "batch_sizes[" + std::to_string(t) + "] = " + std::to_string(b);
        if (b < 1) raise_value_error("batch_sizes: expected every entry >= 1, got " + at);
        if (t > 0 && b > sizes[t - 1])
            raise_value_error("batch_sizes: expected non-increasing entries (sequences sorted longest first), got " +
                              at + " after " + std::to_string(sizes[t - 1]));
        total += b;
        if (total > kMaxDim)
            raise_value_error("batch_sizes: a sum above " + std::to_string(kMaxDim) + " rows is not supported");
        sizes[t] = int(b);
    }
    return sizes;
}

// Names of the state arguments as the Python API spells them.
struct StateNames { const char* h; const char* c; };

template <typename T>
py::object forward_impl(const PackedHandle& wh, CellKind cell, bool single_step, py::handle x_obj, py::handle h0_obj,
                        py::handle c0_obj, bool reverse, bool training, py::handle bs_obj, StateNames names) {
    // A copy: while this call runs, an update() of the same weights from
    // another thread packs afresh instead of writing into them.
    const std::shared_ptr<PackedRnn<T>> w = wh.get<T>();
    const bool lstm = cell == CellKind::lstm;
    const py::ssize_t I = w->I, H = w->H;
    // Packed sequences: x (N, I) with the rows of step t after those of t-1.
    const bool packed = !bs_obj.is_none();
    std::vector<int> batch_sizes;
    if (packed) batch_sizes = take_batch_sizes(bs_obj);
    // Before take_array may copy it: a broadcast x with T * B too large
    // for the drivers is refused, not copied into memory first.
    if (!single_step && !packed && py::isinstance<py::array>(x_obj)) {
        const auto xa = py::reinterpret_borrow<py::array>(x_obj);
        if (xa.ndim() == 3 && xa.shape(0) * xa.shape(1) > kMaxDim)
            raise_value_error("x: T * B above " + std::to_string(kMaxDim) + " rows is not supported; split the batch");
    }
    Arr<T> x = single_step ? take_array<T>(x_obj, "x", {{kAnySize, "B"}, {I, "I"}})
               : packed    ? take_array<T>(x_obj, "x", {{kAnySize, "N"}, {I, "I"}})
                           : take_array<T>(x_obj, "x", {{kAnySize, "T"}, {kAnySize, "B"}, {I, "I"}});
    const py::ssize_t steps = single_step ? 1 : packed ? py::ssize_t(batch_sizes.size()) : x.shape(0);
    const py::ssize_t B = packed ? batch_sizes[0] : x.shape(single_step ? 0 : 1);
    const py::ssize_t N = packed ? x.shape(0) : steps * B;
    if (packed) {
        py::ssize_t total = 0;
        for (int b : batch_sizes) total += b;
        if (N != total)
            raise_value_error("x: with batch_sizes, expected packed shape (N, I) = (" + std::to_string(total) + ", " +
                              std::to_string(I) + ") with N = sum(batch_sizes), got " + std::to_string(N) + " rows");
    }
    if (steps * B > kMaxDim && !packed)
        raise_value_error("x: T * B above " + std::to_string(kMaxDim) + " rows is not supported; split the batch");
    if (steps < 1 || B < 1)
        raise_value_error(std::string("x: expected at least one ") + (steps < 1 ? "time step (T >= 1)" : "batch element (B >= 1)") +
                          ", got an empty array");
    auto h0 = take_optional<T>(h0_obj, names.h, {{B, "B"}, {H, "H"}});
    std::optional<Arr<T>> c0;
    if (lstm) c0 = take_optional<T>(c0_obj, names.c, {{B, "B"}, {H, "H"}});

    Arr<T> h_n({B, H});
    Arr<T> y = single_step ? h_n : packed ? new_array<T>({N, H}) : new_array<T>({steps, B, H});
    Arr<T> c_n = lstm ? Arr<T>({B, H}) : Arr<T>();
    std::shared_ptr<TrainingContext<T>> ctx;
    // The context refers to x. take_array's own copy (a conversion) is
    // private; anything else may still be written to by the caller.
    const bool x_callers = x.ptr() == x_obj.ptr() || !(x.flags() & py::detail::npy_api::NPY_ARRAY_OWNDATA_);
    std::uint64_t x_fingerprint = 0;
    if (training && w->products == Precision::int8)
        raise_value_error("training: weights packed with precision 'int8' are for inference only; pack float32 or "
                          "bfloat16 weights to train");
    if (training) {
        ctx = std::make_shared<TrainingContext<T>>();
        ctx->weights = w;
    }
    ForwardArgs<T> a;
    a.steps = int(steps);
    a.batch = int(B);
    a.reverse = reverse;
    a.batch_sizes = packed ? batch_sizes.data() : nullptr;
    a.x = x.data();
    a.h0 = data_or_null(h0);
    a.c0 = data_or_null(c0);
    a.y = y.mutable_data();
    a.h_n = h_n.mutable_data();
    a.c_n = lstm ? c_n.mutable_data() : nullptr;
    {
        py::gil_scoped_release release;
        if (training && x_callers) x_fingerprint = fingerprint(a.x, std::size_t(N * I) * sizeof(T));
        layer_forward<T>(*w, a, ctx.get(), get_num_threads());
    }

    py::list out;
    if (!single_step) out.append(y);
    out.append(h_n);
    if (lstm) out.append(c_n);
    if (training) {
        ContextHandle ch{cell, std::is_same<T, double>::value, single_step, nullptr, nullptr};
        ch.packed = packed;
        ch.x = x;
        ch.x_callers = x_callers;
        ch.x_fingerprint = x_fingerprint;
        if constexpr (std::is_same<T, double>::value) ch.f64 = ctx; else ch.f32 = ctx;
        out.append(py::cast(std::move(ch)));
    }
    if (out.size() == 1) return out[0];
    return py::tuple(out);
}

py::object forward(CellKind cell, bool single_step, const char* fn, py::handle x, py::handle weights, py::handle h0,
                   py::handle c0, bool reverse, bool training, StateNames names, py::handle batch_sizes = py::none()) {
    const PackedHandle& w = take_weights(weights, cell, fn);
    return w.is_double ? forward_impl<double>(w, cell, single_step, x, h0, c0, reverse, training, batch_sizes, names)
                       : forward_impl<float>(w, cell, single_step, x, h0, c0, reverse, training, batch_sizes, names);
}

// ---- backward ------------------------------------------------------------------

ContextHandle& take_context(py::handle obj, CellKind cell, bool single_step, const char* fn) {
    const std::string maker = std::string("rnnkit.") + cell_prefix(cell) + (single_step ? "_cell" : "_forward");
    if (!py::isinstance<ContextHandle>(obj))
        raise_type_error(std::string("ctx: expected the context returned by ") + maker + "(..., training=True), got " +
                         std::string(py::str(py::type::of(obj).attr("__name__"))));
    ContextHandle& c = obj.cast<ContextHandle&>();
    if (c.cell != cell || c.single_step != single_step)
        raise_value_error(std::string("ctx: ") + fn + " needs a context from " + maker +
                          "(..., training=True), got one from rnnkit." + cell_prefix(c.cell) +
                          (c.single_step ? "_cell" : "_forward"));
    return c;
}

struct GradNames { const char* dy; const char* dh; const char* dc; };

template <typename T>
py::tuple backward_impl(ContextHandle& ch, bool single_step, py::handle dy_obj, py::handle dh_obj, py::handle dc_obj,
                        GradNames names) {
    const TrainingContext<T>& ctx = *ch.get<T>();
    const PackedRnn<T>& w = *ctx.weights;
    const bool lstm = w.cell == CellKind::lstm;
    const py::ssize_t steps = ctx.steps, B = ctx.batch, I = w.I, H = w.H, GH = py::ssize_t(w.G) * H;
    const py::ssize_t N = py::ssize_t(ctx.rows.total());
    if (ch.x_callers && fingerprint(ctx.x, std::size_t(N * I) * sizeof(T)) != ch.x_fingerprint)
        raise_value_error(std::string("ctx: x, the input of the training forward call that made this context, has "
                                      "changed since; backward needs it as it was (keep it unchanged until backward, "
                                      "or pass the forward call a copy)"));
    std::optional<Arr<T>> dy;
    if (ch.packed) dy = take_optional<T>(dy_obj, names.dy, {{N, "N"}, {H, "H"}});
    else if (!single_step) dy = take_optional<T>(dy_obj, names.dy, {{steps, "T"}, {B, "B"}, {H, "H"}});
    auto dh = take_optional<T>(dh_obj, names.dh, {{B, "B"}, {H, "H"}});
    std::optional<Arr<T>> dc;
    if (lstm) dc = take_optional<T>(dc_obj, names.dc, {{B, "B"}, {H, "H"}});

    Arr<T> dx = single_step ? Arr<T>({B, I}) : ch.packed ? new_array<T>({N, I}) : new_array<T>({steps, B, I});
    Arr<T> dh0({B, H});
    Arr<T> dc0 = lstm ? Arr<T>({B, H}) : Arr<T>();
    Arr<T> dw_ih = new_array<T>({GH, I}), dw_hh = new_array<T>({GH, H}), db_ih({GH}), db_hh({GH});
    BackwardArgs<T> a;
    a.dy = data_or_null(dy);
    a.dh_n = data_or_null(dh);
    a.dc_n = data_or_null(dc);
    a.dx = dx.mutable_data();
    a.dh0 = dh0.mutable_data();
    a.dc0 = lstm ? dc0.mutable_data() : nullptr;
    a.dw_ih = dw_ih.mutable_data();
    a.dw_hh = dw_hh.mutable_data();
    a.db_ih = db_ih.mutable_data();
    a.db_hh = db_hh.mutable_data();
    {
        py::gil_scoped_release release;
        layer_backward<T>(ctx, a, get_num_threads());
    }
    if (lstm) return py::make_tuple(dx, dh0, dc0, dw_ih, dw_hh, db_ih, db_hh);
    return py::make_tuple(dx, dh0, dw_ih, dw_hh, db_ih, db_hh);
}

py::tuple backward(CellKind cell, bool single_step, const char* fn, py::handle ctx_obj, py::handle dy, py::handle dh,
                   py::handle dc, GradNames names) {
    ContextHandle& c = take_context(ctx_obj, cell, single_step, fn);
    return c.is_double ? backward_impl<double>(c, single_step, dy, dh, dc, names)
                       : backward_impl<float>(c, single_step, dy, dh, dc, names);
}

// ---- pickling and copies ---------------------------------------------------------
// State = the weights in PyTorch layout, unpacked from the panels (exact),
// never the panels themselves: a pickle made under one ISA loads under any other, and copy /
// deepcopy (which go through the same state) pack afresh, so a copy shares
// no memory with its original. Each state starts with a format version.

constexpr int kPickleVersion = 1;

py::tuple packed_state(const PackedHandle& h) {
    return py::make_tuple(kPickleVersion, cell_prefix(h.cell), h.linear_before_reset(), unpack(h),
                          precision_name(h));
}

// Unpickled states go through pack(), so a damaged one fails with its checks.
PackedHandle packed_from_state(const py::tuple& st) {
    // Four entries: a state pickled before packs had a precision (float).
    if ((st.size() != 4 && st.size() != 5) || st[0].cast<int>() != kPickleVersion)
        raise_value_error("PackedWeights: unpickling needs a state of this rnnkit version (format 1)");
    const py::tuple w = st[3].cast<py::tuple>();
    if (w.size() != 4) raise_value_error("PackedWeights: damaged pickle state (weights)");
    bool is_double = false;
    is_float_dtype(w[0], &is_double);
    const py::object precision = st.size() == 5 ? py::object(st[4]) : py::object(py::none());
    return pack(st[1].cast<std::string>(), w[0], w[1], w[2], w[3], st[2].cast<bool>(), precision);
}

template <typename T>
py::bytes buffer_bytes(const AlignedBuffer<T>& b) {
    return py::bytes(reinterpret_cast<const char*>(b.data()), b.size() * sizeof(T));
}

// A buffer of exactly `n` values from pickled bytes; any other size is a damaged state.
template <typename T>
void buffer_from_bytes(AlignedBuffer<T>& b, const py::handle& obj, std::size_t n, const char* what) {
    const std::string bytes = obj.cast<std::string>();
    if (bytes.size() != n * sizeof(T))
        raise_value_error(std::string("TrainingContext: damaged pickle state (") + what + " has " +
                          std::to_string(bytes.size()) + " bytes, expected " + std::to_string(n * sizeof(T)) + ")");
    b.reset(n);
    if (n) std::memcpy(b.data(), bytes.data(), bytes.size());
}

template <typename T>
py::tuple context_state_impl(ContextHandle& ch) {
    const TrainingContext<T>& c = *ch.get<T>();
    const PackedRnn<T>& w = *c.weights;
    // The weights this context was made with: it keeps their pack, which a
    // later update() of the PackedWeights never writes into (it packs afresh).
    const py::tuple weights = py::make_tuple(kPickleVersion, cell_prefix(w.cell), w.linear_before_reset,
                                             unpack_impl<T>(c.weights));
    return py::make_tuple(kPickleVersion, weights, ch.single_step, ch.packed, c.steps, c.batch, c.reverse,
                          c.rows.sizes, ch.x, buffer_bytes(c.gates), buffer_bytes(c.h), buffer_bytes(c.c),
                          buffer_bytes(c.rh));
}

py::tuple context_state(ContextHandle& ch) {
    return ch.is_double ? context_state_impl<double>(ch) : context_state_impl<float>(ch);
}

template <typename T>
ContextHandle context_from_state_impl(const py::tuple& st, const PackedHandle& wh) {
    auto c = std::make_shared<TrainingContext<T>>();
    c->weights = wh.get<T>();
    const PackedRnn<T>& w = *c->weights;
    c->steps = st[4].cast<int>();
    c->batch = st[5].cast<int>();
    c->reverse = st[6].cast<bool>();
    const std::vector<int> sizes = st[7].cast<std::vector<int>>();
    if (c->steps < 1 || c->batch < 1 || sizes.size() != std::size_t(c->steps) || sizes[0] != c->batch)
        raise_value_error("TrainingContext: damaged pickle state (steps / batch sizes)");
    for (std::size_t t = 0; t < sizes.size(); ++t)
        if (sizes[t] < 1 || (t && sizes[t] > sizes[t - 1]))
            raise_value_error("TrainingContext: damaged pickle state (batch sizes)");
    c->rows.init(c->steps, c->batch, sizes.data());
    const bool single_step = st[2].cast<bool>(), packed = st[3].cast<bool>();
    const py::ssize_t N = py::ssize_t(c->rows.total()), B = c->batch, I = w.I, H = w.H;
    Arr<T> x = single_step ? take_array<T>(st[8], "x", {{B, "B"}, {I, "I"}})
               : packed    ? take_array<T>(st[8], "x", {{N, "N"}, {I, "I"}})
                           : take_array<T>(st[8], "x", {{c->steps, "T"}, {B, "B"}, {I, "I"}});
    c->x = x.data();
    const std::size_t n = std::size_t(N), states = std::size_t(B + N) * std::size_t(H);
    buffer_from_bytes(c->gates, st[9], n * kWorkspaceSlots * std::size_t(H), "gates");
    buffer_from_bytes(c->h, st[10], states, "h");
    buffer_from_bytes(c->c, st[11], w.cell == CellKind::lstm ? states : 0, "c");
    buffer_from_bytes(c->rh, st[12], w.linear_before_reset ? 0 : n * std::size_t(H), "rh");
    ContextHandle ch{w.cell, std::is_same<T, double>::value, single_step, nullptr, nullptr};
    ch.packed = packed;
    ch.x = x;   // the unpickled copy: private, nobody else writes to it
    if constexpr (std::is_same<T, double>::value) ch.f64 = c; else ch.f32 = c;
    return ch;
}

ContextHandle context_from_state(const py::tuple& st) {
    if (st.size() != 13 || st[0].cast<int>() != kPickleVersion)
        raise_value_error("TrainingContext: unpickling needs a state of this rnnkit version (format 1)");
    const PackedHandle wh = packed_from_state(st[1].cast<py::tuple>());
    return wh.is_double ? context_from_state_impl<double>(st, wh) : context_from_state_impl<float>(st, wh);
}

}  // namespace

void register_rnn(py::module_& m) {
    py::class_<PackedHandle>(m, "PackedWeights",
                             "LSTM/GRU layer weights packed once for one ISA's kernels (see rnnkit.pack_lstm).")
        .def_property_readonly("cell", [](const PackedHandle& h) { return std::string(cell_prefix(h.cell)); })
        .def_property_readonly("dtype", [](const PackedHandle& h) {
            return h.is_double ? py::dtype::of<double>() : py::dtype::of<float>();
        })
        .def_property_readonly("input_size", &PackedHandle::input_size)
        .def_property_readonly("hidden_size", &PackedHandle::hidden_size)
        .def_property_readonly("isa", [](const PackedHandle& h) { return std::string(isa_name(h.isa())); })
        .def_property_readonly("linear_before_reset", &PackedHandle::linear_before_reset)
        .def_property_readonly("precision", &precision_name,
                               "What the products take: 'float32' or 'float64' (the weights' dtype), 'bfloat16'\n"
                               "or 'int8' (float32 inputs, states and outputs in every case).")
        .def("update", &update, py::arg("weight_ih"), py::arg("weight_hh"), py::arg("bias_ih") = py::none(),
             py::arg("bias_hh") = py::none(),
             "Pack new weights of the same shapes, dtype and form into these packed weights, reusing\n"
             "their memory (an optimizer step). Biases left out are zeros, as in pack_lstm / pack_gru.\n"
             "Training contexts made before keep the weights they were made with.")
        .def("matches", &matches, py::arg("weight_ih"), py::arg("weight_hh"), py::arg("bias_ih") = py::none(),
             py::arg("bias_hh") = py::none(),
             "Whether these packed weights were packed from exactly these arrays, bit for bit (-0.0 is\n"
             "not +0.0, NaN payloads count): a staleness check that keeps no copy of the weights. Biases\n"
             "left out are zeros, as in pack_lstm / pack_gru. Arrays of another dtype or shape are no\n"
             "match (False); anything but a numpy.ndarray is a TypeError.")
        .def("unpack", &unpack,
             "The weights in PyTorch layout, read back from the packed panels (exactly those packed):\n"
             "(weight_ih (G*H, I), weight_hh (G*H, H), bias_ih or None, bias_hh or None), new arrays.\n"
             "A bias left out when packing comes back as None.")
        .def("__repr__", [](const PackedHandle& h) {
            return std::string("<rnnkit.PackedWeights ") + cell_prefix(h.cell) + " " + (h.is_double ? "float64" : "float32") +
                   " input_size=" + std::to_string(h.input_size()) + " hidden_size=" + std::to_string(h.hidden_size()) +
                   (h.linear_before_reset() ? "" : " linear_before_reset=False") +
                   (h.products() == Precision::full ? "" : " precision=" + precision_name(h)) +
                   " isa=" + isa_name(h.isa()) + ">";
        })
        .def("__reduce__", [](py::object self) {
            return py::make_tuple(py::module_::import("rnnkit._core").attr("_packed_weights_from_state"),
                                  py::make_tuple(packed_state(self.cast<const PackedHandle&>())));
        });
    py::class_<ContextHandle>(m, "TrainingContext",
                              "Opaque state a training forward keeps for the matching backward call.")
        .def_property_readonly("cell", [](const ContextHandle& c) { return std::string(cell_prefix(c.cell)); })
        .def_property_readonly("single_step", [](const ContextHandle& c) { return c.single_step; })
        .def("__reduce__", [](py::object self) {
            return py::make_tuple(py::module_::import("rnnkit._core").attr("_training_context_from_state"),
                                  py::make_tuple(context_state(self.cast<ContextHandle&>())));
        });
    // __reduce__ rather than __getstate__ / __setstate__: pickle protocols 0
    // and 1 would otherwise make the instance with object.__new__, which a
    // pybind11 class cannot survive.
    m.def("_packed_weights_from_state", &packed_from_state, py::arg("state"));
    m.def("_training_context_from_state", &context_from_state, py::arg("state"));

    m.def("pack", &pack, py::arg("cell"), py::arg("weight_ih"), py::arg("weight_hh"), py::arg("bias_ih") = py::none(),
          py::arg("bias_hh") = py::none(), py::arg("linear_before_reset") = true, py::arg("precision") = py::none());

    const StateNames seq{"h0", "c0"}, step{"h", "c"};
    m.def("lstm_forward", [seq](py::handle x, py::handle w, py::handle h0, py::handle c0, bool reverse, bool training,
                                py::handle batch_sizes) {
        return forward(CellKind::lstm, false, "lstm_forward", x, w, h0, c0, reverse, training, seq, batch_sizes);
    }, py::arg("x"), py::arg("weights"), py::arg("h0") = py::none(), py::arg("c0") = py::none(),
       py::arg("reverse") = false, py::arg("training") = false, py::arg("batch_sizes") = py::none());
    m.def("gru_forward", [seq](py::handle x, py::handle w, py::handle h0, bool reverse, bool training,
                               py::handle batch_sizes) {
        return forward(CellKind::gru, false, "gru_forward", x, w, h0, py::none(), reverse, training, seq, batch_sizes);
    }, py::arg("x"), py::arg("weights"), py::arg("h0") = py::none(), py::arg("reverse") = false,
       py::arg("training") = false, py::arg("batch_sizes") = py::none());
    m.def("lstm_cell", [step](py::handle x, py::handle w, py::handle h, py::handle c, bool training) {
        return forward(CellKind::lstm, true, "lstm_cell", x, w, h, c, false, training, step);
    }, py::arg("x"), py::arg("weights"), py::arg("h") = py::none(), py::arg("c") = py::none(),
       py::arg("training") = false);
    m.def("gru_cell", [step](py::handle x, py::handle w, py::handle h, bool training) {
        return forward(CellKind::gru, true, "gru_cell", x, w, h, py::none(), false, training, step);
    }, py::arg("x"), py::arg("weights"), py::arg("h") = py::none(), py::arg("training") = false);

    const GradNames seq_g{"dy", "dh_n", "dc_n"}, step_g{"dy", "dh", "dc"};
    m.def("lstm_backward", [seq_g](py::handle ctx, py::handle dy, py::handle dh_n, py::handle dc_n) {
        return backward(CellKind::lstm, false, "lstm_backward", ctx, dy, dh_n, dc_n, seq_g);
    }, py::arg("ctx"), py::arg("dy") = py::none(), py::arg("dh_n") = py::none(), py::arg("dc_n") = py::none());
    m.def("gru_backward", [seq_g](py::handle ctx, py::handle dy, py::handle dh_n) {
        return backward(CellKind::gru, false, "gru_backward", ctx, dy, dh_n, py::none(), seq_g);
    }, py::arg("ctx"), py::arg("dy") = py::none(), py::arg("dh_n") = py::none());
    m.def("lstm_cell_backward", [step_g](py::handle ctx, py::handle dh, py::handle dc) {
        return backward(CellKind::lstm, true, "lstm_cell_backward", ctx, py::none(), dh, dc, step_g);
    }, py::arg("ctx"), py::arg("dh") = py::none(), py::arg("dc") = py::none());
    m.def("gru_cell_backward", [step_g](py::handle ctx, py::handle dh) {
        return backward(CellKind::gru, true, "gru_cell_backward", ctx, py::none(), dh, py::none(), step_g);
    }, py::arg("ctx"), py::arg("dh") = py::none());
}

}  // namespace bind
}  // namespace rnnkit
