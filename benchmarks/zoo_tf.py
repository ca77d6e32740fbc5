"""The TensorFlow/Keras part of the benchmark zoo (run in an environment with TensorFlow).

    python -m venv /tmp/tf && /tmp/tf/bin/pip install tensorflow==2.21.0 tf2onnx onnx scikit-learn
    /tmp/tf/bin/python benchmarks/zoo_tf.py OUT_DIR
    python benchmarks/accuracy.py OUT_DIR          # in onnx-lineage's own environment

A Keras MLP 64-128-64-10 parent trained on the first half of the digits, exported with tf2onnx;
fine-tuning (SGD), pruning and noise ladders; negatives from other seeds; calibration pairs.
Writes ``OUT_DIR/keras/*.onnx`` and ``OUT_DIR/zoo.json`` in the format of ``zoo.py``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import tf2onnx  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402

from harness import results  # noqa: E402

d = load_digits()
ORDER = np.random.default_rng(0).permutation(len(d.data))
X = (d.data / 16.0).astype(np.float32)[ORDER]
Y = d.target[ORDER]
HALF = len(X) // 2
A, B = slice(0, HALF), slice(HALF, None)


def build(seed):
    tf.keras.utils.set_random_seed(seed)
    return tf.keras.Sequential([tf.keras.Input((64,)), tf.keras.layers.Dense(128, activation="relu"),
                               tf.keras.layers.Dense(64, activation="relu"), tf.keras.layers.Dense(10)])


def fit(model, part, epochs, opt, seed):
    tf.keras.utils.set_random_seed(seed)
    model.compile(opt, tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(X[part], Y[part], epochs=epochs, batch_size=128, verbose=0)
    return model


def clone(model):
    c = tf.keras.models.clone_model(model)
    c.set_weights(model.get_weights())
    return c


def export(model, path):
    fn = tf.function(lambda x: model(x, training=False))
    onx, _ = tf2onnx.convert.from_function(fn, [tf.TensorSpec([None, 64], tf.float32, name="x")],
                                           opset=17)
    path.write_bytes(onx.SerializeToString())


def main():
    out = Path(sys.argv[1])
    fam = out / "keras"
    fam.mkdir(parents=True, exist_ok=True)
    pairs = []

    def member(name, model, relation, ladder=None, level=None):
        export(model, fam / f"{name}.onnx")
        pairs.append(dict(a="keras/parent", b=f"keras/{name}", relation=relation, ladder=ladder,
                          level=level, split="evaluation"))

    parent = fit(build(0), A, 20, "adam", 0)
    export(parent, fam / "parent.onnx")
    for e in (1, 3, 10, 30):
        member(f"ft_{e}", fit(clone(parent), B, e, tf.keras.optimizers.SGD(0.01, momentum=0.9), 1),
               "related", "finetune", e)
    for f in (0.3, 0.5, 0.7, 0.9):
        m = clone(parent)
        ws = m.get_weights()
        kernels = [w for w in ws if w.ndim == 2]
        cut = np.quantile(np.abs(np.concatenate([k.ravel() for k in kernels])), f)
        m.set_weights([np.where(np.abs(w) < cut, 0, w) if w.ndim == 2 else w for w in ws])
        member(f"prune_{int(f * 100)}", m, "related", "prune", f)
    rng = np.random.default_rng(7)
    for lv in (0.02, 0.05, 0.1, 0.3):
        m = clone(parent)
        m.set_weights([w + rng.normal(0, lv * w.std(), w.shape).astype(np.float32) if w.ndim == 2
                       else w for w in m.get_weights()])
        member(f"noise_{lv}", m, "related", "noise", lv)
    for s in (1, 2):
        member(f"indep_{s}", fit(build(100 + s), A, 20, "adam", 100 + s), "unrelated")
    member("other_data", fit(build(200), B, 20, "adam", 200), "unrelated")
    cal = (500, 501, 502)
    for s in cal:
        export(fit(build(s), A, 20, "adam", s), fam / f"cal_{s}.onnx")
    for i, s in enumerate(cal):
        for t in cal[i + 1:]:
            pairs.append(dict(a=f"keras/cal_{s}", b=f"keras/cal_{t}", relation="unrelated",
                              ladder=None, level=None, split="calibration"))
    results.write_json(out / "zoo.json", {"pairs": pairs, "reduced": False})
    print(f"keras zoo: {len(list(fam.glob('*.onnx')))} models, {len(pairs)} pairs", file=sys.stderr)


if __name__ == "__main__":
    main()
