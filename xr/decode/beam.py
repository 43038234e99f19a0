"""Decoding: batched greedy (for per-epoch validation) and beam search (for drafts), both with
no-repeat n-grams, a minimum and maximum length (a `GenerationConfig`), and an output mask (the
placeholder `xxxx` and the specials can never be produced). `model` is anything with `start` / `step`
(`xr.decode.model.DFFGModel`, `xr.decode.onnx.OnnxGenerator`) and a per-layer cache of dicts."""
from __future__ import annotations

import torch

from xr.decode.generation import GenerationConfig
from xr.decode.vocab import BOS, EOS, SEP

NEG_INF = float("-inf")


def banned_ngram_tokens(seq: list[int], n: int) -> set[int]:
    """Tokens that would complete an n-gram already present in `seq` (the no-repeat rule)."""
    if n <= 0 or len(seq) < n - 1:
        return set()
    prefix = tuple(seq[len(seq) - n + 1:]) if n > 1 else ()
    out = set()
    for i in range(len(seq) - n + 1):
        if tuple(seq[i:i + n - 1]) == prefix:
            out.add(seq[i + n - 1])
    return out


def _step_logprobs(logits: torch.Tensor, seqs: list[list[int]], allowed: torch.Tensor, min_len: int,
                   no_repeat: int) -> torch.Tensor:
    lp = logits.float().log_softmax(-1).masked_fill(~allowed, NEG_INF)
    for r, seq in enumerate(seqs):
        body = len(seq) - 1
        if body < min_len:
            lp[r, EOS] = NEG_INF
        if SEP in seq:
            lp[r, SEP] = NEG_INF
        elif body < min_len:
            lp[r, SEP] = NEG_INF
        banned = banned_ngram_tokens(seq, no_repeat)
        if banned:
            lp[r, list(banned)] = NEG_INF
    return lp


def reorder_cache(cache: list[dict], index: torch.Tensor) -> list[dict]:
    """The cache of the beams `index` (the beams kept, each from the beam it extends)."""
    return [{k: v.index_select(0, index) for k, v in c.items()} for c in cache]


@torch.inference_mode()
def greedy(model, fused, allowed: torch.Tensor, config: GenerationConfig | None = None) -> list[list[int]]:
    """Batched greedy decoding with the key/value cache (`config.num_beams` is not used)."""
    c = config or GenerationConfig()
    max_len, min_len, no_repeat = c.max_new_tokens, c.min_new_tokens, c.no_repeat_ngram_size
    B = fused.memory.shape[0]
    seqs = [[BOS] for _ in range(B)]
    done = [False] * B
    cache = model.start(fused)
    tok = torch.full((B,), BOS, dtype=torch.long)
    for t in range(max_len):
        logits = model.step(tok, t, fused, cache)
        nxt = _step_logprobs(logits, seqs, allowed, min_len, no_repeat).argmax(-1).tolist()
        for i in range(B):
            seqs[i].append(EOS if done[i] else nxt[i])
            done[i] = done[i] or nxt[i] == EOS
        if all(done):
            break
        tok = torch.tensor([s[-1] for s in seqs])
    return [s[1:] for s in seqs]


@torch.inference_mode()
def beam_search(model, fused, allowed: torch.Tensor, config: GenerationConfig | None = None) -> list[int]:
    """One case (fused has batch 1). Returns the best token ids (no <bos>), ranked by
    sum log p / len ** length_penalty."""
    c = config or GenerationConfig()
    beam, max_len, min_len, no_repeat, length_penalty = (c.num_beams, c.max_new_tokens, c.min_new_tokens,
                                                         c.no_repeat_ngram_size, c.length_penalty)
    beams: list[tuple[list[int], float]] = [([BOS], 0.0)]
    finished: list[tuple[list[int], float]] = []
    cache = model.start(fused)
    for t in range(max_len):
        seqs = [s for s, _ in beams]
        n = len(seqs)
        tok = torch.tensor([s[-1] for s in seqs])
        logits = model.step(tok, t, fused.expand(n), cache)
        lp = _step_logprobs(logits, seqs, allowed, min_len, no_repeat)
        total = torch.tensor([sc for _, sc in beams])[:, None] + lp
        flat = total.view(-1)
        k = min(2 * beam, int(torch.isfinite(flat).sum()))
        if k == 0:
            break
        scores, idx = flat.topk(k)
        V = lp.shape[1]
        new, origin = [], []
        for sc, ix in zip(scores.tolist(), idx.tolist(), strict=False):
            b, tk = divmod(ix, V)
            seq = seqs[b] + [tk]
            if tk == EOS:
                finished.append((seq, sc / (len(seq) - 1) ** length_penalty))
            else:
                new.append((seq, sc))
                origin.append(b)
            if len(new) == beam:
                break
        beams = new
        if not beams:
            break
        cache = reorder_cache(cache, torch.tensor(origin))
        best_open = max(sc / (len(s) - 1) ** length_penalty for s, sc in beams)
        if len(finished) >= beam and max(f for _, f in finished) > best_open:
            break
    if not finished:
        finished = [(s, sc / max(len(s) - 1, 1) ** length_penalty) for s, sc in beams]
    best = max(finished, key=lambda x: x[1])[0]
    return best[1:]
