#!/usr/bin/env bash
# Start the workstation at http://127.0.0.1:7860 (XR_HOST / XR_PORT to change), installing on first run.
source "$(dirname "$0")/env.sh" requirements.txt
# ONNX Runtime graphs of today's weights (a few minutes, once): drafts use them when faster. XR_BACKEND=eager skips.
# It prints a line per stage on stderr (or one saying the export is current); the table of timings goes to
# DATA_DIR/onnx/onnx.json, not the console.
if [ "${XR_BACKEND:-auto}" != eager ]; then
  echo "ONNX graphs of the models: exported on the first start and after new weights (about 3.5 minutes on 2 cores)" >&2
  .venv/bin/python -m xr export-onnx --if-missing >/dev/null
fi
# Two allocator arenas, not one per server thread: each thread that runs a draft would otherwise keep
# its own high-water mark, and memory climbs for hours under load (tests/load: 1.6 -> 2.4 GB vs level).
export MALLOC_ARENA_MAX="${MALLOC_ARENA_MAX:-2}"
exec .venv/bin/python app.py "$@"
