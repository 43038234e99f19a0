"""One way to write a file: whole or not at all, so a reader never picks up half an image, report or export."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from types import TracebackType
from typing import Literal

from xr.errors import UserError


class WriteError(UserError):
    """A file that could not be written (disk full, read-only folder). `reason` is the system's words
    alone ('No space left on device'), for a caller that names the file its own way."""

    def __init__(self, message: str, reason: str = "") -> None:
        super().__init__(message)
        self.reason = reason or message


def discard(path: Path) -> None:
    """Remove a file written for something that then failed; a file that cannot be removed (the disk went
    read-only) stays, and the original error is the one reported."""
    try:
        Path(path).unlink(missing_ok=True)
    except OSError:
        pass


def _sync_folder(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: Path, data: bytes) -> Path:
    """Temp file beside the target, fsync, rename, fsync of the folder. Raises WriteError (one line, file name only) on OSError;
    the temp file is removed whatever stops the write."""
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
        tmp = None
        _sync_folder(path.parent)  # the rename itself reaches the disk, not only the file's bytes
    except OSError as e:
        reason = e.strerror or str(e)
        raise WriteError(f"cannot write {path.name}: {reason}", reason) from None
    finally:
        if tmp:
            discard(Path(tmp))
    return path


class Provisional:
    """Files written inside a database transaction that logs them, kept only if that transaction commits:

        with Provisional() as files, transaction(url) as session:
            ...
            write_atomic(files.add(path), data)

    When the block fails after the write (the commit, on a full or read-only database disk), a file that
    was not there before is removed again. One that was (an earlier export by the same name) has been
    replaced by then, and stays."""

    def __init__(self) -> None:
        self._new: list[Path] = []

    def add(self, path: Path) -> Path:
        path = Path(path)
        if not path.exists():
            self._new.append(path)
        return path

    def __enter__(self) -> Provisional:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> Literal[False]:
        if exc_type is not None:
            for path in self._new:
                discard(path)
        return False
