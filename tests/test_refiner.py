"""The small-LLM refiner: guardrails, LoRA training and its CLI, the shipped adapter, the /refine endpoint.
The real SmolLM2 base where its behaviour is the point (loads in about a second once converted); a tiny
random Llama with the same tokenizer where only the mechanics are."""
from __future__ import annotations

import copy
import json

import pytest
import torch
from safetensors.torch import load_file

from xr.cli import main
from xr.refine.base import base_dir, load_base
from xr.refine.examples import RefineExample
from xr.refine.guard import MARK, finding_flags
from xr.refine.refiner import REFINER_DIR, Refiner
from xr.train.refiner import train_lora

DRAFT = "FINDINGS: The heart is normal in size. The lungs are clear.\n\nIMPRESSION: No acute disease."


@pytest.fixture(scope="session")
def base():
    torch.set_num_threads(1)
    return load_base()


@pytest.fixture
def tiny(base):
    from transformers import LlamaConfig, LlamaForCausalLM

    _, tok = base
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=512,
                      eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    return LlamaForCausalLM(cfg).eval(), tok


def example(**kw) -> RefineExample:
    return RefineExample(**{"indication": "cough", "draft": DRAFT, "target": DRAFT, **kw})


def test_mark_never_written_even_when_the_model_copies_it(base):
    model, tok = base
    ex = example(draft="FINDINGS: XXXX XXXX XXXX XXXX XXXX XXXX.\n\nIMPRESSION: XXXX XXXX.")
    from xr.refine.prompt import prompt_ids

    ids = torch.tensor([prompt_ids(tok, ex)])
    with torch.inference_mode():
        free = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=30, do_sample=False)
    assert MARK in tok.decode(free[0, ids.shape[1]:])  # unguarded, the base model copies the mark
    out = Refiner(adapter=None, base=base, max_new_tokens=30).refine(ex)
    assert "XX" not in out.text and out.text


def test_length_bounded_and_contradictions_flagged_not_hidden(tiny):
    model, tok = tiny
    r = Refiner(adapter=None, base=tiny, max_new_tokens=6)
    ex = example(findings={"Cardiomegaly": 0.95, "Pneumothorax": 0.01, "No Finding": 0.9})
    out = r.refine(ex)
    assert len(tok(out.text, add_special_tokens=False)["input_ids"]) <= 12  # 6 tokens, re-tokenised
    assert out.text == r.generate(ex)  # the text is returned as generated, not corrected
    assert any(f.startswith("Cardiomegaly: probability 0.95") for f in out.flags)
    assert out.diff.startswith("--- draft\n+++ refined")

    flags = finding_flags("FINDINGS: Large right pneumothorax. Heart size is normal.",
                          {"Pneumothorax": 0.05, "Cardiomegaly": 0.9, "Edema": 0.5})
    assert flags == ["Pneumothorax: stated in the refined text, but its probability is only 0.05",
                     "Cardiomegaly: probability 0.90, but the refined text does not state it"]


def test_lora_step_changes_adapter_and_round_trips(tiny, tmp_path):
    from peft import PeftModel

    model, tok = tiny
    pristine = copy.deepcopy(model)
    exs = [example(target=DRAFT + f" Case {i}.") for i in range(3)]
    info = train_lora(exs, tmp_path / "ad", base=(model, tok), epochs=1, lr=1e-2, batch_size=2)
    assert info["steps"] == 2 and info["continued_from"] is None
    saved = load_file(tmp_path / "ad" / "adapter_model.safetensors")
    assert any(k.endswith("lora_B.weight") and v.abs().sum() > 0 for k, v in saved.items())  # B starts at zero
    assert json.loads((tmp_path / "ad" / "adapter_config.json").read_text())["base_model_name_or_path"].startswith("HuggingFaceTB/")

    loaded = PeftModel.from_pretrained(copy.deepcopy(pristine), str(tmp_path / "ad"))
    state = {k.replace(".default", ""): v for k, v in loaded.state_dict().items() if "lora_" in k}
    assert set(saved) == set(state) and all(torch.equal(saved[k], state[k]) for k in saved)
    ids = torch.tensor([[1, 2, 3, 4]])
    with torch.inference_mode():
        assert not torch.allclose(pristine(ids).logits, Refiner(tmp_path / "ad", base=(pristine, tok)).model(ids).logits)


def test_shipped_adapter_loads_and_refines(base):
    r = Refiner(REFINER_DIR, base=(copy.deepcopy(base[0]), base[1]), max_new_tokens=24)
    out = r.refine(example(findings={"Cardiomegaly": 0.1}))
    assert out.text and MARK not in out.text and r.name.endswith("refiner")


def test_train_refiner_on_edits_cli(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("XR_REFINER_BASE", str(base_dir()))
    edits = tmp_path / "edits.jsonl"
    lines = [{"study": "k1", "images": [], "indication": "fever", "model": "dffg", "model_version": "0.2.0",
              "draft": DRAFT, "target": DRAFT.replace("No acute disease.", "Mild cardiomegaly."),
              "editor_role": "radiologist", "approved_at": "2026-11-22T10:00:00", "tags": []},
             {"study": "k2", "images": [], "indication": "", "model": "dffg", "model_version": "0.2.0",
              "draft": DRAFT, "target": DRAFT, "editor_role": "radiologist", "approved_at": "2026-11-22T10:01:00",
              "tags": []}]
    edits.write_text("".join(json.dumps(x) + "\n" for x in lines))
    assert main(["train-refiner", "--edits", str(edits), "--out", str(tmp_path / "mine"), "--epochs", "1"]) == 0
    info = json.loads((tmp_path / "mine" / "train.json").read_text())
    assert info["continued_from"] == "refiner" and info["examples"] == 2 and info["steps"] == 1
    assert (tmp_path / "mine" / "adapter_model.safetensors").exists()

    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"indication": "x", "target": "FINDINGS: ok"}\n')
    capsys.readouterr()
    assert main(["train-refiner", "--edits", str(bad), "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert err == "error: bad.jsonl line 1: not an export-edits line (needs 'draft' and 'target')\n"


def test_refine_api_endpoint(env, workstation_factory, monkeypatch):
    from gradio_client import Client

    from app import build_app
    from tests.conftest import free_port

    monkeypatch.setenv("XR_REFINER_BASE", str(base_dir()))
    demo = build_app(workstation_factory(env))
    port = free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    try:
        client = Client(f"http://127.0.0.1:{port}/", verbose=False)
        out = client.predict(None, DRAFT, "cough", api_name="/refine")
        assert out["draft"] == DRAFT and out["text"] and MARK not in out["text"]
        assert set(out) >= {"diff", "flags", "timings"} and out["timings"]["refine_ms"] > 0
        with pytest.raises(Exception, match="no study 999"):
            client.predict(999, "", "", api_name="/refine")
    finally:
        demo.close()
