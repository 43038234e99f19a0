"""The DFFG report generator, top to bottom: input tokens -> dynamic fusion -> transformer decoder.

Textual tokens (all optional, per case):
  indication words (+ one token from its MiniLM sentence embedding), one token per finding carrying its
  probability (the finding prompt), and the words of k retrieved similar training reports;
  each with a group embedding (which input it is) and a position embedding, then one encoder layer.
Visual tokens (optional, per view): the 16x16 regional lung-U-Net features of each view, projected to
  d, plus view and 2-D position embeddings.
Fusion: `xr.fuse.DynamicFusion` (per-case, per-region/per-token gates).
Decoder: pre-LN transformer decoder (causal self-attention, cross-attention to the fused memory with
  the gate bias, MLP), tied input/output embeddings. With `prompt_prefix` the finding prompt is also the
  decoder's first 17 positions, and words attend to finding f with an extra log p_f: a finding the prompt
  calls absent is all but invisible to the words. (Through the memory alone the decoder learned to ignore
  the prompt and wrote the normal report for every study.)
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from xr.fuse import DynamicFusion, FusionOutput
from xr.fuse.dynamic import NEG
from xr.modeling import Pretrained


@dataclass
class DFFGConfig:
    vocab_size: int = 1000
    d: int = 256
    n_heads: int = 4
    n_layers: int = 3
    enc_layers: int = 1
    dropout: float = 0.1
    max_target: int = 100
    max_indication: int = 24
    max_retrieved: int = 48
    k: int = 3
    n_findings: int = 17
    region_dim: int = 512
    grid: int = 16
    n_views: int = 2
    sentence_dim: int = 384
    prompt_prefix: bool = False  # the finding prompt also as the decoder's first positions (self-attention)


class Attention(nn.Module):
    def __init__(self, d: int, n_heads: int, dropout: float) -> None:
        super().__init__()
        self.h, self.dropout = n_heads, dropout
        self.q, self.kv, self.o = nn.Linear(d, d), nn.Linear(d, 2 * d), nn.Linear(d, d)

    def forward(self, x: torch.Tensor, mem: torch.Tensor, bias: torch.Tensor | None = None, causal: bool = False):
        B, T, d = x.shape
        q = self.q(x).view(B, T, self.h, d // self.h).transpose(1, 2)
        k, v = self.kv(mem).view(B, mem.shape[1], 2, self.h, d // self.h).permute(2, 0, 3, 1, 4)
        mask = None if bias is None else bias[:, None, None, :].to(q.dtype)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal and mask is None,
                                           dropout_p=self.dropout if self.training else 0.0)
        return self.o(y.transpose(1, 2).reshape(B, T, d))

    def masked(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Self-attention with a (T, T) boolean mask (True = may attend)."""
        B, T, d = x.shape
        q = self.q(x).view(B, T, self.h, d // self.h).transpose(1, 2)
        k, v = self.kv(x).view(B, T, 2, self.h, d // self.h).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=self.dropout if self.training else 0.0)
        return self.o(y.transpose(1, 2).reshape(B, T, d))


class MLP(nn.Sequential):
    def __init__(self, d: int, dropout: float) -> None:
        super().__init__(nn.Linear(d, 4 * d), nn.GELU(), nn.Linear(4 * d, d), nn.Dropout(dropout))


class EncoderBlock(nn.Module):
    def __init__(self, c: DFFGConfig) -> None:
        super().__init__()
        self.ln1, self.attn = nn.LayerNorm(c.d), Attention(c.d, c.n_heads, c.dropout)
        self.ln2, self.mlp = nn.LayerNorm(c.d), MLP(c.d, c.dropout)

    def forward(self, x, bias):
        h = self.ln1(x)
        x = x + self.attn(h, h, bias)
        return x + self.mlp(self.ln2(x))


class DecoderBlock(nn.Module):
    def __init__(self, c: DFFGConfig) -> None:
        super().__init__()
        self.ln1, self.self_attn = nn.LayerNorm(c.d), Attention(c.d, c.n_heads, c.dropout)
        self.ln2, self.cross_attn = nn.LayerNorm(c.d), Attention(c.d, c.n_heads, c.dropout)
        self.ln3, self.mlp = nn.LayerNorm(c.d), MLP(c.d, c.dropout)

    def forward(self, x, memory, bias, self_mask=None):
        h = self.ln1(x)
        x = x + (self.self_attn(h, h, causal=True) if self_mask is None else self.self_attn.masked(h, self_mask))
        x = x + self.cross_attn(self.ln2(x), memory, bias)
        return x + self.mlp(self.ln3(x))


class DFFGModel(Pretrained):
    config_class = DFFGConfig

    def __init__(self, config: DFFGConfig) -> None:
        super().__init__(config)
        c = config
        self.tok = nn.Embedding(c.vocab_size, c.d)
        self.pos = nn.Embedding(max(c.max_target, c.max_retrieved, c.max_indication), c.d)
        # text groups: 0 indication words, 1 indication sentence embedding, 2 finding prompt, 3.. retrieved reports
        self.group = nn.Embedding(3 + c.k, c.d)
        self.sentence = nn.Linear(c.sentence_dim, c.d)
        self.finding = nn.Embedding(c.n_findings, c.d)
        self.finding_pos = nn.Parameter(torch.randn(c.n_findings, c.d) * 0.02)
        self.finding_neg = nn.Parameter(torch.randn(c.n_findings, c.d) * 0.02)
        self.text_encoder = nn.ModuleList(EncoderBlock(c) for _ in range(c.enc_layers))
        self.region_norm = nn.LayerNorm(c.region_dim)
        self.region = nn.Linear(c.region_dim, c.d)
        self.view = nn.Embedding(c.n_views, c.d)
        self.region_pos = nn.Parameter(torch.randn(c.grid * c.grid, c.d) * 0.02)
        self.fusion = DynamicFusion(c.d)
        # case condition: the finding prompt and the indication embedding, added to the memory's first
        # (null) slot and read by every decoder position (a direct path, so the decoder cannot learn to
        # ignore the case: without it training collapsed to one report for every case)
        self.cond = nn.Linear(2 * c.n_findings + 1 + c.sentence_dim, c.d)
        self.cond_in = nn.Linear(c.d, c.d)
        if c.prompt_prefix:
            self.prefix_pos = nn.Parameter(torch.randn(c.n_findings, c.d) * 0.02)
            self.prompt_absent = nn.Parameter(torch.randn(c.d) * 0.02)
        self.drop = nn.Dropout(c.dropout)
        self.blocks = nn.ModuleList(DecoderBlock(c) for _ in range(c.n_layers))
        self.ln_f = nn.LayerNorm(c.d)
        self.apply(self._init)

    @staticmethod
    def _init(m: nn.Module) -> None:
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, std=0.02)
            if isinstance(m, nn.Linear) and m.bias is not None and m.bias.abs().sum() == 0:
                nn.init.zeros_(m.bias)

    # ---- inputs -> fused memory -------------------------------------------------------------------
    def prompt_tokens(self, prompt: torch.Tensor) -> torch.Tensor:
        """(B, F, d): one token per finding, interpolated between its 'present' and 'absent' embeddings
        by the probability in `prompt` (B, F)."""
        p = prompt[..., None]
        return self.finding.weight + p * self.finding_pos + (1 - p) * self.finding_neg

    def text_tokens(self, b: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, Nt, d) text tokens and their (B, Nt) mask, in a fixed layout:
        [indication words | indication embedding | 17 finding tokens | k x retrieved report words]."""
        c = self.config
        ind, ret = b["ind_ids"], b["ret_ids"]  # (B, Li), (B, k, Lr)
        B = ind.shape[0]
        g = self.group.weight
        x_ind = self.tok(ind) + self.pos.weight[: ind.shape[1]] + g[0]
        x_sen = (self.sentence(b["ind_emb"]) + g[1])[:, None]
        x_pr = self.prompt_tokens(b["prompt"]) + g[2]
        Lr = ret.shape[2]
        x_ret = self.tok(ret) + self.pos.weight[:Lr] + g[3: 3 + c.k][None, :, None, :]
        x = torch.cat([x_ind, x_sen, x_pr, x_ret.reshape(B, -1, c.d)], 1)
        mask = torch.cat([ind > 0, b["ind_present"][:, None], b["prompt_present"][:, None].expand(-1, c.n_findings),
                          (ret > 0).reshape(B, -1)], 1)
        x = self.drop(x)
        bias = torch.where(mask, 0.0, NEG)
        for blk in self.text_encoder:
            x = blk(x, bias)
        return x, mask

    def visual_tokens(self, b: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, V*256, d) region tokens and (B, V*256) mask from regions (B, V, 256, 512), view_present (B, V)
        and view_type (B, V) (0 frontal, 1 lateral). V may be 0 (a batch without images)."""
        r, present = b["regions"], b["view_present"]
        B, V, N, _ = r.shape
        x = self.region(self.region_norm(r)) + self.view(b["view_type"])[:, :, None, :] + self.region_pos[None, None, :N]
        return self.drop(x.reshape(B, V * N, self.config.d)), present[:, :, None].expand(-1, -1, N).reshape(B, V * N)

    def encode(self, b: dict) -> FusionOutput:
        t, tm = self.text_tokens(b)
        v, vm = self.visual_tokens(b)
        f = self.fusion(v, vm, t, tm)
        pp, ip = b["prompt_present"][:, None].float(), b["ind_present"][:, None].float()
        cond = self.cond(torch.cat([b["prompt"] * pp, (1 - b["prompt"]) * pp, ip, b["ind_emb"] * ip], -1))
        f.memory = torch.cat([f.memory[:, :1] + cond[:, None], f.memory[:, 1:]], 1)
        if self.config.prompt_prefix:
            present = b["prompt_present"][:, None, None]
            f.prefix = torch.where(present, self.prompt_tokens(b["prompt"]), self.finding.weight + self.prompt_absent) + self.prefix_pos
            f.prefix_bias = torch.where(present[:, :, 0], b["prompt"].clamp(min=1e-3).log(), torch.zeros_like(b["prompt"]))
        return f

    # ---- decoder ----------------------------------------------------------------------------------
    def decode(self, tokens: torch.Tensor, f: FusionOutput) -> torch.Tensor:
        """Logits (B, T, V) for every position of `tokens` (B, T).
        With a prefix (the finding prompt) the prefix positions see each other and every word sees the
        prefix (weighted by `f.prefix_bias`) and the words before it."""
        T = tokens.shape[1]
        x = self.drop(self.tok(tokens) + self.pos.weight[:T] + self.cond_in(f.memory[:, :1]))
        mask = None
        if f.prefix is not None:
            B, P = f.prefix.shape[:2]
            x = torch.cat([self.drop(f.prefix), x], 1)
            i = torch.arange(P + T, device=x.device)
            allowed = (i[None, :] < P) | ((i[:, None] >= P) & (i[None, :] <= i[:, None]))
            mask = torch.where(allowed, 0.0, NEG).to(x.dtype).expand(B, 1, P + T, P + T).clone()
            mask[:, 0, P:, :P] += f.prefix_bias[:, None, :]
        for blk in self.blocks:
            x = blk(x, f.memory, f.bias, mask)
        return self.ln_f(x[:, x.shape[1] - T:]) @ self.tok.weight.T

    # Incremental decoding. The pure tensor functions (`start_tensors`, `embed_step`, `run_cached`,
    # `logits`) are what `xr.build.onnx` turns into graphs, so eager and ONNX decoding share one definition.
    def step(self, token: torch.Tensor, t: int, f: FusionOutput, cache: list[dict]) -> torch.Tensor:
        """The same numbers as `decode`: logits (B, V) of the next token given `token` (B,) at position t.
        `cache` (one dict per layer; start with [{} ...] or `start(f)`) keeps the self-attention keys/values
        (the prefix's first) and the cross-attention keys/values of the memory."""
        if not cache[0]:
            cache[:] = self.start(f)
        x = self.embed_step(token, torch.tensor(t), cache[0]["cond"])
        x, past = self.run_cached(x, mem_bias(f), step_bias(f, cache[0]["k"].shape[2]), *unpack(cache))
        for c, (k, v) in zip(cache, past, strict=False):
            c["k"], c["v"] = k, v
        return self.logits(x)

    def start(self, f: FusionOutput) -> list[dict]:
        cond, cross, past = self.start_tensors(f.memory, f.bias, f.prefix, f.prefix_bias)
        return [{"cond": cond, "ck": ck, "cv": cv, "k": k, "v": v} for (ck, cv), (k, v) in zip(cross, past, strict=False)]

    def start_tensors(self, memory: torch.Tensor, bias: torch.Tensor, prefix: torch.Tensor | None,
                      prefix_bias: torch.Tensor | None):
        """(cond (B, 1, d), cross keys/values per layer, self keys/values per layer): the part of the
        decoder state fixed by the case. The prefix (the finding prompt) attends to itself, unmasked."""
        cross = []
        for blk in self.blocks:
            ck, cv = blk.cross_attn.kv(memory).chunk(2, -1)
            cross.append((_split(ck, blk.cross_attn.h), _split(cv, blk.cross_attn.h)))
        B, d, h = memory.shape[0], self.config.d, self.config.n_heads
        empty = memory.new_zeros(B, h, 0, d // h)
        past = [(empty, empty) for _ in self.blocks]
        if prefix is not None:
            _, past = self.run_cached(prefix, bias[:, None, None, :], None, past, cross)
        return self.cond_in(memory[:, :1]), cross, past

    def embed_step(self, token: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        return self.tok(token)[:, None] + self.pos.weight[t] + cond

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        return (self.ln_f(x) @ self.tok.weight.T)[:, 0]

    def run_cached(self, x: torch.Tensor, memory_bias: torch.Tensor, self_bias: torch.Tensor | None,
                   past: list[tuple[torch.Tensor, torch.Tensor]], cross: list[tuple[torch.Tensor, torch.Tensor]]):
        """x (B, n, d) through the blocks, attending to the cached keys/values and to itself (n = 1, or
        the whole prefix at once). Returns x and the self-attention keys/values extended by x's."""
        new_past = []
        for blk, (pk, pv), (ck, cv) in zip(self.blocks, past, cross, strict=False):
            a = blk.self_attn
            h = blk.ln1(x)
            k, v = a.kv(h).chunk(2, -1)
            k, v = torch.cat([pk, _split(k, a.h)], 2), torch.cat([pv, _split(v, a.h)], 2)
            new_past.append((k, v))
            y = F.scaled_dot_product_attention(_split(a.q(h), a.h), k, v, attn_mask=self_bias)
            x = x + a.o(y.transpose(1, 2).reshape(x.shape))
            a = blk.cross_attn
            y = F.scaled_dot_product_attention(_split(a.q(blk.ln2(x)), a.h), ck, cv, attn_mask=memory_bias)
            x = x + a.o(y.transpose(1, 2).reshape(x.shape))
            x = x + blk.mlp(blk.ln3(x))
        return x, new_past

    def forward(self, b: dict) -> torch.Tensor:
        """Teacher forcing: mean cross-entropy of b["target"] (B, T) (<bos> ... <eos>, 0-padded)."""
        f = self.encode(b)
        tgt = b["target"]
        logits = self.decode(tgt[:, :-1], f)
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), tgt[:, 1:].reshape(-1), ignore_index=0,
                               label_smoothing=0.05)


# ---- key/value cache helpers -------------------------------------------------------------------------
def _split(x: torch.Tensor, h: int) -> torch.Tensor:
    B, T, d = x.shape
    return x.view(B, T, h, d // h).transpose(1, 2)


def mem_bias(f: FusionOutput) -> torch.Tensor:
    return f.bias[:, None, None, :]


def step_bias(f: FusionOutput, cached: int) -> torch.Tensor | None:
    """Self-attention bias of one new word given `cached` keys: the prefix bias, then 0 for the words."""
    if f.prefix is None:
        return None
    P = f.prefix_bias.shape[1]
    return torch.cat([f.prefix_bias, f.prefix_bias.new_zeros(f.prefix_bias.shape[0], cached - P + 1)], 1)[:, None, None, :]


def unpack(cache: list[dict]) -> tuple[list, list]:
    return [(c["k"], c["v"]) for c in cache], [(c["ck"], c["cv"]) for c in cache]


def reorder_cache(cache: list[dict], index: torch.Tensor) -> list[dict]:
    return [{k: v.index_select(0, index) for k, v in c.items()} for c in cache]
