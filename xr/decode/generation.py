"""How the DFFG generator decodes: `generation_config.json` beside the weights (as Hugging Face keeps
it), read by the drafter, training/evaluation, the refiner's training drafts and the ONNX export."""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

GENERATION_CONFIG = "generation_config.json"


@dataclass(frozen=True)
class GenerationConfig:
    num_beams: int = 3  # beam search width (greedy decoding ignores it)
    max_new_tokens: int = 100  # decoding steps, the final <eos> included
    min_new_tokens: int = 12  # words before <eos> (and the findings/impression separator) may come
    no_repeat_ngram_size: int = 3  # no n-gram of this size twice (0: no rule)
    length_penalty: float = 1.0  # beams ranked by sum log p / length ** length_penalty

    def save_pretrained(self, directory: str | Path) -> None:
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        (d / GENERATION_CONFIG).write_text(json.dumps(dataclasses.asdict(self), indent=2) + "\n")

    @classmethod
    def from_pretrained(cls, directory: str | Path) -> GenerationConfig:
        """The folder's generation_config.json; the defaults above where it has none (a fine-tuned copy
        written before the file existed)."""
        path = Path(directory) / GENERATION_CONFIG
        return cls(**json.loads(path.read_text())) if path.exists() else cls()

    def replace(self, **changes) -> GenerationConfig:
        return dataclasses.replace(self, **changes)
