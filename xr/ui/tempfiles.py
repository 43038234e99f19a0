"""Where the app's passing files live: a folder only this account can open, and exports that go once fetched.

Gradio keeps uploads and the files it hands out under one folder, by default `/tmp/gradio`, which any
account on the machine can list and read. Here it is a folder of this process's own, made with mode 0700
(under `XR_TEMP_DIR`, else the system's temporary folder), and Gradio's clean-up empties it. An export
(a report or the fine-tuning file) carries a patient's report out of the app: it is written in this
folder, served from where it lies, and deleted with its folder as soon as it has been downloaded whole.
"""
from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from xr.config import Settings

EXPORT_PREFIX = "xr-export-"
_folders: dict[str, Path] = {}


def private_folder(s: Settings) -> Path:
    """This process's folder for Gradio's files (GRADIO_TEMP_DIR), made once, owner-only."""
    base = str(s.temp_dir or tempfile.gettempdir())
    if base not in _folders:
        Path(base).mkdir(parents=True, exist_ok=True)
        _folders[base] = Path(tempfile.mkdtemp(prefix="xr-", dir=base)).resolve()  # mkdtemp: mode 0700
    return _folders[base]


def use_private_folder(s: Settings) -> Path:
    """Point Gradio at the private folder: before the Blocks are made, which read it then."""
    folder = private_folder(s)
    os.environ["GRADIO_TEMP_DIR"] = str(folder)
    return folder


@contextmanager
def export_folder(s: Settings) -> Iterator[Path]:
    """A fresh folder for one export, inside the private folder (so Gradio serves it without a copy);
    removed again if the export is refused or fails."""
    folder = Path(tempfile.mkdtemp(prefix=EXPORT_PREFIX, dir=private_folder(s)))
    try:
        yield folder
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise


def fetched_file(scope: Scope) -> str:
    """The file a request's `/file=` route names, as an absolute path; "" for any other request."""
    if scope["type"] != "http" or "/file=" not in scope["path"]:
        return ""
    return os.path.abspath(scope["path"].split("/file=", 1)[1])


class OneTimeExports:
    """ASGI middleware: a file in an export folder, once downloaded whole (200, last bytes read), is
    deleted with its folder; a partial (range) download leaves it for the rest."""

    def __init__(self, app: ASGIApp, folder: Path) -> None:
        self.app, self.exports = app, str(folder / EXPORT_PREFIX)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = fetched_file(scope) if scope.get("method") == "GET" else ""
        if not path.startswith(self.exports):
            await self.app(scope, receive, send)
            return
        status = 0

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            last = message["type"] == "http.response.body" and not message.get("more_body")
            if last and status == 200:  # its bytes are read: gone before the client has them all
                await asyncio.to_thread(shutil.rmtree, Path(path).parent, True)
            await send(message)

        await self.app(scope, receive, sending)
