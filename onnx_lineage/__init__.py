"""onnx-lineage: is model B derived from model A, and how close are they?

The public API; every analysis returns a result object with ``to_dict()``. Names are imported on
first use, so that ``import onnx_lineage`` (and the CLI's ``--help``) stays fast.

>>> from onnx_lineage import determine, closeness
>>> determine("parent.onnx", "child.onnx").verdict          # doctest: +SKIP
'related'
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_EXPORTS = {
    "closeness": "onnx_lineage.analyses.closeness", "ClosenessResult": "onnx_lineage.analyses.closeness",
    "determine": "onnx_lineage.analyses.determination",
    "DeterminationResult": "onnx_lineage.analyses.determination",
    "Dataset": "onnx_lineage.data", "digits": "onnx_lineage.data", "load_data": "onnx_lineage.data",
    "LineageError": "onnx_lineage.errors", "ModelError": "onnx_lineage.errors",
    "DataError": "onnx_lineage.errors",
    "match": "onnx_lineage.matching", "MatchResult": "onnx_lineage.matching",
    "inspect_model": "onnx_lineage.model.inspect", "InspectResult": "onnx_lineage.model.inspect",
    "load_model": "onnx_lineage.model.loading", "LoadedModel": "onnx_lineage.model.loading",
    "analyze": "onnx_lineage.analysis", "AnalysisResult": "onnx_lineage.analysis",
    "tree": "onnx_lineage.zoo", "TreeResult": "onnx_lineage.zoo",
    "attribute": "onnx_lineage.analyses.attribution",
    "AttributionResult": "onnx_lineage.analyses.attribution",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'onnx_lineage' has no attribute {name!r}")


def __dir__():
    return __all__
