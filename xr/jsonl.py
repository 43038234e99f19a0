"""JSON-lines files that users hand us (predictions, edits exports): each bad line is one clear reason
with its line number, never a traceback."""
from __future__ import annotations

import json
from pathlib import Path

from xr.errors import UserError
from xr.files import write_atomic


def read_jsonl(path: Path, error: type[UserError], expected: str) -> list[tuple[int, dict]]:
    """(line number, object) of every non-blank line; `expected` completes "line N: expected ..."."""
    try:
        lines = Path(path).read_text().splitlines()
    except OSError as e:
        raise error(f"cannot read {Path(path).name}: {e.strerror or e}") from None
    out = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError:
            item = None
        if not isinstance(item, dict):
            raise error(f"{Path(path).name} line {n}: expected {expected}")
        out.append((n, item))
    return out


def write_jsonl(path: Path, items: list[dict]) -> None:
    """One JSON object a line, the whole file or nothing."""
    write_atomic(Path(path), "".join(json.dumps(item) + "\n" for item in items).encode())
