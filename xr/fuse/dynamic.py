"""Dynamic fusion: gates computed from a case's own visual and textual tokens decide, token by token,
how much each contributes to the memory the report decoder attends to.

Visual side. Every region v_i (of every view present) reads the case's text with one attention head:
c_i = Attn(v_i, T). Its gate g_i = sigmoid(MLP([v_i, c_i])) mixes the two into the memory token
    m_i = g_i * v_i + (1 - g_i) * c_i
so g_i near 1 means "this region is described from the image", near 0 "from the text" (indication,
finding prompt, similar reports). g over the 16x16 grid of a view is the fusion-weight heatmap.

Text side. Every text token t_j gets h_j = sigmoid(MLP([t_j, mean(T), mean(V), has_image])): how much the
decoder may attend to it. It enters cross-attention as an additive log(h_j) bias, so the attention mass
on t_j is scaled by h_j (relative to the always-present null token). With no image, the text gates
are still computed per case: they weigh the indication, the finding prompt and each retrieved report.

Modes (set `mode`; for ablations at inference): "dynamic" (learned gates), "fixed" (every gate 0.5),
"visual" (text removed from the memory, regions kept as they are: g=1, h=0), "text" (visual tokens
removed: memory = text only).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

FUSION_MODES = ("dynamic", "fixed", "visual", "text")
NEG = -1e4  # additive bias that removes a memory token (finite so an all-masked row cannot give NaN)


@dataclass
class FusionOutput:
    memory: torch.Tensor  # (B, 1 + Nv + Nt, d): [null, fused visual regions, text tokens]
    bias: torch.Tensor  # (B, 1 + Nv + Nt) additive attention bias (log gate; NEG where absent)
    visual_gate: torch.Tensor  # (B, Nv) g in 0..1 (0 where the region is absent)
    text_gate: torch.Tensor  # (B, Nt) h in 0..1 (0 where the token is absent)
    prefix: torch.Tensor | None = None  # (B, P, d) decoder prefix (the finding prompt), set by the model
    prefix_bias: torch.Tensor | None = None  # (B, P) additive bias of the words' attention to the prefix

    def expand(self, n: int) -> FusionOutput:
        """The same case n times (for n beams)."""
        def e(x):
            return None if x is None else x.expand(n, *x.shape[1:])
        return FusionOutput(e(self.memory), e(self.bias), self.visual_gate, self.text_gate, e(self.prefix), e(self.prefix_bias))


def _gate_mlp(d_in: int, d: int) -> nn.Sequential:
    mlp = nn.Sequential(nn.Linear(d_in, d), nn.GELU(), nn.Linear(d, 1))
    _init_gate(mlp)
    return mlp


def _init_gate(mlp: nn.Sequential) -> None:
    """Every gate starts at the same value whatever its inputs, mostly open (sigmoid(1) = 0.73)."""
    out = mlp[2]
    assert isinstance(out, nn.Linear)
    nn.init.zeros_(out.weight)
    nn.init.constant_(out.bias, 1.0)


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    m = mask.unsqueeze(-1).to(x.dtype)
    return (x * m).sum(1) / m.sum(1).clamp(min=1.0)


class DynamicFusion(nn.Module):
    def __init__(self, d: int) -> None:
        super().__init__()
        self.d = d
        self.q, self.k, self.v = nn.Linear(d, d), nn.Linear(d, d), nn.Linear(d, d)
        self.visual_gate = _gate_mlp(2 * d, d)
        self.text_gate = _gate_mlp(3 * d + 1, d)
        self.null = nn.Parameter(torch.zeros(1, 1, d))
        self.norm = nn.LayerNorm(d)
        self.mode = "dynamic"

    def reset_gates(self, text: bool = True) -> None:
        """The gate heads' initialisation again (for a model whose weight initialisation visits every
        Linear layer: `xr.decode.model.DFFGModel._init_weights`); `text=False`: the visual one alone (a
        model about to see films for the first time, whose visual gate had almost none to learn from)."""
        _init_gate(self.visual_gate)
        if text:
            _init_gate(self.text_gate)

    def forward(self, visual: torch.Tensor, visual_mask: torch.Tensor,
                text: torch.Tensor, text_mask: torch.Tensor) -> FusionOutput:
        """visual (B, Nv, d) with mask (B, Nv) bool; text (B, Nt, d) with mask (B, Nt) bool."""
        B = text.shape[0]
        if self.mode == "text":
            visual_mask = torch.zeros_like(visual_mask)
        # visual side: each region reads the text
        att = self.q(visual) @ self.k(text).transpose(1, 2) / math.sqrt(self.d)  # (B, Nv, Nt)
        att = att.masked_fill(~text_mask[:, None, :], NEG).softmax(-1)
        ctx = (att @ self.v(text)) * text_mask.any(1)[:, None, None].to(text.dtype)  # zero if no text at all
        g = torch.sigmoid(self.visual_gate(torch.cat([visual, ctx], -1))).squeeze(-1)
        if self.mode == "fixed":
            g = torch.full_like(g, 0.5)
        elif self.mode == "visual":
            g = torch.ones_like(g)
        fused = g.unsqueeze(-1) * visual + (1 - g.unsqueeze(-1)) * ctx
        # text side: each token weighed against the whole case
        has_image = visual_mask.any(1, keepdim=True).to(text.dtype)
        summary = torch.cat([masked_mean(text, text_mask), masked_mean(visual, visual_mask), has_image], -1)
        h = torch.sigmoid(self.text_gate(torch.cat([text, summary[:, None, :].expand(-1, text.shape[1], -1)], -1))).squeeze(-1)
        if self.mode == "fixed":
            h = torch.full_like(h, 0.5)
        elif self.mode == "visual":
            h = torch.zeros_like(h)
        memory = self.norm(torch.cat([self.null.expand(B, -1, -1), fused, text], 1))
        vis_bias = torch.where(visual_mask, torch.zeros_like(g), torch.full_like(g, NEG))
        txt_bias = torch.where(text_mask & (h > 0), torch.log(h.clamp(min=1e-4)), torch.full_like(h, NEG))
        bias = torch.cat([torch.zeros(B, 1, dtype=text.dtype, device=text.device), vis_bias, txt_bias], 1)
        return FusionOutput(memory, bias, g * visual_mask, h * text_mask)
