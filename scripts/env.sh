# Sourced by scripts/app.sh and scripts/test.sh: create or reuse .venv and install what it lacks.
# Re-installs only when a requirements file changes. Set XR_TORCH_INDEX to a wheel index URL to take
# torch from there (for example the CPU-only index of the PyTorch project) instead of the default.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
REQS="${1:-requirements.txt}"
PY="${XR_PYTHON:-$(command -v python3.11 || command -v python3)}"
if [ ! -x "$ROOT/.venv/bin/python" ]; then
  echo "Creating virtual environment in .venv with $PY" >&2
  "$PY" -m venv "$ROOT/.venv"
fi
STAMP="$ROOT/.venv/.installed-$(cat "$ROOT"/requirements*.txt | sha256sum | cut -c1-16)-${REQS%.txt}"
if [ ! -f "$STAMP" ]; then
  echo "Installing Python packages (first run takes a few minutes)" >&2
  PIP=("$ROOT/.venv/bin/python" -m pip install -q --disable-pip-version-check)
  if [ -n "${XR_TORCH_INDEX:-}" ]; then
    "${PIP[@]}" --index-url "$XR_TORCH_INDEX" torch==2.13.0
  else
    "${PIP[@]}" torch==2.13.0
  fi
  "${PIP[@]}" -r "$ROOT/$REQS"
  "${PIP[@]}" --no-deps -r "$ROOT/requirements-nodeps.txt"
  touch "$STAMP"
fi
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
cd "$ROOT"
