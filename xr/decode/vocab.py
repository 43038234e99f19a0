"""Word vocabulary over R2Gen-normalised report text.

Tokens are the words of `xr.normalize.normalize` plus '.' as the sentence mark. Four specials:
<pad>=0, <bos>=1, <eos>=2, <unk>=3, and <sep>=4 between the findings and the impression. Input text
(indications, retrieved reports) may hold any token, the de-identification mark `xxxx` included; the
*output* side is restricted by `output_mask`: specials other than <eos>/<sep>, `xxxx` and words never
seen in a training report's findings or impression can never be generated.
"""
from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import torch

from xr.normalize import words

PAD, BOS, EOS, UNK, SEP = 0, 1, 2, 3, 4
SPECIALS = ["<pad>", "<bos>", "<eos>", "<unk>", "<sep>"]
PLACEHOLDER_TOKEN = "xxxx"


class Vocabulary:
    def __init__(self, itos: list[str], output: list[bool]) -> None:
        self.itos = list(itos)
        self.stoi = {w: i for i, w in enumerate(self.itos)}
        self.output = list(output)  # may this token be generated?

    @classmethod
    def build(cls, reports: Sequence[str], inputs: Sequence[str] = (), min_freq: int = 3) -> Vocabulary:
        out_counts = Counter(w for r in reports for w in words(r))
        in_counts = Counter(w for t in inputs for w in words(t))
        out_words = sorted(w for w, n in out_counts.items() if n >= min_freq)
        in_words = sorted(w for w, n in in_counts.items() if n >= min_freq and w not in out_counts)
        itos = SPECIALS + out_words + in_words
        allowed = {w for w in out_words if w != PLACEHOLDER_TOKEN}
        output = [w in ("<eos>", "<sep>") or w in allowed for w in itos]
        return cls(itos, output)

    def __len__(self) -> int:
        return len(self.itos)

    def encode(self, text: str, max_len: int | None = None) -> list[int]:
        ids = [self.stoi.get(w, UNK) for w in words(text)]
        return ids[:max_len] if max_len else ids

    def encode_target(self, findings: str, impression: str = "", max_len: int = 120) -> list[int]:
        """<bos> findings <sep> impression <eos>, truncated inside the text, never losing <eos>."""
        f = self.encode(findings)
        i = self.encode(impression)
        body = (f + [SEP] + i)[: max_len - 2]
        return [BOS] + body + [EOS]

    def decode(self, ids: list[int]) -> tuple[str, str]:
        """(findings, impression) as readable text: sentences capitalised, ending with a full stop."""
        toks = [self.itos[i] for i in ids if i not in (PAD, BOS)]
        if "<eos>" in toks:
            toks = toks[: toks.index("<eos>")]
        if "<sep>" in toks:
            k = toks.index("<sep>")
            f, imp = toks[:k], [t for t in toks[k + 1:] if t != "<sep>"]
        else:
            f, imp = toks, []
        return detokenize(f), detokenize(imp)

    def output_mask(self) -> torch.Tensor:
        """(V,) bool: True where the token may be generated."""
        return torch.tensor(self.output, dtype=torch.bool)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps({"itos": self.itos, "output": self.output}) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> Vocabulary:
        d = json.loads(Path(path).read_text())
        return cls(d["itos"], d["output"])


def detokenize(tokens: list[str]) -> str:
    sentences: list[str] = []
    cur: list[str] = []
    for t in tokens:
        if t.startswith("<"):
            continue
        if t == ".":
            if cur:
                sentences.append(" ".join(cur))
            cur = []
        else:
            cur.append(t)
    if cur:
        sentences.append(" ".join(cur))
    return " ".join(s[0].upper() + s[1:] + "." for s in sentences if s)
