"""Atomic file writes: a report or JSON file is either complete or absent, never partial."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from onnx_lineage.errors import LineageError


def write_atomic(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` to ``path`` through a temporary file in the same folder and a rename."""
    p = Path(path)
    folder = p.parent if str(p.parent) else Path(".")
    if not folder.is_dir():
        raise LineageError(f"{p}: folder {folder} does not exist")
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", dir=folder)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the file the usual mode
        os.replace(tmp, p)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return p
