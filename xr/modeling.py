"""HF-style persistence for our own models: a folder with config.json and model.safetensors.

Models subclass `Pretrained` and declare a dataclass `config_class`; weights always load strictly so a
renamed layer fails loudly instead of leaving random weights behind.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, ClassVar

import torch
from safetensors.torch import load_file, save_file
from torch import nn


class Pretrained(nn.Module):
    config_class: ClassVar[type]
    weights_name: ClassVar[str] = "model.safetensors"

    def __init__(self, config: Any) -> None:
        super().__init__()
        self.config = config

    def save_pretrained(self, directory: str | Path, dtype: torch.dtype | None = None) -> None:
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        state = {k: (v.to(dtype) if dtype is not None and v.is_floating_point() else v).contiguous()
                 for k, v in self.state_dict().items()}
        save_file(state, str(d / self.weights_name), metadata={"format": "pt"})
        (d / "config.json").write_text(json.dumps(dataclasses.asdict(self.config), indent=2) + "\n")

    @classmethod
    def from_pretrained(cls, directory: str | Path, dtype: torch.dtype = torch.float32):
        d = Path(directory)
        config = cls.config_class(**json.loads((d / "config.json").read_text()))
        model = cls(config)
        state = load_file(str(d / cls.weights_name))
        model.load_state_dict({k: v.to(dtype) if v.is_floating_point() else v for k, v in state.items()}, strict=True)
        return model.to(dtype).eval()
