"""``onnx-lineage inspect MODEL``."""

from __future__ import annotations

from onnx_lineage.cli.options import (Device, DeviceOpt, JsonOpt, MaxMemoryOpt, ModelArg,
                                      OutputKind, OutputOpt, use_memory)

NAME = "inspect"


def command(model: ModelArg, device: DeviceOpt = Device.auto, output: OutputOpt = OutputKind.auto,
            json: JsonOpt = False, max_memory: MaxMemoryOpt = None) -> None:
    """Inputs, outputs, producer, opset, parametric layers, quantization and batch dependence."""
    use_memory(max_memory)
    from onnx_lineage.cli import render
    from onnx_lineage.model.inspect import inspect_model

    r = inspect_model(model, device=device.value, output=output.value)
    if json:
        render.emit_json(r)
        return
    c = render.console()
    c.print(render.kv_table(f"{r.model}", [
        ("producer", r.producer),
        ("opsets", ", ".join(f"{k} {v}" for k, v in r.opsets.items())),
        ("inputs", "; ".join(f"{i['name']} {i['dtype']} {i['shape']} ({_rows(i)})"
                             for i in r.inputs)),
        ("outputs", "; ".join(f"{o['name']} {o['dtype']} {o['shape']}" for o in r.outputs)),
        ("prediction", f"{r.output} ({r.output_kind})"),
        ("parameters", f"{r.n_params:,} in {len(r.layers)} layers"),
        ("quantization", ", ".join(r.quantization) or "none (float)"),
        ("batch dependent", "yes: run one row at a time" if r.batch_dependent else "no"),
        ("provider", r.provider),
    ]))
    c.print(render.table("parametric layers", ["#", "kind", "op", "shape", "params", "quant"],
                         [[str(layer["index"]), layer["kind"], layer["op"],
                           "x".join(map(str, layer["shape"])), f"{layer['params']:,}",
                           layer["quantization"] or "-"] for layer in r.layers]))


def _rows(spec: dict) -> str:
    """Where an input's rows are, in words."""
    if spec["batch_axis"] is None:
        return "no batch axis: one value for every row"
    where = f"rows on axis {spec['batch_axis']}"
    return where + (", a recurrent state: zeros if the data has none" if spec["state"] else "")
