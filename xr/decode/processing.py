"""The DFFG generator's input pipeline: one case (`Example`) -> the model's batch tensors (`collate`,
a `DFFGInputs`), shared by training, drafting and the ONNX export."""
from __future__ import annotations

from dataclasses import dataclass, field, fields, replace

import numpy as np
import torch

from xr.decode.vocab import Vocabulary
from xr.views import VIEWS


@dataclass
class Example:
    indication: str = ""
    indication_emb: np.ndarray | None = None  # (384,) or None
    prompt: np.ndarray | None = None  # (17,) probabilities or None
    retrieved: list[str] = field(default_factory=list)  # findings texts of similar cases
    regions: list[np.ndarray] = field(default_factory=list)  # (16, 16, 512) per view
    views: list[str] = field(default_factory=list)  # xr.views.FRONTAL / LATERAL, one per grid of `regions`
    target: list[int] | None = None


@dataclass
class DFFGInputs:
    """A batch of B cases as `DFFGModel` reads it (every field but `target` is also an input of the ONNX
    encode graph, under its field name: `ENCODE_INPUTS`)."""
    ind_ids: torch.Tensor  # (B, Li) long, indication word ids, 0-padded
    ind_emb: torch.Tensor  # (B, 384) float, MiniLM embedding of the indication (zeros where none)
    ind_present: torch.Tensor  # (B,) bool
    prompt: torch.Tensor  # (B, 17) float, finding probabilities (zeros where none)
    prompt_present: torch.Tensor  # (B,) bool
    ret_ids: torch.Tensor  # (B, k, Lr) long, word ids of the k retrieved reports, 0-padded
    regions: torch.Tensor  # (B, V, 256, 512) float, regional features per view (V may be 0)
    view_present: torch.Tensor  # (B, V) bool
    view_type: torch.Tensor  # (B, V) long, the view's index in xr.views.VIEWS (0 frontal, 1 lateral)
    target: torch.Tensor | None = None  # (B, T) long, <bos> ... <eos>, 0-padded (training)

    def to(self, device: torch.device | str) -> DFFGInputs:
        """The batch on `device` (the model's: a GPU when training runs on one)."""
        return replace(self, **{n: getattr(self, n).to(device) for n in ENCODE_INPUTS},
                       target=None if self.target is None else self.target.to(device))

    def encode_inputs(self) -> tuple[torch.Tensor, ...]:
        """The tensors of `ENCODE_INPUTS`, in that order."""
        return tuple(getattr(self, n) for n in ENCODE_INPUTS)


ENCODE_INPUTS = tuple(f.name for f in fields(DFFGInputs) if f.name != "target")


def collate(examples: list[Example], vocab: Vocabulary, config) -> DFFGInputs:
    c = config
    B = len(examples)
    ind = [vocab.encode(e.indication, c.max_indication) for e in examples]
    Li = max(1, max(len(x) for x in ind))
    ind_ids = torch.zeros(B, Li, dtype=torch.long)
    for i, x in enumerate(ind):
        ind_ids[i, :len(x)] = torch.tensor(x, dtype=torch.long)
    ind_emb = torch.zeros(B, c.sentence_dim)
    ind_present = torch.zeros(B, dtype=torch.bool)
    prompt = torch.zeros(B, c.n_findings)
    prompt_present = torch.zeros(B, dtype=torch.bool)
    for i, e in enumerate(examples):
        if e.indication_emb is not None:
            ind_emb[i] = torch.from_numpy(np.asarray(e.indication_emb, np.float32))
            ind_present[i] = True
        if e.prompt is not None:
            prompt[i] = torch.from_numpy(np.asarray(e.prompt, np.float32))
            prompt_present[i] = True
    ret = [[vocab.encode(t, c.max_retrieved) for t in e.retrieved[: c.k]] for e in examples]
    Lr = max([1] + [len(x) for r in ret for x in r])
    ret_ids = torch.zeros(B, c.k, Lr, dtype=torch.long)
    for i, r in enumerate(ret):
        for j, x in enumerate(r):
            ret_ids[i, j, :len(x)] = torch.tensor(x, dtype=torch.long)
    V = max(len(e.regions) for e in examples)
    N = c.grid * c.grid
    regions = torch.zeros(B, V, N, c.region_dim)
    view_present = torch.zeros(B, V, dtype=torch.bool)
    view_type = torch.zeros(B, V, dtype=torch.long)
    for i, e in enumerate(examples):
        for j, (grid, view) in enumerate(zip(e.regions, e.views, strict=False)):
            regions[i, j] = torch.from_numpy(np.asarray(grid, np.float32).reshape(N, c.region_dim))
            view_present[i, j] = True
            view_type[i, j] = VIEWS.index(view)
    tgt = None
    targets = [e.target for e in examples]
    if targets[0] is not None:
        assert all(t is not None for t in targets), "a batch has targets for all its examples or for none"
        T = max(len(t) for t in targets if t is not None)
        tgt = torch.zeros(B, T, dtype=torch.long)
        for i, t in enumerate(targets):
            if t is not None:
                tgt[i, :len(t)] = torch.tensor(t, dtype=torch.long)
    return DFFGInputs(ind_ids=ind_ids, ind_emb=ind_emb, ind_present=ind_present, prompt=prompt,
                      prompt_present=prompt_present, ret_ids=ret_ids, regions=regions, view_present=view_present,
                      view_type=view_type, target=tgt)
