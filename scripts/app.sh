#!/usr/bin/env bash
# Start the workstation at http://127.0.0.1:7860 (XR_HOST / XR_PORT to change), installing on first run.
source "$(dirname "$0")/env.sh" requirements.txt
# ONNX Runtime graphs of today's weights (a few minutes, once): drafts use them when faster. XR_BACKEND=eager skips.
[ "${XR_BACKEND:-auto}" = eager ] || .venv/bin/python -m xr export-onnx --if-missing >/dev/null
exec .venv/bin/python app.py "$@"
