"""The hidden units of a recurrent layer (LSTM, GRU, RNN) as a symmetry class.

Permuting the ``H`` hidden units of one direction reorders, in every gate at once, the rows of the
input weights ``W`` (stored ``(directions, gates * H, in)``), the rows and the columns of the
recurrent weights ``R`` (``(directions, gates * H, H)``), the biases (``(directions, 2 * gates *
H)``), the states and the inputs of whatever reads the output: the function is the same, and
training from an independent initialisation orders them at random. Their matching compares, per
unit, its rows of ``W`` in every gate (the input axis put in A's order by the class that owns it,
else each row's values sorted), its rows of ``R`` with each row's values sorted (its columns are
the units being matched) and its biases.

The class is compared in place (``pinned``): its matching is evidence of the order B kept, and B's
recurrent layers are never permuted (a detector's state is an input and an output of the model,
whose layout a permutation would change).
"""

from __future__ import annotations

import numpy as np

#: Gates per hidden unit, by layer kind.
GATES = {"lstm": 4, "gru": 3, "rnn": 1}
PINNED = "units of a recurrent layer, compared in place (its state may be an input and output)"


def width(params: dict) -> int:
    """Hidden units per direction: the last axis of the recurrent weights."""
    return int(params["recurrent"].shape[-1])


def directions(params: dict) -> int:
    return int(params["weight"].shape[0])


def incoming(params: dict, gates: int, direction: int, order: np.ndarray | None = None
             ) -> np.ndarray:
    """Per hidden unit, its input weights in every gate, shape ``(H, gates * in)``: the input
    axis in ``order`` (a matching of the units it reads), or each gate's row sorted when None."""
    h = width(params)
    w = params["weight"][direction].reshape(gates, h, -1)
    w = w[:, :, order] if order is not None else np.sort(w, axis=2)
    return np.ascontiguousarray(w.transpose(1, 0, 2)).reshape(h, -1)


def own(params: dict, gates: int, direction: int) -> np.ndarray:
    """Per hidden unit, its recurrent weights in every gate with each row's values sorted (their
    columns are these very units) and its biases, shape ``(H, gates * H + 2 * gates)``."""
    h = width(params)
    r = np.sort(params["recurrent"][direction].reshape(gates, h, h), axis=2)
    parts = [np.ascontiguousarray(r.transpose(1, 0, 2)).reshape(h, -1)]
    if "bias" in params:
        parts.append(params["bias"][direction].reshape(2 * gates, h).T)
    return np.concatenate(parts, axis=1)
