"""ONNX Runtime parity: generated ONNX LSTM/GRU models run in onnxruntime and
through rnnkit.interchange.run_onnx_rnn give the same Y, Y_h (and Y_c).

The grid: LSTM, GRU with linear_before_reset 0 and 1; forward, reverse and
bidirectional; without and with sequence_lens (unsorted, with a length-T and
a length-1 sequence); without and with initial states; layout 0 and 1; float32
(ONNX Runtime's CPU kernels run float32 only), I != H.

ONNX Runtime's CPU LSTM/GRU reject layout=1, so a layout=1 model gets the
equivalent layout=0 graph wrapped in Transposes (ONNX defines layout=1 as
exactly these transposes); rnnkit runs the layout=1 node itself.

Tolerance: ORT's and rnnkit's float32 results are each held to the helpers'
float32 rule against rnnkit's float64 run on the same inputs.
"""

import itertools

import numpy as np
import pytest

from helpers import assert_close, require_optional
from rnnkit import interchange

T, B, I, H = 6, 4, 5, 3
LENGTHS = [4, T, 1, 3]
GATES = {"LSTM": 4, "GRU": 3}
# LSTM/GRU's newest definition is opset 22; layout needs 14.
OPSET = 22


@pytest.fixture(scope="module")
def ort():
    require_optional("onnx")
    return require_optional("onnxruntime")


def make_case(op, direction, lengths, states, layout, seed=0):
    """Random ONNX inputs (weights ~ U(-1/sqrt(H), 1/sqrt(H)) as torch
    initialises them, x and states ~ 0.5 N(0, 1)) in the node's layout."""
    rng = np.random.default_rng([seed, GATES[op], ["forward", "reverse", "bidirectional"].index(direction)])
    D, G, k = (2 if direction == "bidirectional" else 1), GATES[op], 1.0 / np.sqrt(H)
    case = {"X": 0.5 * rng.standard_normal((B, T, I) if layout else (T, B, I)),
            "W": rng.uniform(-k, k, (D, G * H, I)),
            "R": rng.uniform(-k, k, (D, G * H, H)),
            "B": rng.uniform(-k, k, (D, 2 * G * H))}
    if lengths:
        case["sequence_lens"] = np.array(LENGTHS, np.int32)
    if states:
        shape = (B, D, H) if layout else (D, B, H)
        case["initial_h"] = 0.5 * rng.standard_normal(shape)
        if op == "LSTM":
            case["initial_c"] = 0.5 * rng.standard_normal(shape)
    return {name: a if a.dtype.kind == "i" else a.astype(np.float32) for name, a in case.items()}


def ort_model(op, attrs, case, layout):
    """A model running one ONNX node on `case`: weights as initializers, the
    rest as graph inputs; layout=1 as Transposes around a layout=0 node."""
    from onnx import TensorProto, helper, numpy_helper

    order = ["X", "W", "R", "B", "sequence_lens", "initial_h"] + (["initial_c"] if op == "LSTM" else [])
    outs = ["Y", "Y_h"] + (["Y_c"] if op == "LSTM" else [])
    feeds = [n for n in order if n in case and n not in ("W", "R", "B")]
    nodes, node_in, node_out = [], [], []
    # Batch-major inputs go to time-major (X: [B, T, I] -> [T, B, I]; states: [B, D, H] -> [D, B, H]).
    for name in order:
        if layout and name in ("X", "initial_h", "initial_c") and name in case:
            nodes.append(helper.make_node("Transpose", [name], [name + "_tm"], perm=[1, 0, 2]))
            node_in.append(name + "_tm")
        else:
            node_in.append(name if name in case else "")
    node_out = [o + "_tm" if layout else o for o in outs]
    nodes.append(helper.make_node(op, node_in, node_out, **attrs))
    # And back: Y [T, D, B, H] -> [B, T, D, H]; Y_h, Y_c [D, B, H] -> [B, D, H].
    if layout:
        for o in outs:
            perm = [2, 0, 1, 3] if o == "Y" else [1, 0, 2]
            nodes.append(helper.make_node("Transpose", [o + "_tm"], [o], perm=perm))
    elem = {np.dtype(np.float32): TensorProto.FLOAT, np.dtype(np.int32): TensorProto.INT32}
    graph = helper.make_graph(
        nodes, "rnn",
        [helper.make_tensor_value_info(n, elem[case[n].dtype], case[n].shape) for n in feeds],
        [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in outs],
        initializer=[numpy_helper.from_array(case[n], n) for n in ("W", "R", "B")])
    opset = [helper.make_opsetid("", OPSET)]
    model = helper.make_model(graph, opset_imports=opset, ir_version=helper.find_min_ir_version_for(opset))
    return model, {n: case[n] for n in feeds}


GRID = list(itertools.product([("LSTM", None), ("GRU", 0), ("GRU", 1)],
                              ["forward", "reverse", "bidirectional"],
                              [False, True], [False, True], [0, 1]))


@pytest.mark.parametrize("cell, direction, lengths, states, layout", GRID,
                         ids=[f"{op}{'' if lbr is None else f'-lbr{lbr}'}-{d}-{'lens' if n else 'full'}-"
                              f"{'h0' if s else 'zero'}-layout{lay}"
                              for (op, lbr), d, n, s, lay in GRID])
def test_ort_parity(ort, cell, direction, lengths, states, layout):
    op, lbr = cell
    attrs = {"hidden_size": H, "direction": direction}
    # linear_before_reset=0 is left out: it is ONNX's default, which both sides must know.
    if lbr:
        attrs["linear_before_reset"] = lbr
    case = make_case(op, direction, lengths, states, layout)

    model, feeds = ort_model(op, attrs, case, layout)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    want = session.run(None, feeds)

    node_attrs = dict(attrs, layout=layout)
    got = interchange.run_onnx_rnn(op, node_attrs, **case)
    wide = {n: a.astype(np.float64) if a.dtype == np.float32 else a for n, a in case.items()}
    oracle = interchange.run_onnx_rnn(op, node_attrs, **wide)

    assert len(got) == len(want) == len(oracle)
    for name, g, w, o in zip(["Y", "Y_h", "Y_c"], got, want, oracle):
        assert g.shape == w.shape, f"{name}: rnnkit shape {g.shape}, ONNX Runtime {w.shape}"
        assert_close(w, o, np.float32, I + H, T, name=f"{name} (ONNX Runtime vs float64)")
        assert_close(g, o, np.float32, I + H, T, name=f"{name} (rnnkit vs float64)")
    if lengths:
        # Past each sequence's end Y is exactly zero, on both sides.
        y = got[0] if layout == 0 else got[0].transpose(1, 2, 0, 3)   # -> [T, D, B, H]
        for b, n in enumerate(LENGTHS):
            assert not y[n:, :, b].any(), f"sequence {b}: Y past its length {n} is not zero"
