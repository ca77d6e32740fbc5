"""JSON result files: every script writes one document (``--json FILE``) and reads it back
(``--from FILE``) to print its tables again without running.

The format is the scripts' own (their keys); this module fixes only the encoding: indented by
one space, numpy scalars and other numbers written as floats, and, where a script's files always
had one, a final newline.
"""

from __future__ import annotations

import json
from pathlib import Path


def dumps(data) -> str:
    """``data`` as the result files write it: indent 1, non-JSON numbers through ``float``."""
    return json.dumps(data, indent=1, default=float)


def write_json(path: Path, data, newline: bool = False) -> None:
    """Write ``data`` to ``path`` (:func:`dumps`), with a final newline if ``newline``."""
    path.write_text(dumps(data) + ("\n" if newline else ""))


def read_json(path: Path):
    """The document of an earlier result file."""
    return json.loads(path.read_text())
