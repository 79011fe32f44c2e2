"""Weight interchange: PyTorch state_dicts, Keras and ONNX LSTM/GRU weights.

rnnkit's canonical parameters are a *params dict*: torch.nn.LSTM/GRU names
(``weight_ih_l{k}``, ``weight_hh_l{k}``, ``bias_ih_l{k}``, ``bias_hh_l{k}``,
suffix ``_reverse`` for the reverse direction) -> NumPy arrays of one dtype
(float32 or float64), shapes and gate order as torch holds them. Every gate
reorder and transpose of the project happens in this package: one module
per format (:mod:`.torch`, :mod:`.keras`, :mod:`.onnx`) over the params
dict's own checks (:mod:`._params`); this module re-exports them all.

Layouts (H hidden size, I input size, D directions)::

    framework        weights                          gate order
    PyTorch/rnnkit   weight_ih (G*H, I), weight_hh    LSTM i f g o   GRU r z n
                     (G*H, H), bias_ih, bias_hh (G*H)
    Keras            kernel (I, G*H), recurrent_      LSTM i f c o   GRU z r h
                     kernel (H, G*H), bias (G*H,) or
                     (2, 3H) for GRU reset_after=True
    ONNX             W [D, G*H, I], R [D, G*H, H],    LSTM i o f c   GRU z r h
                     B [D, 2*G*H] = [Wb, Rb]

GRU forms: torch's (and Keras reset_after=True, ONNX linear_before_reset=1)
is "linear before reset", n = tanh(W_in x + b_in + r * (W_hn h + b_hn));
Keras reset_after=False and ONNX linear_before_reset=0 (ONNX's default) is
n = tanh(W_in x + b_in + W_hn (r * h) + b_hn), rnnkit's
``linear_before_reset=False``. The params dict is the same for both; the form
travels beside it as ``linear_before_reset``.

Only NumPy is needed; :func:`run_onnx_node` imports onnx when called.
"""

from __future__ import annotations

from ._params import check_params
from .keras import from_keras_gru, from_keras_lstm, layer_from_keras, to_keras_gru, to_keras_lstm
from .onnx import (from_onnx_gru, from_onnx_lstm, layer_from_onnx, run_onnx_node, run_onnx_rnn, to_onnx_gru,
                   to_onnx_lstm)
from .torch import from_state_dict, to_state_dict

__all__ = [
    "check_params", "from_state_dict", "to_state_dict",
    "from_keras_lstm", "to_keras_lstm", "from_keras_gru", "to_keras_gru", "layer_from_keras",
    "from_onnx_lstm", "from_onnx_gru", "to_onnx_lstm", "to_onnx_gru",
    "run_onnx_rnn", "run_onnx_node", "layer_from_onnx",
]
