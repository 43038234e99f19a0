"""LoRA fine-tuning of the refiner: from IU train (DFFG drafts -> reference reports) or, continuing the
shipped adapter, from approved edits (draft -> approved text). Batches of padded sequences, AdamW,
linear decay; a wall-clock cap so CPU runs end when promised."""
from __future__ import annotations

import copy
import json
import time
from pathlib import Path
from typing import Any

import torch

from xr.data.case import Case
from xr.findings import FINDINGS
from xr.refine.examples import RefineExample
from xr.refine.prompt import training_ids
from xr.report import compose_report
from xr.train.edits import edit_lines
from xr.train.engine import accelerator, agree, seed_everything, shard

LORA: dict[str, Any] = dict(r=8, lora_alpha=16, lora_dropout=0.05, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"])
# Only the top layers get adapters (12 of SmolLM2-135M's 30): backward stops there, which more than halves
# a CPU training step.
TOP_LAYERS = 12
BASE_NAME = "HuggingFaceTB/SmolLM2-135M-Instruct"  # recorded in the adapter config instead of a local path


def read_edit_examples(path: Path) -> list[RefineExample]:
    """`python -m xr export-edits` lines as examples: indication + draft -> target (approved or corrected) text."""
    return [RefineExample(indication=item.get("indication") or "", draft=item["draft"], target=item["target"], id=f"edit:{n}")
            for n, item in edit_lines(path, ("draft", "target"))]


def _batch(tok, exs: list[RefineExample], max_len: int) -> dict:
    pairs = [training_ids(tok, e, max_len) for e in exs]
    n = max(len(i) for i, _ in pairs)
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    return {"input_ids": torch.tensor([i + [pad] * (n - len(i)) for i, _ in pairs]),
            "attention_mask": torch.tensor([[1] * len(i) + [0] * (n - len(i)) for i, _ in pairs]),
            "labels": torch.tensor([lab + [-100] * (n - len(lab)) for _, lab in pairs])}


def train_lora(examples: list[RefineExample], out_dir: Path, base=None, init_adapter: Path | None = None,
               epochs: int = 1, lr: float = 5e-4, batch_size: int = 4, max_len: int = 256, max_minutes: float = 15.0,
               seed: int = 0, log=print) -> dict:
    """Train (or continue `init_adapter`) and save the adapter to out_dir with train.json (provenance)."""
    from peft import LoraConfig, PeftModel, get_peft_model

    from xr.refine.base import load_base

    rng = seed_everything(seed)
    acc = accelerator()
    model, tok = base or load_base()
    if init_adapter is not None:
        model = PeftModel.from_pretrained(model, str(init_adapter), is_trainable=True)
    else:
        n = model.config.num_hidden_layers
        model = get_peft_model(model, LoraConfig(task_type="CAUSAL_LM", layers_to_transform=list(range(max(0, n - TOP_LAYERS), n)),
                                                 **LORA))
    net = model
    net.train()
    params = [p for p in net.parameters() if p.requires_grad]
    steps = epochs * ((len(shard(list(range(len(examples))), acc)) + batch_size - 1) // batch_size)
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: max(0.0, 1 - s / max(1, steps)))
    model = acc.prepare_model(net)
    t0, step, losses, stopped = time.time(), 0, [], False
    for epoch in range(epochs):
        order = list(range(len(examples)))
        rng.shuffle(order)
        mine = shard(order, acc)
        for s in range(0, len(mine), batch_size):
            batch = _batch(tok, [examples[i] for i in mine[s:s + batch_size]], max_len)
            loss = model(**{k: v.to(acc.device) for k, v in batch.items()}).loss
            acc.backward(loss)
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            sched.step()
            opt.zero_grad()
            step += 1
            losses.append(loss.item())
            if step % 10 == 0 and acc.is_main_process:
                log(f"epoch {epoch + 1} step {step}/{steps} loss {sum(losses[-10:]) / len(losses[-10:]):.3f} "
                    f"{time.time() - t0:.0f}s")
            if agree(acc, time.time() - t0 > max_minutes * 60):
                stopped = True
                break
        if stopped:
            break
    out_dir = Path(out_dir)
    info = {"examples": len(examples), "examples_seen": min(step * batch_size, epochs * len(examples)), "steps": step,
            "epochs": epochs, "lr": lr, "batch_size": batch_size, "max_len": max_len, "lora": {**LORA, "top_layers": TOP_LAYERS},
            "continued_from": Path(init_adapter).name if init_adapter else None, "stopped_by_time_cap": stopped,
            "minutes": round((time.time() - t0) / 60, 2), "first_loss": round(losses[0], 4) if losses else None,
            "last_loss": round(sum(losses[-10:]) / len(losses[-10:]), 4) if losses else None}
    if acc.is_main_process:
        net.peft_config["default"].base_model_name_or_path = BASE_NAME
        net.save_pretrained(out_dir, save_embedding_layers=False)  # else peft looks the base up online
        (out_dir / "train.json").write_text(json.dumps(info, indent=1) + "\n")
    acc.wait_for_everyone()
    return info


def dffg_examples(data, split: str, n: int | None = None, model=None, batch: int = 64,
                  writer=None) -> list[RefineExample]:
    """Text-mode DFFG drafts (greedy, with the shipped model's generation config) of the first n studies of
    `split` ("train" or "val") of an `xr.train.generator.Data`. Train studies retrieve from the other
    training reports (never their own). With a `writer` (wording, thresholds): the drafts as the drafter
    writes them, through the faithful writer; without: the generator's own text (what the shipped adapter
    was trained on)."""
    from xr.decode.beam import greedy
    from xr.decode.faithful import write
    from xr.decode.generation import GenerationConfig
    from xr.decode.model import DFFGModel
    from xr.decode.processing import collate
    from xr.draft.dffg import DFFG_DIR
    from xr.train.generator import as_drafted

    view = copy.copy(data)
    if split == "train":  # reuse val_example on train studies: their neighbours already exclude the case
        view.val, view.val_q, view.val_labels = data.train, data.train_q, data.train_labels
        view.val_nb = [nb[: data.k] for nb in data.train_nb]
    cases: list[Case] = view.val[:n] if n else view.val
    model = model or DFFGModel.from_pretrained(DFFG_DIR)
    model.eval()
    generation = GenerationConfig.from_pretrained(DFFG_DIR)
    allowed = data.vocab.output_mask()
    out = []
    for s in range(0, len(cases), batch):
        idx = list(range(s, min(s + batch, len(cases))))
        exs = [view.val_example(i, "text") for i in idx]
        probabilities = [{f: round(float(p), 3) for f, p in zip(FINDINGS, ex.prompt, strict=False)} for ex in exs]
        stances = [as_drafted(ex, writer[1]) for ex in exs] if writer else []
        with torch.inference_mode():
            seqs = greedy(model, model.encode(collate(exs, data.vocab, model.config)), allowed, generation)
        for k, (i, ex, sq) in enumerate(zip(idx, exs, seqs, strict=False)):
            c = cases[i]
            findings, impression = data.vocab.decode(sq)
            if writer:
                w = write(findings, impression, stances[k], writer[0])
                findings, impression = w.findings, w.impression
            out.append(RefineExample(
                indication=c.indication, draft=compose_report(findings, impression), findings=probabilities[k],
                similar=list(ex.retrieved), target=compose_report(c.findings, c.impression), id=c.id))
    return out


def evaluate_refiner(data, adapter: Path, n: int | None = None, progress=print) -> dict:
    """The drafter's text-mode drafts (greedy, through the faithful writer) of the first n studies of the
    evaluated split, scored unrefined, refined as the app does (a rewrite that changes the findings is
    refused, the draft kept) and as the refiner wrote them before that guard; with the refusal count and
    the latency per report."""
    import numpy as np
    from tqdm import tqdm

    from xr.decode.wording import Wording
    from xr.draft.dffg import DFFG_DIR
    from xr.evaluate.run import evaluate
    from xr.refine.refiner import Refiner
    from xr.report import split_sections
    from xr.thresholds import Thresholds

    exs = dffg_examples(data, "val", n, writer=(Wording.load(DFFG_DIR), Thresholds.load(DFFG_DIR)))
    refiner = Refiner(adapter)
    done = [refiner.refine(ex) for ex in tqdm(exs, desc="refining", unit="report", disable=None)]
    cases = data.val[:len(exs)]

    def scored(texts: list[str], source: str):
        return evaluate(data.dataset, data.split, cases, {ex.id: split_sections(t)[0] for ex, t in zip(exs, texts, strict=True)},
                        source).to_json()

    ms = [r.timings["refine_ms"] for r in done]
    return {"studies": len(exs), "adapter": refiner.name, "refused": sum(r.refused for r in done),
            "latency_ms": {"p50": float(np.percentile(ms, 50)), "p95": float(np.percentile(ms, 95))},
            "rows": {"draft": scored([ex.draft for ex in exs], "DFFG text-mode draft (greedy, faithful writer), unrefined"),
                     "refined": scored([r.text for r in done], "+ refiner, as the app shows it (changed findings refused)"),
                     "unguarded": scored([r.rewrite for r in done], "+ refiner, every rewrite kept (no guard)")}}


def format_refiner_evaluation(result: dict) -> str:
    from xr.evaluate.run import METRICS

    lines = [f"{result['rows']['draft']['dataset']} `{result['rows']['draft']['split']}`, {result['studies']} studies; "
             f"refiner {result['adapter']}; references: FINDINGS. {result['refused']} rewrites refused by the guard "
             f"(they changed the findings); latency p50 {result['latency_ms']['p50']:.0f} ms, "
             f"p95 {result['latency_ms']['p95']:.0f} ms per report.", "",
             "| source | " + " | ".join(METRICS) + " | CE-F1 (micro) | CE-F1 (macro) |", "|---" * (len(METRICS) + 3) + "|"]
    for r in result["rows"].values():
        vals = ["n/a" if r["nlg"][m] is None else f"{r['nlg'][m]:.3f}" for m in METRICS]
        vals += [f"{r['clinical']['micro']['f1']:.3f}", f"{r['clinical']['macro']['f1']:.3f}"]
        lines.append(f"| {r['source']} | " + " | ".join(vals) + " |")
    return "\n".join(lines) + "\n"
