"""ONNX conformance: the LSTM and GRU node test cases that ship with the
installed onnx package, run through rnnkit.interchange.run_onnx_node.

The cases are enumerated from the package, so new ones are picked up: the
generated ones (onnx.backend.test.case.node.collect_testcases) and, where the
package ships them, the serialized ones (backend/test/data/node/test_lstm_*,
test_gru_*: model.onnx, test_data_set_*/input_*.pb, output_*.pb).

A case that uses a feature rnnkit does not run (nonzero peepholes, clip,
coupled gates, other activations) must raise the clear error, asserted here.

Tolerance: the expected outputs are themselves a float32 computation, so
they and rnnkit's float32 results are each held to the helpers' float32 rule
against rnnkit's float64 run on the same inputs (the float64 kernels match
the float64 reference to ~1e-12, see test_rnn_vs_reference.py).
"""

import functools
import glob
import os
import warnings

import numpy as np
import pytest

from helpers import assert_close, require_optional
from rnnkit import interchange

OPS = ("LSTM", "GRU")


@functools.lru_cache(maxsize=None)
def shipped_cases():
    """name -> (node, inputs, outputs) for every LSTM/GRU node case in the
    installed onnx package; {} without onnx."""
    try:
        import onnx
        from onnx.backend.test.case import node as node_cases
    except ImportError:
        return {}
    cases = {}
    # Generated cases: one single-node model and data set(s) each. Generating
    # every op's cases warns about other ops' arithmetic; those are not ours.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        generated = node_cases.collect_testcases()
    for case in generated:
        nodes = case.model.graph.node
        if len(nodes) == 1 and nodes[0].op_type in OPS:
            for k, (inputs, outputs) in enumerate(case.data_sets):
                cases[f"generated/{case.name}/{k}"] = (nodes[0], list(inputs), list(outputs))
    # Serialized cases, in onnx versions that ship backend/test/data/node.
    cases.update(serialized_cases(os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data", "node")))
    return cases


def serialized_cases(root):
    """The LSTM/GRU cases under an ONNX backend-test data directory."""
    import onnx
    from onnx import numpy_helper

    def load(data_dir, kind):
        files = sorted(glob.glob(os.path.join(data_dir, f"{kind}_*.pb")),
                       key=lambda p: int(p.rsplit("_", 1)[1][:-3]))
        return [numpy_helper.to_array(onnx.load_tensor(f)) for f in files]

    cases = {}
    for model_path in sorted(glob.glob(os.path.join(root, "test_*", "model.onnx"))):
        nodes = onnx.load(model_path).graph.node
        if len(nodes) != 1 or nodes[0].op_type not in OPS:
            continue
        name = os.path.basename(os.path.dirname(model_path))
        for data_dir in sorted(glob.glob(os.path.join(os.path.dirname(model_path), "test_data_set_*"))):
            cases[f"data/{name}/{os.path.basename(data_dir)}"] = (nodes[0], load(data_dir, "input"),
                                                                  load(data_dir, "output"))
    return cases


def case_ids():
    # Without onnx there is one placeholder, whose test skips (fails under CI=true).
    return sorted(shipped_cases()) or ["onnx-not-installed"]


def unsupported(node, inputs):
    """(exception, message pattern) rnnkit must raise for this case, or None.
    Decided from the case itself, independently of rnnkit's own checks."""
    from onnx import helper
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    named = dict(zip([n for n in node.input if n], inputs))
    if named["X"].dtype not in (np.float32, np.float64):
        return TypeError, r"expected dtype float32 or float64"
    if node.op_type == "LSTM" and "P" in named and np.any(named["P"] != 0):
        return ValueError, r"P: peephole weights are not supported"
    if "clip" in attrs:
        return ValueError, r"clip: cell clipping"
    if attrs.get("input_forget", 0):
        return ValueError, r"input_forget"
    defaults = {"LSTM": ["sigmoid", "tanh", "tanh"], "GRU": ["sigmoid", "tanh"]}[node.op_type]
    direction = attrs.get("direction", b"forward")
    dirs = 2 if direction in (b"bidirectional", "bidirectional") else 1
    if "activations" in attrs and [a.decode().lower() for a in attrs["activations"]] != defaults * dirs:
        return ValueError, r"activations: only ONNX's defaults"
    if "sequence_lens" in named and np.any(named["sequence_lens"] < 1):
        return ValueError, r"sequence_lens: every length must be in"
    return None


def test_the_package_ships_lstm_and_gru_cases():
    require_optional("onnx")
    ops = {case[0].op_type for case in shipped_cases().values()}
    assert ops == set(OPS), f"found cases for {sorted(ops)} only"


@pytest.mark.parametrize("name", case_ids())
def test_shipped_case(name):
    require_optional("onnx")
    node, inputs, expected = shipped_cases()[name]
    error = unsupported(node, inputs)
    if error is not None:
        with pytest.raises(error[0], match=error[1]):
            interchange.run_onnx_node(node, inputs)
        return

    got = interchange.run_onnx_node(node, inputs)
    # The float64 oracle: the same inputs, floats widened exactly.
    wide = [a.astype(np.float64) if a.dtype.kind == "f" else a for a in inputs]
    oracle = interchange.run_onnx_node(node, wide)
    named = dict(zip([n for n in node.input if n], inputs))
    T = named["X"].shape[1 if any(a.name == "layout" and a.i == 1 for a in node.attribute) else 0]
    acc_len = named["W"].shape[2] + named["R"].shape[2]   # input_size + hidden_size
    outputs = [n for n in node.output if n]
    assert len(got) == len(expected) == len(outputs)
    for out_name, g, e, o in zip(outputs, got, expected, oracle):
        assert g.shape == e.shape, f"{out_name}: shape {g.shape}, expected {e.shape}"
        assert_close(e, o, e.dtype, acc_len, T, name=f"{name} {out_name}: expected vs float64")
        assert_close(g, o, g.dtype, acc_len, T, name=f"{name} {out_name}: rnnkit vs float64")
