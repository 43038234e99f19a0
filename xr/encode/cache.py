"""Encoded features on disk, keyed by image content hash and encoder, so that training, indexing and
re-drafting never encode the same image twice."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import load_file, save_file


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
        path = self._path(encoder, content_hash)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        os.close(fd)
        try:
            save_file({k: np.ascontiguousarray(v) for k, v in arrays.items()}, tmp)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
