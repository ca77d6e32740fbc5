"""Many-model work: data-free screening, exact tests on candidates, the lineage forest, executors."""

from onnx_lineage.zoo.tree import TreeResult, tree

__all__ = ["TreeResult", "tree"]
