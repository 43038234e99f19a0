"""What every workspace handler needs: who is asking, and refusals shown as one line."""
from __future__ import annotations

import functools
import html
import logging
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import gradio as gr
from gradio.utils import get_upload_folder

from xr.errors import UserError

log = logging.getLogger("xr.app")
# The workspaces' own events: not endpoints of the app's API (app.py declares those, each with a guard)
PRIVATE: dict[str, Any] = {"api_visibility": "private"}
# Every event that reads uploaded files (and runs the models on them) waits in one queue: each kind having
# its own limit, drafts, additions and film uploads from the UI and the API would run side by side.
INGEST: dict[str, Any] = {"concurrency_id": "ingest"}


class ScreenError(UserError):
    """What the screen cannot do as asked: nothing open, a box not ticked, an upload already deleted."""


def username(request: gr.Request | None) -> str | None:
    """The logged-in user, or None in single-user mode (xr.access decides whether that is allowed)."""
    return getattr(request, "username", None) if request is not None else None


def _answering(fn, answer):
    """`fn`, with our refusals (bad input, missing rights) answered by `answer(message)`; anything else is
    a bug and keeps its traceback in the log. Gradio shows the message as HTML, and it may quote a file
    name the user chose: escaped, it reads as typed."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except UserError as e:
            log.info("refused %s (%s)", fn.__name__, type(e).__name__)  # the message may quote a file name
            return answer(html.escape(str(e), quote=False))
    return wrapper


def guarded(fn):
    """For the API: a refusal is a one-line error that gradio_client raises."""
    def fail(message: str):
        raise gr.Error(message, print_exception=False) from None
    return _answering(fn, fail)


def refusing(on_refusal=None):
    """For the workspaces' own handlers: a refusal is one message (a toast) and the page stays as it was.
    Raising would paint an error badge over every output (blanking images and text until each badge is
    closed), so the handler returns gr.skip() for all of them instead, or `on_refusal()`'s values where
    something must change all the same (uploads consumed by a refused draft leave the upload box)."""
    def toast(message: str):
        gr.Warning(message, title="Not done")
        return on_refusal() if on_refusal else gr.skip()
    return lambda fn: _answering(fn, toast)


def page_head() -> str:
    """The page's script: keyboard shortcuts and window/level by dragging (keys.js)."""
    return "<script>\n" + Path(__file__).with_name("keys.js").read_text() + "</script>"


@contextmanager
def uploaded(files) -> Iterator[list[str]]:
    """The uploads' paths, each deleted once the action is over, whatever its outcome: Gradio keeps an
    upload under the name the user gave it, and a DICOM's name and header may identify the patient. What
    stays is what the store keeps: pixels under their content hash, no header. None given: no paths (the
    handler checks the caller's right first; the ingest then says nothing was given)."""
    files = files if isinstance(files, list) else [files] if files else []
    paths = [f if isinstance(f, str) else f.name for f in files]
    cache = Path(get_upload_folder()).resolve()
    ours = [p for p in (Path(p).resolve() for p in paths) if cache in p.parents]  # never the user's own files
    if not all(p.exists() for p in ours):
        raise ScreenError("the uploads were deleted after the last action (they may identify the patient): "
                               "upload the files again")
    try:
        yield paths
    finally:
        for path in ours:
            path.unlink(missing_ok=True)
            with suppress(OSError):  # the folder Gradio made for it, once empty
                path.parent.rmdir()


def need(study_id) -> int:
    if not study_id:
        raise ScreenError("open or draft a study first")
    return int(study_id)
