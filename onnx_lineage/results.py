"""Result objects: frozen dataclasses serialised in one place.

Every analysis returns a frozen dataclass deriving from :class:`Result`. ``to_dict()`` turns it into
plain JSON-ready data (numpy scalars and arrays become Python numbers and lists, NaN becomes None),
so the CLI, the JSON output and the reports all render the same thing.
"""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Any

import numpy as np

SCHEMA_VERSION = 2


def to_jsonable(value: Any) -> Any:
    """Convert a result field to plain JSON data (recursively)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)
                if not f.name.startswith("_")}
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return to_jsonable(value.tolist())
    if isinstance(value, (np.bool_,)):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, (float, np.floating)):
        f = float(value)
        return None if not math.isfinite(f) else f
    return value


@dataclasses.dataclass(frozen=True)
class Result:
    """Base of all result objects."""

    def to_dict(self) -> dict:
        """Plain JSON-ready dict of the result, with ``schema_version``."""
        d = to_jsonable(self)
        d["schema_version"] = SCHEMA_VERSION
        return d

    def to_json(self, indent: int | None = 2) -> str:
        """The result as one JSON document."""
        return json.dumps(self.to_dict(), indent=indent, allow_nan=False)
