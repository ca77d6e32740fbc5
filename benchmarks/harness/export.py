"""PyTorch models to ONNX files, the way every benchmark exports them: torch's TorchScript
exporter (``dynamo=False``), one output ``logits``, and the batch axis (axis 0) of every input and
output dynamic.

torch is imported inside the functions: a script that only reads results never loads it.
"""

from __future__ import annotations

from pathlib import Path

#: The inputs of a token model (a sequence classifier or encoder), both int64 [batch, tokens].
TOKEN_INPUTS = ("input_ids", "attention_mask")


def batch_axes(input_names, output_names=("logits",), tokens: bool = False) -> dict:
    """The ``dynamic_axes`` of an export: axis 0 (``batch``) of every input and output, and with
    ``tokens`` axis 1 (``tokens``) of every input too (the inputs are [batch, tokens])."""
    axes = {n: {0: "batch", 1: "tokens"} if tokens else {0: "batch"} for n in input_names}
    axes.update({n: {0: "batch"} for n in output_names})
    return axes


def export_onnx(model, example: tuple, path: Path, input_names=("x",),
                output_names=("logits",), dynamic_axes: dict | None = None,
                keep_bn: bool = False) -> Path:
    """Export ``model`` (called on the tensors of ``example``, a tuple) to ``path``.

    ``dynamic_axes``: :func:`batch_axes` of the inputs and outputs unless given. ``keep_bn``:
    export with ``training=PRESERVE`` and no constant folding, which keeps BatchNorm a node of its
    own instead of folding it into the convolution before it. Returns ``path``."""
    import torch
    if dynamic_axes is None:
        dynamic_axes = batch_axes(input_names, output_names)
    kw = (dict(training=torch.onnx.TrainingMode.PRESERVE, do_constant_folding=False) if keep_bn
          else {})
    torch.onnx.export(model, example, path, dynamo=False, input_names=list(input_names),
                      output_names=list(output_names), dynamic_axes=dynamic_axes, **kw)
    return path


def export_cached(model, example: tuple, path: Path, input_names=("x",),
                  tokens: bool = False) -> Path:
    """:func:`export_onnx` of ``model`` in eval mode, unless ``path`` exists already: then the
    file there is kept (and ``model`` left as it is), so another machine can time the very same
    files. ``tokens``: axis 1 of the inputs is dynamic too (:func:`batch_axes`)."""
    if path.exists():
        return path
    return export_onnx(model.eval(), example, path, input_names,
                       dynamic_axes=batch_axes(input_names, tokens=tokens))


def export_token_model(model, path: Path) -> Path:
    """:func:`export_cached` of a token model (a BERT-like encoder with a classification head):
    inputs ``input_ids`` and ``attention_mask`` [batch, tokens] (traced on one row of 16 tokens),
    output ``logits`` [batch, classes]."""
    import torch
    example = (torch.zeros(1, 16, dtype=torch.int64), torch.ones(1, 16, dtype=torch.int64))
    return export_cached(model, example, path, TOKEN_INPUTS, tokens=True)
