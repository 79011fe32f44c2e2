// The extension module: ISA and thread controls here, the rest registered
// by the other binding files. Bindings only translate and check arguments.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <stdexcept>

#include "dispatch.h"
#include "layer/block_cache.h"
#include "layer/threading.h"

namespace py = pybind11;

namespace rnnkit {
namespace bind {
void register_rnn(py::module_& m);
void register_testing(py::module_& m);
int take_thread_count(py::handle obj);
}  // namespace bind
}  // namespace rnnkit

PYBIND11_MODULE(_core, m) {
    using namespace rnnkit;
    m.doc() = "rnnkit's compiled core: per-ISA LSTM/GRU kernels and their drivers";

    m.def("isa", [] { return std::string(isa_name(active_isa())); });
    m.def("available_isas", [] {
        std::vector<std::string> out;
        for (Isa i : available_isas()) out.emplace_back(isa_name(i));
        return out;
    });
    m.def("set_isa", [](const std::string& name) {
        Isa isa;
        try {
            isa = isa_from_name(name);
        } catch (const std::invalid_argument& e) {
            throw py::value_error(e.what());
        }
        set_active_isa(isa);   // std::runtime_error -> RuntimeError
    }, py::arg("name"));
    m.def("set_num_threads", [](py::handle obj) { set_num_threads(bind::take_thread_count(obj)); }, py::arg("n"));
    m.def("get_num_threads", [] { return get_num_threads(); });
    m.def("workspace_cache_bytes", [] { return block_cache_bytes(); });
    m.def("clear_workspace_cache", [] { return block_cache_clear(); });
#if defined(RNNKIT_HAVE_OPENMP)
    m.attr("HAVE_OPENMP") = true;
#else
    m.attr("HAVE_OPENMP") = false;
#endif

    bind::register_rnn(m);
    // Hooks for the tests only (single kernels, the fingerprint, the core
    // round trip) live apart, so that the module's own namespace is its API.
    py::module_ testing = m.def_submodule("_testing", "rnnkit's test hooks: single kernels and measurements");
    bind::register_testing(testing);
}
