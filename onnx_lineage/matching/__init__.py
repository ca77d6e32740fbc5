"""Parameter correspondence: layer alignment, BatchNorm folding, unit permutation and scale."""

from onnx_lineage.matching.match import Correspondence, MatchResult, match

__all__ = ["Correspondence", "MatchResult", "match"]
