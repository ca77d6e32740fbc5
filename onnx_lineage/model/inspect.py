"""What is inside an ONNX model: interface, producer, parametric layers, quantization, batching."""

from __future__ import annotations

from dataclasses import dataclass

import onnx

from onnx_lineage.model.footprint import inspect_footprint, match_footprint, require
from onnx_lineage.model.loading import load_model
from onnx_lineage.model.parameters import extract_layers
from onnx_lineage.model.runner import Runner
from onnx_lineage.results import Result


@dataclass(frozen=True)
class InspectResult(Result):
    """Everything ``inspect`` reports about one model."""

    model: str
    producer: str
    opsets: dict
    ir_version: int
    inputs: list
    outputs: list
    layers: list
    n_params: int
    quantization: list
    output: str
    output_kind: str
    batch_dependent: bool
    provider: str
    batch_size: int
    fixed_batch: int | None


def _value_info(vi: onnx.ValueInfoProto) -> dict:
    t = vi.type.tensor_type
    dims = [d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in t.shape.dim]
    dtype = onnx.helper.tensor_dtype_to_np_dtype(t.elem_type).name if t.elem_type else "other"
    return {"name": vi.name, "dtype": dtype, "shape": dims}


def inspect_model(path, device: str = "auto", output: str = "auto") -> InspectResult:
    """Read ``path`` and describe it (see :class:`InspectResult`)."""
    loaded = load_model(path)
    proto = loaded.proto
    require(inspect_footprint(proto), f"inspect of {loaded.name}",
            (("`match` (the data-free tests, against another model)",
              match_footprint(proto, proto)),))
    layers = extract_layers(proto)
    runner = Runner(proto, device=device, output=output, name=loaded.name)
    init_names = {t.name for t in proto.graph.initializer}
    axes = {i.name: i.batch_axis for i in runner.inputs}
    return InspectResult(
        model=loaded.name,
        producer=f"{proto.producer_name} {proto.producer_version}".strip() or "unknown",
        opsets={(o.domain or "ai.onnx"): o.version for o in proto.opset_import},
        ir_version=proto.ir_version,
        inputs=[dict(_value_info(i), batch_axis=axes.get(i.name), state=i.name in runner.states)
                for i in proto.graph.input if i.name not in init_names],
        outputs=[_value_info(o) for o in proto.graph.output],
        layers=[layer.summary() for layer in layers],
        n_params=sum(layer.n_params for layer in layers),
        quantization=sorted({layer.quant for layer in layers if layer.quant}),
        output=runner.output_name,
        output_kind=runner.output_kind,
        batch_dependent=runner.batch_dependent,
        provider=runner.provider,
        batch_size=runner.batch_size,
        fixed_batch=runner.fixed_batch,
    )
