#!/usr/bin/env bash
# Start the workstation at http://127.0.0.1:7860 (XR_HOST / XR_PORT to change), installing on first run.
source "$(dirname "$0")/env.sh" requirements.txt
exec .venv/bin/python app.py "$@"
