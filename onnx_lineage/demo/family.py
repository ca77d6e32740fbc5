"""A small, real lineage family: scikit-learn MLPs trained on the built-in digits, exported to ONNX.

The parent is trained on half of the digits. Derived models: fine-tuned on the other half (light
and heavy), magnitude-pruned, weight noise, int8 (onnxruntime dynamic quantization), and a copy
obfuscated by permuting and rescaling hidden units. Unrelated: the same architecture trained from
another seed. Everything is trained here, in seconds, with no download.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from onnx_lineage.data import digits
from onnx_lineage.model.runtime import ort

#: name -> (relation to the parent, description)
FAMILY_ROLES = {
    "parent": ("self", "MLP 64-64-32-10 trained on digits (first half)"),
    "finetuned_light": ("related", "parent fine-tuned 5 epochs on the other half"),
    "finetuned_heavy": ("related", "parent fine-tuned 60 epochs on the other half, lr 10x"),
    "pruned_50": ("related", "parent with the 50% smallest weights of each layer zeroed"),
    "noisy": ("related", "parent plus Gaussian weight noise (5% of each layer's std)"),
    "int8": ("related", "parent quantized to int8 (onnxruntime dynamic quantization)"),
    "obfuscated": ("related", "parent with hidden units permuted and rescaled (same function)"),
    "independent": ("unrelated", "same architecture trained from another seed"),
}


def mlp_to_onnx(weights: list[np.ndarray], biases: list[np.ndarray], name: str = "mlp"
                ) -> onnx.ModelProto:
    """An ONNX MLP: ``Gemm(transB=1) -> Relu`` per hidden layer, logits out.

    Parameters
    ----------
    weights : list of ndarray of shape (out, in), float32
    biases : list of ndarray of shape (out,), float32
    """
    nodes, inits = [], []
    prev = "x"
    for k, (w, b) in enumerate(zip(weights, biases)):
        inits += [numpy_helper.from_array(np.asarray(w, np.float32), f"fc{k}.weight"),
                  numpy_helper.from_array(np.asarray(b, np.float32), f"fc{k}.bias")]
        out = "logits" if k == len(weights) - 1 else f"h{k}"
        nodes.append(helper.make_node("Gemm", [prev, f"fc{k}.weight", f"fc{k}.bias"], [out],
                                      transB=1, name=f"fc{k}"))
        if k < len(weights) - 1:
            nodes.append(helper.make_node("Relu", [out], [f"a{k}"], name=f"relu{k}"))
            prev = f"a{k}"
    graph = helper.make_graph(
        nodes, name,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", weights[0].shape[1]])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", weights[-1].shape[0]])],
        inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)],
                              producer_name="onnx-lineage-demo")
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def _train(x, y, seed: int, epochs: int, lr: float = 1e-3, init=None):
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier

    clf = MLPClassifier(hidden_layer_sizes=(64, 32), max_iter=epochs, learning_rate_init=lr,
                        random_state=seed, warm_start=init is not None, tol=0.0,
                        n_iter_no_change=10**6)
    if init is not None:
        clf.coefs_ = [c.copy() for c in init.coefs_]
        clf.intercepts_ = [b.copy() for b in init.intercepts_]
        for attr in ("n_outputs_", "n_layers_", "out_activation_", "classes_", "_label_binarizer",
                     "n_features_in_", "t_", "loss_curve_", "best_loss_", "_no_improvement_count"):
            if hasattr(init, attr):
                setattr(clf, attr, getattr(init, attr))
        clf.n_iter_ = 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(x, y)
    return clf


def _weights(clf) -> tuple[list[np.ndarray], list[np.ndarray]]:
    return ([c.T.astype(np.float32).copy() for c in clf.coefs_],
            [b.astype(np.float32).copy() for b in clf.intercepts_])


def obfuscate(weights, biases, rng: np.random.Generator):
    """Permute every hidden layer's units and rescale them by positive factors (same function)."""
    w, b = [x.copy() for x in weights], [x.copy() for x in biases]
    for k in range(len(w) - 1):
        units = w[k].shape[0]
        perm = rng.permutation(units)
        scale = rng.uniform(0.5, 2.0, units).astype(np.float32)
        w[k] = w[k][perm] * scale[:, None]
        b[k] = b[k][perm] * scale
        w[k + 1] = w[k + 1][:, perm] / scale[None, :]
    return w, b


def build_family(out_dir: str | Path, seed: int = 0) -> dict[str, Path]:
    """Train the family and write one ONNX file per member into ``out_dir``.

    Returns
    -------
    dict of member name to path (see :data:`FAMILY_ROLES`).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    data = digits()
    x, y = data.arrays["x"], data.y
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(x))
    first, second = order[: len(x) // 2], order[len(x) // 2:]

    parent = _train(x[first], y[first], seed, epochs=150)
    members = {"parent": _weights(parent)}
    members["finetuned_light"] = _weights(_train(x[second], y[second], seed, 5, 1e-3, parent))
    members["finetuned_heavy"] = _weights(_train(x[second], y[second], seed, 60, 1e-2, parent))
    pw, pb = members["parent"]
    pruned = []
    for w in pw:
        cut = np.quantile(np.abs(w), 0.5)
        pruned.append(np.where(np.abs(w) < cut, 0.0, w).astype(np.float32))
    members["pruned_50"] = (pruned, pb)
    members["noisy"] = ([w + rng.normal(0, 0.05 * w.std(), w.shape).astype(np.float32) for w in pw],
                        pb)
    members["obfuscated"] = obfuscate(pw, pb, rng)
    members["independent"] = _weights(_train(x[first], y[first], seed + 1, epochs=150))

    paths = {}
    for name, (w, b) in members.items():
        paths[name] = out / f"{name}.onnx"
        onnx.save(mlp_to_onnx(w, b, name), paths[name])
    paths["int8"] = out / "int8.onnx"
    _quantize(paths["parent"], paths["int8"])
    return {name: paths[name] for name in FAMILY_ROLES}


def _quantize(src: Path, dst: Path) -> None:
    import logging

    ort()  # onnxruntime present (its quantizer is imported here: heavy, needed by this step only)
    from onnxruntime.quantization import QuantType, quantize_dynamic
    logging.getLogger().setLevel(logging.ERROR)
    quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8)
