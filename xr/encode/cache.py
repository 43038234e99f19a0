"""Encoded features on disk, keyed by image content hash and encoder, so that training, indexing and
re-drafting never encode the same image twice."""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import load_file, save

from xr.files import WriteError, write_atomic

log = logging.getLogger(__name__)


class FeatureCache:
    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)

    def _path(self, encoder: str, content_hash: str) -> Path:
        return self.directory / encoder / content_hash[:2] / f"{content_hash}.safetensors"

    def get(self, encoder: str, content_hash: str) -> dict[str, np.ndarray] | None:
        path = self._path(encoder, content_hash)
        try:
            return load_file(str(path))
        except (OSError, ValueError, SafetensorError):  # missing, or left unreadable by a crash: recompute
            return None

    def put(self, encoder: str, content_hash: str, arrays: dict[str, np.ndarray]) -> None:
        """A cache that cannot be written (disk full or read-only) is skipped: the draft goes on, and the
        store reports the disk when it saves."""
        path = self._path(encoder, content_hash)
        try:
            write_atomic(path, save({k: np.ascontiguousarray(v) for k, v in arrays.items()}))
        except WriteError as e:
            log.warning("feature cache not written (%s)", e.reason)
