"""Report text as the field scores it (R2Gen's normalisation for IU X-ray): lower case, list numbers
dropped, punctuation removed, sentences joined by ' . '. Scores are only comparable across papers when
computed on text cleaned this way.

`XXXX` is the IU de-identification placeholder. References keep it (as in published evaluations); a
generated report must never contain it, and `placeholder_count` lets the evaluation say when one does.
"""
from __future__ import annotations

import re

PLACEHOLDER = re.compile(r"X{2,}")
_REPEATED_DOTS = re.compile(r"\.{2,}")
_LIST_NUMBER = re.compile(r"(^|[.\s])\s*[1-9]\.\s")
# The character set R2Gen strips: . , ? ; * ! % ^ & _ + ( ) and ':' through '[' (after lower-casing
# that range leaves : ; < = > ? @ [), plus ] { } " / \ and '.
_STRIP = re.compile(r"""[.,?;*!%^&_+():;<=>@\[\]{}"/\\']""")


def normalize(report: str) -> str:
    text = _REPEATED_DOTS.sub(".", report)
    text = _LIST_NUMBER.sub(lambda m: ". " if m.group(1) == "." else m.group(1), text)
    sentences = [s for s in (_clean_sentence(s) for s in text.strip().lower().split(". ")) if s]
    return " . ".join(sentences) + " ."


def _clean_sentence(sentence: str) -> str:
    return " ".join(_STRIP.sub("", sentence).split())


def placeholder_count(texts: list[str]) -> int:
    return sum(1 for t in texts if PLACEHOLDER.search(t))


def words(text: str) -> list[str]:
    """Normalised tokens of a free text ('' -> [])."""
    if not text or not text.strip():
        return []
    return [w for w in normalize(text).split() if w]


def informative(indication: str) -> bool:
    """An indication worth retrieving by: some word other than the XXXX placeholder."""
    return any(w not in ("xxxx", ".") for w in words(indication))
