"""The edits reader every fine-tuning shares: the lines of a `python -m xr export-edits` file."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from xr.errors import UserError
from xr.jsonl import read_jsonl


class EditsError(UserError):
    pass


def edit_lines(path: Path, needs: tuple[str, ...]) -> list[tuple[int, dict[str, Any]]]:
    """(line number, object) of every line; each must have the text fields `needs` (its "target" not
    empty), and the file at least one line."""
    name, lines = Path(path).name, []
    for n, item in read_jsonl(path, EditsError, "an export-edits JSON object"):
        if not isinstance(item, dict) or any(not isinstance(item.get(k), str) for k in needs):
            raise EditsError(f"{name} line {n}: not an export-edits line (needs {' and '.join(repr(k) for k in needs)})")
        if not item["target"].strip():
            raise EditsError(f"{name} line {n}: the target text is empty")
        lines.append((n, item))
    if not lines:
        raise EditsError(f"{name} holds no approved or corrected studies")
    return lines
