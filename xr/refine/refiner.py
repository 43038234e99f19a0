"""Refine a draft with the base LLM + LoRA adapter, under the guardrails of `xr.refine.guard`."""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from xr.config import ASSETS
from xr.refine.examples import RefineExample
from xr.refine.guard import MARK, NoMark, finding_changes, finding_flags
from xr.refine.prompt import prompt_ids
from xr.report import diff_text

REFINER_DIR = ASSETS / "refiner"
REFINE_BY_DEFAULT = False  # off until it measures better than the unrefined drafts (assets/refiner/README.md)
MAX_NEW_TOKENS = 160  # IU reports average about 50 words (70 tokens); long enough, never unbounded


@dataclass
class Refined:
    text: str
    draft: str
    diff: str  # unified diff, draft -> refined
    flags: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)  # milliseconds
    model: str = ""
    refused: bool = False  # the rewrite changed the findings: `text` is the draft
    rewrite: str = ""  # what the refiner wrote, kept or refused

    def to_json(self) -> dict:
        return asdict(self)


class Refiner:
    def __init__(self, adapter: Path | None = REFINER_DIR, base=None, max_new_tokens: int = MAX_NEW_TOKENS) -> None:
        """`base`: (model, tokenizer), else `xr.refine.base.load_base()`; `adapter`: a LoRA folder, or None
        for the base model alone. The adapter is merged: inference needs no peft hooks."""
        from xr.refine.base import RefinerModelError, load_base

        model, self.tok = base or load_base()
        self.name = "base LLM"
        if adapter is not None:
            from peft import PeftModel

            if not (Path(adapter) / "adapter_config.json").exists():
                raise RefinerModelError(f"{Path(adapter).name}: no adapter_config.json (not a LoRA adapter folder)")
            if not (Path(adapter) / "adapter_model.safetensors").exists():  # a .bin adapter would be unpickled
                raise RefinerModelError(f"{Path(adapter).name}: no adapter_model.safetensors (only safetensors are read)")
            model = PeftModel.from_pretrained(model, str(adapter)).merge_and_unload()
            self.name = f"base LLM + LoRA {Path(adapter).name}"
        self.model = model.eval()
        self.max_new_tokens = max_new_tokens
        self.no_mark = NoMark(self.tok)

    def generate(self, ex: RefineExample) -> str:
        from transformers import LogitsProcessorList

        ids = torch.tensor([prompt_ids(self.tok, ex)])
        with torch.inference_mode():
            out = self.model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=self.max_new_tokens,
                                      do_sample=False,
                                      logits_processor=LogitsProcessorList([self.no_mark]),
                                      pad_token_id=self.tok.pad_token_id or self.tok.eos_token_id)
        return self.tok.decode(out[0, ids.shape[1]:], skip_special_tokens=True).strip()

    def refine(self, ex: RefineExample) -> Refined:
        t = time.perf_counter()
        text = self.generate(ex)
        ms = (time.perf_counter() - t) * 1000
        flags, refused, rewrite = [], False, text
        if not text or MARK in text:  # cannot happen under NoMark; kept as the last line of defence
            flags.append("the refiner produced no usable text; the draft is kept")
            text = ex.draft
        changes = finding_changes(ex.draft, text)
        if changes:
            flags.append("rewrite refused, the draft is kept: it changed the findings (" + "; ".join(changes) + ")")
            text, refused = ex.draft, True
        flags += finding_flags(text, ex.findings)
        return Refined(text, ex.draft, diff_text(ex.draft, text, "refined"), flags, {"refine_ms": round(ms, 1)}, self.name,
                       refused, rewrite)
