"""Refiner examples from IU X-ray: the DFFG generator's own text-mode drafts (greedy), so the refiner
learns to correct exactly the drafts it will see, with the same inputs the drafter had."""
from __future__ import annotations

import copy
from dataclasses import dataclass, field

import torch

from xr.data.case import Case
from xr.draft.result import compose_report
from xr.findings import FINDINGS


@dataclass
class RefineExample:
    indication: str
    draft: str  # "FINDINGS: ...\n\nIMPRESSION: ..."
    findings: dict[str, float] = field(default_factory=dict)  # finding -> probability the drafter gave
    similar: list[str] = field(default_factory=list)  # retrieved reports
    target: str = ""  # the reference report (training only)
    id: str = ""


def dffg_examples(data, split: str, n: int | None = None, model=None, batch: int = 64) -> list[RefineExample]:
    """Text-mode DFFG drafts of the first n studies of `split` ("train" or "val") of an
    `xr.train_generator.Data`. Train studies retrieve from the other training reports (never their own)."""
    from xr.decode.beam import greedy
    from xr.decode.model import DFFGModel
    from xr.draft.dffg import DFFG_DIR, collate

    view = copy.copy(data)
    if split == "train":  # reuse val_example on train studies: their neighbours already exclude the case
        view.val, view.val_q, view.val_labels = data.train, data.train_q, data.train_labels
        view.val_nb = [nb[: data.k] for nb in data.train_nb]
    cases: list[Case] = view.val[:n] if n else view.val
    model = model or DFFGModel.from_pretrained(DFFG_DIR)
    model.eval()
    allowed = data.vocab.output_mask()
    out = []
    for s in range(0, len(cases), batch):
        idx = list(range(s, min(s + batch, len(cases))))
        exs = [view.val_example(i, "text") for i in idx]
        with torch.inference_mode():
            seqs = greedy(model, model.encode(collate(exs, data.vocab, model.config)), allowed,
                          max_len=100, min_len=12, no_repeat=3)
        for i, ex, sq in zip(idx, exs, seqs, strict=False):
            c = cases[i]
            out.append(RefineExample(
                indication=c.indication, draft=compose_report(*data.vocab.decode(sq)),
                findings={f: round(float(p), 3) for f, p in zip(FINDINGS, ex.prompt, strict=False)},
                similar=list(ex.retrieved), target=compose_report(c.findings, c.impression), id=c.id))
    return out
