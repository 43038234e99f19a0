#!/usr/bin/env bash
# Static checks, run by CI before the tests: lint (ruff), types (mypy) and the layers of ARCHITECTURE.md
# (import-linter). Each reads its settings from pyproject.toml; each fails on any finding.
source "$(dirname "$0")/env.sh" requirements-test.txt
echo "ruff" >&2 && .venv/bin/ruff check .
echo "mypy" >&2 && .venv/bin/mypy
echo "import-linter" >&2 && .venv/bin/lint-imports
