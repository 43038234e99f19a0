"""The DFFG report generator, top to bottom: config, building blocks (attention with its key/value
cache, MLP, encoder and decoder layers), the model (input tokens -> dynamic fusion -> transformer decoder).

Textual tokens (all optional, per case):
  indication words (+ one token from its MiniLM sentence embedding), one token per finding carrying its
  probability (the finding prompt), and the words of k retrieved similar training reports;
  each with a group embedding (which input it is), the words also with a position embedding, then
  `enc_layers` encoder layers (1 in the shipped model).
Visual tokens (optional, per view): the 16x16 regional lung-U-Net features of each view, layer-normed and
  projected to d, plus a view embedding (frontal / lateral) and a learned embedding per grid cell.
Fusion: `xr.fuse.DynamicFusion` (per-case, per-region/per-token gates). The case condition (finding
  prompt and indication embedding) is added to the memory's first (null) slot and, through it, to every
  decoder input.
Decoder: pre-LN transformer decoder (causal self-attention, cross-attention to the fused memory with
  the gate bias, MLP), tied input/output embeddings. With `prompt_prefix` the finding prompt is also the
  decoder's first 17 positions, and words attend to finding f with an extra log p_f: a finding the prompt
  calls absent is all but invisible to the words. (Through the memory alone the decoder learned to ignore
  the prompt and wrote the normal report for every study.)
One `Attention` serves training (the whole sequence), incremental decoding (a key/value cache: `start`,
`step`) and the ONNX export (`start_tensors`, `step_tensors`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import cast

import torch
import torch.nn.functional as F
from torch import nn

from xr.decode.processing import DFFGInputs
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


def _split(x: torch.Tensor, h: int) -> torch.Tensor:
    """(B, T, d) -> (B, h, T, d / h): one slice per head."""
    B, T, d = x.shape
    return x.view(B, T, h, d // h).transpose(1, 2)


class Attention(nn.Module):
    """Multi-head attention with a key/value cache, the one attention of the model.

    Self-attention (`cross=False`) attends to x's own keys/values, after `past` (the cached ones) when given.
    Cross-attention attends to `memory`'s keys/values, or to `past` instead (the memory's, computed once).
    `bias`: an additive mask broadcastable to (B, h, T, keys), or None (with `causal`: each position sees
    itself and those before it). Returns the output (B, T, d) and the keys/values attended to, (B, h, keys, d / h)
    each: the updated cache."""

    def __init__(self, d: int, n_heads: int, dropout: float, cross: bool = False) -> None:
        super().__init__()
        self.h, self.dropout, self.cross = n_heads, dropout, cross
        self.q, self.kv, self.o = nn.Linear(d, d), nn.Linear(d, 2 * d), nn.Linear(d, d)

    def keys_values(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        k, v = self.kv(x).chunk(2, -1)
        return _split(k, self.h), _split(v, self.h)

    def forward(self, x: torch.Tensor, memory: torch.Tensor | None = None, bias: torch.Tensor | None = None,
                past: tuple[torch.Tensor, torch.Tensor] | None = None, causal: bool = False):
        if self.cross:
            if past is None:
                assert memory is not None, "cross-attention needs the memory or its cached keys/values"
                past = self.keys_values(memory)
            k, v = past
        else:
            k, v = self.keys_values(x)
            if past is not None:
                k, v = torch.cat([past[0], k], 2), torch.cat([past[1], v], 2)
        y = F.scaled_dot_product_attention(_split(self.q(x), self.h), k, v, attn_mask=bias,
                                           is_causal=causal and bias is None,
                                           dropout_p=self.dropout if self.training else 0.0)
        return self.o(y.transpose(1, 2).reshape(x.shape)), (k, v)


class MLP(nn.Sequential):
    def __init__(self, d: int, dropout: float) -> None:
        super().__init__(nn.Linear(d, 4 * d), nn.GELU(), nn.Linear(4 * d, d), nn.Dropout(dropout))


class EncoderBlock(nn.Module):
    """Pre-LN transformer encoder layer over the text tokens; `bias` (B, 1, 1, N) removes the absent ones."""

    def __init__(self, c: DFFGConfig) -> None:
        super().__init__()
        self.ln1, self.attn = nn.LayerNorm(c.d), Attention(c.d, c.n_heads, c.dropout)
        self.ln2, self.mlp = nn.LayerNorm(c.d), MLP(c.d, c.dropout)

    def forward(self, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln1(x), bias=bias)[0]
        return x + self.mlp(self.ln2(x))


LayerCache = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]  # self k, self v, cross k, cross v
CACHE = ("k", "v", "ck", "cv")  # their names, in this order (the per-layer dicts of `start`; the ONNX graphs' inputs)


class DecoderBlock(nn.Module):
    """Pre-LN transformer decoder layer: self-attention, cross-attention to the fused memory, MLP."""

    def __init__(self, c: DFFGConfig) -> None:
        super().__init__()
        self.ln1, self.self_attn = nn.LayerNorm(c.d), Attention(c.d, c.n_heads, c.dropout)
        self.ln2, self.cross_attn = nn.LayerNorm(c.d), Attention(c.d, c.n_heads, c.dropout, cross=True)
        self.ln3, self.mlp = nn.LayerNorm(c.d), MLP(c.d, c.dropout)

    def forward(self, x: torch.Tensor, memory: torch.Tensor | None, memory_bias: torch.Tensor,
                self_bias: torch.Tensor | None = None, past: LayerCache | None = None,
                causal: bool = False) -> tuple[torch.Tensor, LayerCache]:
        """`past`: this layer's cache (then `memory` may be None: its keys/values are in it). Returns x and
        the cache extended by x's keys/values."""
        a, (k, v) = self.self_attn(self.ln1(x), bias=self_bias, past=None if past is None else past[:2], causal=causal)
        x = x + a
        a, (ck, cv) = self.cross_attn(self.ln2(x), memory, memory_bias, past=None if past is None else past[2:])
        x = x + a
        return x + self.mlp(self.ln3(x)), (k, v, ck, cv)


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
        self.apply(self._init_weights)

    def _init_weights(self, module: nn.Module) -> None:
        """Linear and embedding weights ~ N(0, 0.02) (biases and layer norms keep PyTorch's defaults).
        `apply` visits a module's children before it, so the fusion module, visited after its Linear
        layers, gets its own gate initialisation back (every gate starts at sigmoid(1), whatever the case)."""
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, std=0.02)
        elif isinstance(module, DynamicFusion):
            module.reset_gates()

    # ---- inputs -> fused memory -------------------------------------------------------------------
    def prompt_tokens(self, prompt: torch.Tensor) -> torch.Tensor:
        """(B, F, d): one token per finding, interpolated between its 'present' and 'absent' embeddings
        by the probability in `prompt` (B, F)."""
        p = prompt[..., None]
        return self.finding.weight + p * self.finding_pos + (1 - p) * self.finding_neg

    def text_tokens(self, b: DFFGInputs) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, Nt, d) text tokens and their (B, Nt) mask, in a fixed layout:
        [indication words | indication embedding | 17 finding tokens | k x retrieved report words]."""
        c = self.config
        ind, ret = b.ind_ids, b.ret_ids  # (B, Li), (B, k, Lr)
        B = ind.shape[0]
        g = self.group.weight
        x_ind = self.tok(ind) + self.pos.weight[: ind.shape[1]] + g[0]
        x_sen = (self.sentence(b.ind_emb) + g[1])[:, None]
        x_pr = self.prompt_tokens(b.prompt) + g[2]
        Lr = ret.shape[2]
        x_ret = self.tok(ret) + self.pos.weight[:Lr] + g[3: 3 + c.k][None, :, None, :]
        x = torch.cat([x_ind, x_sen, x_pr, x_ret.reshape(B, -1, c.d)], 1)
        mask = torch.cat([ind > 0, b.ind_present[:, None], b.prompt_present[:, None].expand(-1, c.n_findings),
                          (ret > 0).reshape(B, -1)], 1)
        x = self.drop(x)
        bias = torch.where(mask, 0.0, NEG)[:, None, None, :]
        for blk in self.text_encoder:
            x = blk(x, bias)
        return x, mask

    def visual_tokens(self, b: DFFGInputs) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, V*256, d) region tokens and (B, V*256) mask from regions (B, V, 256, 512), view_present (B, V)
        and view_type (B, V) (0 frontal, 1 lateral). V may be 0 (a batch without images)."""
        r, present = b.regions, b.view_present
        B, V, N, _ = r.shape
        x = self.region(self.region_norm(r)) + self.view(b.view_type)[:, :, None, :] + self.region_pos[None, None, :N]
        return self.drop(x.reshape(B, V * N, self.config.d)), present[:, :, None].expand(-1, -1, N).reshape(B, V * N)

    def encode(self, b: DFFGInputs) -> FusionOutput:
        t, tm = self.text_tokens(b)
        v, vm = self.visual_tokens(b)
        f = self.fusion(v, vm, t, tm)
        pp, ip = b.prompt_present[:, None].float(), b.ind_present[:, None].float()
        cond = self.cond(torch.cat([b.prompt * pp, (1 - b.prompt) * pp, ip, b.ind_emb * ip], -1))
        f.memory = torch.cat([f.memory[:, :1] + cond[:, None], f.memory[:, 1:]], 1)
        if self.config.prompt_prefix:
            present = b.prompt_present[:, None, None]
            f.prefix = torch.where(present, self.prompt_tokens(b.prompt), self.finding.weight + self.prompt_absent) + self.prefix_pos
            f.prefix_bias = torch.where(present[:, :, 0], b.prompt.clamp(min=1e-3).log(), torch.zeros_like(b.prompt))
        return f

    # ---- decoder ----------------------------------------------------------------------------------
    def blocks_forward(self, x: torch.Tensor, memory: torch.Tensor | None, memory_bias: torch.Tensor,
                       self_bias: torch.Tensor | None = None, past: list[LayerCache] | None = None,
                       causal: bool = False) -> tuple[torch.Tensor, list[LayerCache]]:
        """x (B, n, d) through the decoder blocks: the whole sequence (training, `past` None) or the
        positions after the cached ones (decoding: n = 1, or the whole prefix at once). Returns x and every
        layer's cache extended by x's keys/values."""
        present = []
        for i, blk in enumerate(self.blocks):
            x, layer = blk(x, memory, memory_bias, self_bias, None if past is None else past[i], causal)
            present.append(layer)
        return x, present

    def decode(self, tokens: torch.Tensor, f: FusionOutput) -> torch.Tensor:
        """Logits (B, T, V) for every position of `tokens` (B, T), causal.
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
            assert f.prefix_bias is not None  # set together with the prefix
            mask[:, 0, P:, :P] += f.prefix_bias[:, None, :]
        x, _ = self.blocks_forward(x, f.memory, mem_bias(f), mask, causal=mask is None)
        return self.ln_f(x[:, x.shape[1] - T:]) @ self.tok.weight.T

    def forward(self, b: DFFGInputs) -> torch.Tensor:
        """Teacher forcing: the mean cross-entropy (label smoothing 0.05, padding ignored) of predicting
        b.target (B, T) (<bos> ... <eos>, 0-padded) one word ahead."""
        f = self.encode(b)
        tgt = b.target
        assert tgt is not None, "training batches carry their target"
        logits = self.decode(tgt[:, :-1], f)
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), tgt[:, 1:].reshape(-1), ignore_index=0,
                               label_smoothing=0.05)

    # Incremental decoding (`xr.decode.beam`). The tensor functions `start_tensors` and `step_tensors` are
    # what `xr.build.onnx` turns into graphs, so eager and ONNX decoding share one definition.
    def start(self, f: FusionOutput) -> list[dict]:
        """The cache of a case before its first word: per layer a dict of `CACHE` tensors, and `cond`."""
        cond, past = self.start_tensors(f.memory, f.bias, f.prefix, f.prefix_bias)
        return [{"cond": cond, **dict(zip(CACHE, layer, strict=True))} for layer in past]

    def step(self, token: torch.Tensor, t: int, f: FusionOutput, cache: list[dict]) -> torch.Tensor:
        """The same numbers as `decode`: logits (B, V) of the next token given `token` (B,) at position t.
        `cache` (one dict per layer; start with [{} ...] or `start(f)`) keeps the self-attention keys/values
        (the prefix's first) and the cross-attention keys/values of the memory; updated in place."""
        if not cache[0]:
            cache[:] = self.start(f)
        logits, past = self.step_tensors(token, torch.tensor(t), cache[0]["cond"], mem_bias(f),
                                         step_bias(f, cache[0]["k"].shape[2]), [tuple(c[n] for n in CACHE) for c in cache])
        for c, (k, v, _, _) in zip(cache, past, strict=True):
            c["k"], c["v"] = k, v
        return logits

    def start_tensors(self, memory: torch.Tensor, bias: torch.Tensor, prefix: torch.Tensor | None,
                      prefix_bias: torch.Tensor | None) -> tuple[torch.Tensor, list[LayerCache]]:
        """(cond (B, 1, d), every layer's cache): the part of the decoder state fixed by the case, the
        cross-attention keys/values of the memory and, with a prefix (the finding prompt, which attends to
        itself unmasked), its self-attention keys/values. (`prefix_bias` is used by the words only: `step_bias`.)"""
        B, d, h = memory.shape[0], self.config.d, self.config.n_heads
        empty = memory.new_zeros(B, h, 0, d // h)
        past = [(empty, empty, *cast(DecoderBlock, blk).cross_attn.keys_values(memory)) for blk in self.blocks]
        if prefix is not None:
            _, past = self.blocks_forward(prefix, None, bias[:, None, None, :], None, past)
        return self.cond_in(memory[:, :1]), past

    def step_tensors(self, token: torch.Tensor, t: torch.Tensor, cond: torch.Tensor, memory_bias: torch.Tensor,
                     self_bias: torch.Tensor | None, past: list[LayerCache]) -> tuple[torch.Tensor, list[LayerCache]]:
        """Logits (B, V) of the word after `token` (B,) at position t, and the caches extended by its keys/values."""
        x = self.tok(token)[:, None] + self.pos.weight[t] + cond
        x, past = self.blocks_forward(x, None, memory_bias, self_bias, past)
        return (self.ln_f(x) @ self.tok.weight.T)[:, 0], past


# ---- attention biases of incremental decoding -----------------------------------------------------------
def mem_bias(f: FusionOutput) -> torch.Tensor:
    """(B, 1, 1, M): the cross-attention bias of the memory (the fusion's log gates)."""
    return f.bias[:, None, None, :]


def step_bias(f: FusionOutput, cached: int) -> torch.Tensor | None:
    """Self-attention bias of one new word given `cached` keys: the prefix bias, then 0 for the words."""
    if f.prefix is None or f.prefix_bias is None:
        return None
    P = f.prefix_bias.shape[1]
    return torch.cat([f.prefix_bias, f.prefix_bias.new_zeros(f.prefix_bias.shape[0], cached - P + 1)], 1)[:, None, None, :]
