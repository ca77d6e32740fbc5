"""The built-in example: a small real model family trained on handwritten digits."""

from onnx_lineage.demo.family import FAMILY_ROLES, build_family, mlp_to_onnx

__all__ = ["FAMILY_ROLES", "build_family", "mlp_to_onnx"]
