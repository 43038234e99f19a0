"""The layers of ARCHITECTURE.md hold: import-linter's contracts in pyproject.toml (no module imports from a
layer above its own; no import loop inside any package) are kept, and a new upward import breaks them."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LINT = [sys.executable, "-c", "import sys; from importlinter.cli import lint_imports_command; sys.exit(lint_imports_command())"]


def lint(root: Path) -> subprocess.CompletedProcess:
    return subprocess.run(LINT + ["--no-cache"], cwd=root, capture_output=True, text=True,
                          env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(root)})


def test_contracts_are_kept():
    r = lint(ROOT)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "2 kept, 0 broken" in r.stdout


def test_an_upward_import_or_a_loop_breaks_them(tmp_path):
    """The check can fail: the same tree with the store importing the workstation (upwards), and with a
    loop between two modules of one package, is refused, naming the import."""
    for name, module, line, named in [
            ("upward", "xr/store/commands.py", "from xr import workstation  # noqa\n", "xr.store.commands -> xr.workstation"),
            ("loop", "xr/retrieve/library.py", "from xr.retrieve import index  # noqa\n", ".library -> .index")]:
        copy = tmp_path / name
        shutil.copytree(ROOT / "xr", copy / "xr", ignore=shutil.ignore_patterns("__pycache__"))
        shutil.copy(ROOT / "pyproject.toml", copy / "pyproject.toml")
        target = copy / module
        target.write_text(target.read_text() + line)
        r = lint(copy)
        assert r.returncode != 0, name
        assert "BROKEN" in r.stdout and named in r.stdout, r.stdout
