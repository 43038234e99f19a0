"""One way to write a file: whole or not at all, so a reader never picks up half an image, report or export."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

from xr.errors import UserError


class WriteError(UserError):
    """A file that could not be written (disk full, read-only folder)."""


def write_atomic(path: Path, data: bytes) -> Path:
    """Temp file beside the target, fsync, rename. Raises WriteError (one line, file name only) on OSError."""
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        if tmp:
            Path(tmp).unlink(missing_ok=True)
        raise WriteError(f"cannot write {path.name}: {e.strerror or e}") from None
    return path
