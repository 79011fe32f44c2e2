"""An ONNX graph of one LSTM or GRU operator holding PyTorch-layout weights."""

from __future__ import annotations

import numpy as np

# ONNX stacks gates as LSTM i,o,f,c and GRU z,r,h; these pick them from PyTorch's i,f,g,o and r,z,n.
ONNX_GATE_ORDER = {"lstm": (0, 3, 1, 2), "gru": (1, 0, 2)}

# An IR version every onnxruntime of the last years loads (newer onnx packages default higher).
IR_VERSION = 8
OPSET = 17


def _reorder(a: np.ndarray, cell: str) -> np.ndarray:
    """Reorder the gate blocks along axis 0 of a (G*H, ...) array."""
    order = ONNX_GATE_ORDER[cell]
    blocks = a.reshape(len(order), -1, *a.shape[1:])
    return np.ascontiguousarray(blocks[list(order)].reshape(a.shape))


def build_model(cell: str, B: int, I: int, H: int, params: dict, with_state: bool):
    """Model with input X (T, B, I), T free, [+ initial_h (1, B, H), initial_c] and outputs Y, Y_h [, Y_c].

    with_state=False leaves the initial state out (zeros), as the sequence benchmarks do.
    """
    from onnx import TensorProto, helper, numpy_helper

    # Weights become initializers: W (1, G*H, I), R (1, G*H, H), B (1, 2*G*H) = [W-bias, R-bias].
    w = _reorder(params["w_ih"], cell)[None]
    r = _reorder(params["w_hh"], cell)[None]
    b = np.concatenate([_reorder(params["b_ih"], cell), _reorder(params["b_hh"], cell)])[None]
    inits = [numpy_helper.from_array(a.astype(np.float32), name) for a, name in ((w, "W"), (r, "R"), (b, "B"))]

    def tensor(name, shape):
        return helper.make_tensor_value_info(name, TensorProto.FLOAT, list(shape))

    # T is symbolic so the same session (and thread pool) also runs one-step priming calls.
    inputs = [tensor("X", ("T", B, I))]
    node_inputs = ["X", "W", "R", "B"]
    state_names = ["initial_h", "initial_c"] if cell == "lstm" else ["initial_h"]
    # Optional inputs go by position: sequence_lens (absent) comes before the states.
    if with_state:
        inputs += [tensor(n, (1, B, H)) for n in state_names]
        node_inputs += [""] + state_names
    outputs = [tensor("Y", ("T", 1, B, H)), tensor("Y_h", (1, B, H))]
    if cell == "lstm":
        outputs.append(tensor("Y_c", (1, B, H)))

    attrs = {"hidden_size": H}
    if cell == "gru":
        # PyTorch's GRU applies the reset gate after the recurrent product.
        attrs["linear_before_reset"] = 1
    node = helper.make_node(cell.upper(), node_inputs, [o.name for o in outputs], **attrs)
    graph = helper.make_graph([node], f"{cell}_bench", inputs, outputs, initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = IR_VERSION
    return model


def make_session(model, threads: int):
    """CPU session with `threads` intra-op threads and no inter-op parallelism."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.log_severity_level = 3
    return ort.InferenceSession(model.SerializeToString(), sess_options=so, providers=["CPUExecutionProvider"])


def quantize_int8(model):
    """The model with its LSTM turned into com.microsoft DynamicQuantizeLSTM by ONNX Runtime's
    quantize_dynamic: int8 weights with one scale per output row (per_channel, the scheme
    rnnkit's int8 uses), activations quantized per call. ORT quantizes no GRU."""
    import logging
    import os
    import tempfile

    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    root = logging.getLogger()
    level = root.level
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = os.path.join(tmp, "float.onnx"), os.path.join(tmp, "int8.onnx")
        onnx.save(model, src)
        # Its advice to pre-process (shape inference) does not apply to a one-node graph.
        root.setLevel(logging.ERROR)
        try:
            quantize_dynamic(src, dst, per_channel=True, weight_type=QuantType.QInt8)
        finally:
            root.setLevel(level)
        return onnx.load(dst)
