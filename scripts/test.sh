#!/usr/bin/env bash
# Run the whole test suite (installing on first run). Extra arguments go to pytest.
source "$(dirname "$0")/env.sh" requirements-test.txt
exec .venv/bin/python -m pytest "$@"
