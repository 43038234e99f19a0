"""Guardrails on the refiner's output: the de-identification mark can never be written, the length is
bounded, a rewrite that states, hedges or drops a finding differently from the draft is refused (the
refiner is there for wording, not for findings), and every finding the text states (or omits) is checked
against the drafter's probabilities. What the guard did is returned as flags for the radiologist; the
text is never changed silently."""
from __future__ import annotations

import re

import torch
from transformers import LogitsProcessor

from xr.evaluate.labeler import POSITIVE, UNCERTAIN, label_report
from xr.findings import FINDINGS

MARK = "XXXX"
LOW, HIGH = 0.2, 0.8


class NoMark(LogitsProcessor):
    """Bans every token whose text holds "XX", and any token starting with "X" right after one ending
    with "X": no two Xs can ever meet, so XXXX (IU's de-identification mark) is unreachable."""

    def __init__(self, tok) -> None:
        texts = [tok.decode([i]) for i in range(len(tok))]
        self.always = torch.tensor([i for i, t in enumerate(texts) if "XX" in t], dtype=torch.long)
        self.starts_x = torch.tensor([i for i, t in enumerate(texts) if t.startswith("X")], dtype=torch.long)
        self.ends_x = torch.zeros(len(texts), dtype=torch.bool)
        self.ends_x[[i for i, t in enumerate(texts) if t.endswith("X")]] = True

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        scores[:, self.always[self.always < scores.shape[1]]] = -float("inf")
        rows = self.ends_x[input_ids[:, -1].clamp(max=len(self.ends_x) - 1)].nonzero().flatten()
        if len(rows):
            scores[rows.unsqueeze(1), self.starts_x[self.starts_x < scores.shape[1]].unsqueeze(0)] = -float("inf")
        return scores


def without_mark(text: str) -> str:
    """The text less its sentences holding the mark: training targets from IU reports must not teach the
    refiner the words it will never be allowed to write."""
    out = []
    for line in text.splitlines():
        m = re.match(r"^((?:[A-Z]+ ?)+:)?\s*(.*)$", line)
        assert m is not None  # both groups are optional: every line matches
        head, body = m.groups()
        kept = " ".join(x for x in re.split(r"(?<=[.!?])\s+", body) if MARK not in x)
        out.append(f"{head} {kept}".strip() if head else kept)
    return "\n".join(out).strip()


def finding_flags(text: str, probabilities: dict[str, float], low: float = LOW, high: float = HIGH) -> list[str]:
    """One line per contradiction between the text (read by the labeler) and the finding probabilities."""
    labels = label_report(text)
    flags = []
    for name, p in probabilities.items():
        if name == "No Finding":
            continue
        stated = labels.get(name) == POSITIVE
        if stated and p < low:
            flags.append(f"{name}: stated in the refined text, but its probability is only {p:.2f}")
        elif not stated and p > high:
            flags.append(f"{name}: probability {p:.2f}, but the refined text does not state it")
    return flags


_READING = {POSITIVE: "states", UNCERTAIN: "hedges"}


def finding_changes(draft: str, text: str) -> list[str]:
    """One line per finding that the rewrite states, hedges or leaves out otherwise than the draft (labeler)."""
    a, b = label_report(draft), label_report(text)
    out = []
    for f in FINDINGS:
        was, now = _READING.get(a.get(f)), _READING.get(b.get(f))  # type: ignore[arg-type]
        if f != "No Finding" and was != now:
            out.append(f"{f}: the draft {was or 'does not state'} it, the rewrite {now or 'does not state'} it")
    return out
