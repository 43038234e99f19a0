# Sourced by scripts/app.sh and scripts/test.sh: create or reuse .venv and install what it lacks.
# Re-installs only when a requirements file changes. Set XR_TORCH_INDEX to a wheel index URL to take
# torch from there (for example the CPU-only index of the PyTorch project) instead of the default.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
REQS="${1:-requirements.txt}"
EXTRA="$([ "$REQS" != requirements.txt ] && echo 1 || true)"  # e.g. requirements-test.txt: on top of the runtime
PY="${XR_PYTHON:-$(command -v python3.11 || command -v python3)}"
if [ ! -x "$ROOT/.venv/bin/python" ]; then
  echo "Creating virtual environment in .venv with $PY" >&2
  "$PY" -m venv "$ROOT/.venv"
fi
STAMP="$ROOT/.venv/.installed-$(cat "$ROOT"/requirements*.txt "$ROOT/pyproject.toml" | sha256sum | cut -c1-16)-${REQS%.txt}"
TORCH="$(grep -oE '^torch==[^ ]+' "$ROOT/requirements.txt")"  # pinned once, in requirements.txt
if [ ! -f "$STAMP" ]; then
  # pip's own lines (each package as it is fetched and installed) show that it is moving; a line per step
  # says where it is. About 3.5 minutes on a 2-core machine with a fast connection.
  step() { echo "[$1/4 $(date +%H:%M:%S)] $2" >&2; }
  started=$SECONDS
  echo "Installing Python packages into .venv (first run: a few minutes)" >&2
  PIP=("$ROOT/.venv/bin/python" -m pip install --disable-pip-version-check)
  step 1 "$TORCH (the largest download)"
  if [ -n "${XR_TORCH_INDEX:-}" ]; then
    "${PIP[@]}" --index-url "$XR_TORCH_INDEX" "$TORCH" >&2
  else
    "${PIP[@]}" "$TORCH" >&2
  fi
  step 2 "the packages of requirements.txt${EXTRA:+ and $REQS}"
  "${PIP[@]}" -r "$ROOT/requirements.txt" ${EXTRA:+-r "$ROOT/$REQS"} >&2
  step 3 "the packages of requirements-nodeps.txt (without their dependencies)"
  "${PIP[@]}" --no-deps -r "$ROOT/requirements-nodeps.txt" >&2
  step 4 "this project (pyproject.toml), editable: the xr command and imports from anywhere"
  "${PIP[@]}" --no-deps -e "$ROOT" >&2
  touch "$STAMP"
  echo "Installed in $((SECONDS - started)) s" >&2
fi
cd "$ROOT"
