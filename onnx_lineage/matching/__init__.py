"""Parameter correspondence: layer alignment, BatchNorm folding, unit permutation and scale."""

from onnx_lineage.matching.match import MatchResult, match

__all__ = ["MatchResult", "match"]
