"""No code path unpickles anything: every model, cache and upload is read by a format that holds data
only (safetensors, JSON, PNG/JPEG/DICOM, ONNX protobuf, GGUF). A static scan of the product's source,
so a new `torch.load` or `pickle.loads` fails here before it ships. (multiprocessing and Ray pickle our
own objects between our own processes; no user file goes through them.)"""
from __future__ import annotations

import ast

import pytest

from xr.config import ROOT

SOURCES = sorted([ROOT / "app.py", *(ROOT / "xr").rglob("*.py"), *(ROOT / "db").rglob("*.py")])
FORBIDDEN_MODULES = {"dill", "joblib", "shelve", "marshal", "cloudpickle", "jsonpickle"}


def dotted(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{dotted(node.value)}.{node.attr}"
    return ""


def keyword(call: ast.Call, name: str):
    for kw in call.keywords:
        if kw.arg == name:
            return kw.value.value if isinstance(kw.value, ast.Constant) else "not a constant"
    return None


def problems(source: str) -> list[str]:
    """Unsafe loads in one module's source, as 'line: what'."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            found += [f"{node.lineno}: imports {n}" for n in names if n.split(".")[0] in FORBIDDEN_MODULES]
            if isinstance(node, ast.ImportFrom) and node.module == "pickle":
                found += [f"{node.lineno}: from pickle import {a.name}" for a in node.names if a.name != "UnpicklingError"]
        if not isinstance(node, ast.Call):
            continue
        name = dotted(node.func)
        if name in ("pickle.load", "pickle.loads", "pickle.Unpickler", "eval", "exec", "yaml.load", "yaml.unsafe_load"):
            found.append(f"{node.lineno}: {name}")
        elif name == "torch.load" and keyword(node, "weights_only") is not True:
            found.append(f"{node.lineno}: torch.load without weights_only=True")
        elif name in ("np.load", "numpy.load") and keyword(node, "allow_pickle") not in (None, False):
            found.append(f"{node.lineno}: {name} with allow_pickle")
        elif (name.startswith("AutoModel") and name.endswith(".from_pretrained") and keyword(node, "gguf_file") is None
              and keyword(node, "use_safetensors") is not True):
            found.append(f"{node.lineno}: {name} may read a pickled .bin (use_safetensors=True)")
    return found


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_unsafe_load(path):
    assert problems(path.read_text()) == []


def test_the_scan_finds_what_it_forbids():
    bad = ("import pickle, dill\nfrom pickle import loads\npickle.loads(b'')\ntorch.load(p)\n"
           "torch.load(p, weights_only=False)\nnp.load(p, allow_pickle=True)\neval('1')\n"
           "AutoModelForCausalLM.from_pretrained(d)\n")
    assert [p.split(": ")[0] for p in problems(bad)] == ["1", "2", "3", "4", "5", "6", "7", "8"]
    ok = ("from pickle import UnpicklingError\ntorch.load(p, weights_only=True)\nnp.load(p)\n"
          "AutoModelForCausalLM.from_pretrained(d, use_safetensors=True)\nAutoModelForCausalLM.from_pretrained(s, gguf_file=g)\n")
    assert problems(ok) == []
