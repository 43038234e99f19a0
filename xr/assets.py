"""assets/MANIFEST.json: source, licence and sha256 of every shipped file (a folder counts as one entry,
hashed over its sorted file names and contents). `python -m xr manifest` refreshes the hashes."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

from xr.config import ASSETS

MANIFEST = ASSETS / "MANIFEST.json"


def digest(path: Path) -> str:
    h = hashlib.sha256()
    if path.is_dir():
        for p in sorted(path.rglob("*")):
            if p.is_file():
                h.update(p.relative_to(path).as_posix().encode() + b"\0" + p.read_bytes())
    else:
        h.update(path.read_bytes())
    return h.hexdigest()


def refresh(root: Path = ASSETS) -> dict:
    manifest = json.loads((root / "MANIFEST.json").read_text())
    for rel, entry in manifest["files"].items():
        entry["sha256"] = digest(root / rel)
        entry["bytes"] = sum(p.stat().st_size for p in [root / rel, *(root / rel).rglob("*")] if p.is_file())
    (root / "MANIFEST.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest
