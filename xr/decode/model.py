"""The DFFG report generator, top to bottom: input tokens -> dynamic fusion -> transformer decoder.

Textual tokens (all optional, per case):
  indication words (+ one token from its MiniLM sentence embedding), one token per finding carrying its
  probability (the finding prompt), and the words of k retrieved similar training reports;
  each with a group embedding (which input it is) and a position embedding, then one encoder layer.
Visual tokens (optional, per view): the 16x16 regional lung-U-Net features of each view, projected to
  d, plus view and 2-D position embeddings.
Fusion: `xr.fuse.DynamicFusion` (per-case, per-region/per-token gates).
Decoder: pre-LN transformer decoder (causal self-attention, cross-attention to the fused memory with
  the gate bias, MLP), tied input/output embeddings.
"""
from __future__ import annotations

import math
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
    # fixes for the ignored finding prompt (defaults = the original architecture, so assets/dffg loads):
    text_gate_floor: float = 0.0  # floor on the text-token gates (see xr.fuse.dynamic)
    aux_label_weight: float = 0.0  # > 0: a label head on the decoder states, BCE against the reference labels


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


class MLP(nn.Sequential):
    def __init__(self, d: int, dropout: float) -> None:
        super().__init__(nn.Linear(d, 4 * d), nn.GELU(), nn.Linear(4 * d, d), nn.Dropout(dropout))


class EncoderBlock(nn.Module):
    def __init__(self, c: DFFGConfig) -> None:
        super().__init__()
        self.ln1, self.attn, self.ln2, self.mlp = nn.LayerNorm(c.d), Attention(c.d, c.n_heads, c.dropout), nn.LayerNorm(c.d), MLP(c.d, c.dropout)

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

    def forward(self, x, memory, bias):
        h = self.ln1(x)
        x = x + self.self_attn(h, h, causal=True)
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
        self.fusion = DynamicFusion(c.d, text_gate_floor=c.text_gate_floor)
        # case condition: the finding prompt and the indication embedding, added to the memory's first
        # (null) slot and read by every decoder position (a direct path, so the decoder cannot learn to
        # ignore the case: without it training collapsed to one report for every case)
        self.cond = nn.Linear(2 * c.n_findings + 1 + c.sentence_dim, c.d)
        self.cond_in = nn.Linear(c.d, c.d)
        self.drop = nn.Dropout(c.dropout)
        self.blocks = nn.ModuleList(DecoderBlock(c) for _ in range(c.n_layers))
        self.ln_f = nn.LayerNorm(c.d)
        if c.aux_label_weight > 0:  # training-only auxiliary head (forces the decoder states to carry the labels)
            self.label_head = nn.Linear(c.d, c.n_findings)
        self.apply(self._init)

    @staticmethod
    def _init(m: nn.Module) -> None:
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, std=0.02)
            if isinstance(m, nn.Linear) and m.bias is not None and m.bias.abs().sum() == 0:
                nn.init.zeros_(m.bias)

    # ---- inputs -> fused memory -------------------------------------------------------------------
    def text_tokens(self, b: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, Nt, d) text tokens and their (B, Nt) mask, in a fixed layout:
        [indication words | indication embedding | 17 finding tokens | k x retrieved report words]."""
        c = self.config
        ind, ret = b["ind_ids"], b["ret_ids"]  # (B, Li), (B, k, Lr)
        B = ind.shape[0]
        g = self.group.weight
        x_ind = self.tok(ind) + self.pos.weight[: ind.shape[1]] + g[0]
        x_sen = (self.sentence(b["ind_emb"]) + g[1])[:, None]
        p = b["prompt"][..., None]  # (B, F, 1)
        x_pr = self.finding.weight + p * self.finding_pos + (1 - p) * self.finding_neg + g[2]
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
        return f

    # ---- decoder ----------------------------------------------------------------------------------
    def decode(self, tokens: torch.Tensor, memory: torch.Tensor, bias: torch.Tensor,
               return_hidden: bool = False):
        """Logits (B, T, V) for every position of `tokens` (B, T) (and the final states if return_hidden)."""
        T = tokens.shape[1]
        x = self.drop(self.tok(tokens) + self.pos.weight[:T] + self.cond_in(memory[:, :1]))
        for blk in self.blocks:
            x = blk(x, memory, bias)
        h = self.ln_f(x)
        logits = h @ self.tok.weight.T
        return (logits, h) if return_hidden else logits

    def forward(self, b: dict) -> torch.Tensor:
        """Teacher forcing: mean cross-entropy of b["target"] (B, T) (<bos> ... <eos>, 0-padded)."""
        f = self.encode(b)
        tgt = b["target"]
        logits, h = self.decode(tgt[:, :-1], f.memory, f.bias, return_hidden=True)
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), tgt[:, 1:].reshape(-1), ignore_index=0,
                               label_smoothing=0.05)
        if self.config.aux_label_weight > 0 and "labels" in b:
            # from the first position only (it has seen <bos> and the memory, not the target's words)
            loss = loss + self.config.aux_label_weight * F.binary_cross_entropy_with_logits(
                self.label_head(h[:, 0]), b["labels"].to(h.dtype))
        return loss


# ---- incremental decoding (key/value cache): same numbers as `decode`, one token at a time ----------
def _split(x: torch.Tensor, h: int) -> torch.Tensor:
    B, T, d = x.shape
    return x.view(B, T, h, d // h).transpose(1, 2)


def decode_step(model: DFFGModel, token: torch.Tensor, t: int, memory: torch.Tensor, bias: torch.Tensor,
                cache: list[dict]) -> torch.Tensor:
    """Logits (B, V) of the next token given `token` (B,) at position t; `cache` (one dict per layer,
    start with [{} ...]) keeps self-attention keys/values and the cross-attention keys/values of `memory`."""
    x = model.tok(token)[:, None] + model.pos.weight[t] + model.cond_in(memory[:, :1])
    mask = bias[:, None, None, :].to(x.dtype)
    for blk, c in zip(model.blocks, cache):
        a = blk.self_attn
        h = blk.ln1(x)
        k, v = a.kv(h).chunk(2, -1)
        c["k"] = torch.cat([c["k"], _split(k, a.h)], 2) if "k" in c else _split(k, a.h)
        c["v"] = torch.cat([c["v"], _split(v, a.h)], 2) if "v" in c else _split(v, a.h)
        y = F.scaled_dot_product_attention(_split(a.q(h), a.h), c["k"], c["v"])
        x = x + a.o(y.transpose(1, 2).reshape(x.shape))
        a = blk.cross_attn
        if "ck" not in c:
            ck, cv = a.kv(memory).chunk(2, -1)
            c["ck"], c["cv"] = _split(ck, a.h), _split(cv, a.h)
        y = F.scaled_dot_product_attention(_split(a.q(blk.ln2(x)), a.h), c["ck"], c["cv"], attn_mask=mask)
        x = x + a.o(y.transpose(1, 2).reshape(x.shape))
        x = x + blk.mlp(blk.ln3(x))
    return (model.ln_f(x) @ model.tok.weight.T)[:, 0]


def reorder_cache(cache: list[dict], index: torch.Tensor) -> list[dict]:
    return [{k: v.index_select(0, index) for k, v in c.items()} for c in cache]
