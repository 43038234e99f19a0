"""Uploads held to the configured limits before Gradio writes a byte of them (ASGI middleware).

Gradio takes up to 1000 files of `max_file_size` in one upload request from anyone logged in. Here one
request carries at most a study's worth (`XR_MAX_IMAGES` files of `XR_MAX_FILE_MB`: the largest zip,
which is also the cap on each file), and only from a role with the right to upload (xr.access). A body
longer than it said, or than the cap, is cut off where it passes the cap.
"""
from __future__ import annotations

import asyncio

from starlette.datastructures import Headers
from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from xr import access
from xr.config import Settings
from xr.sessions import DatabaseSessions, request_user

FRAMING = 2**20  # the multipart framing around the files (boundaries, part headers): far less than this


class UploadLimit:
    def __init__(self, app: ASGIApp, s: Settings, sessions: DatabaseSessions) -> None:
        self.app, self.s, self.sessions = app, s, sessions
        self.cap = s.max_archive_bytes + FRAMING

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"].rstrip("/") != "/gradio_api/upload":
            await self.app(scope, receive, send)
            return
        refusal = await self._refusal(scope)
        if refusal:
            await PlainTextResponse(refusal[1], status_code=refusal[0])(scope, receive, send)
            return
        await self.app(scope, self._counting(receive), send)

    async def _refusal(self, scope: Scope) -> tuple[int, str] | None:
        length = Headers(scope=scope).get("content-length", "")
        if length.isdigit() and int(length) > self.cap:
            return 413, (f"an upload is at most {self.s.max_archive_bytes / 2**20:.0f} MB "
                         f"({self.s.max_images} files of {self.s.max_file_bytes / 2**20:.0f} MB)")
        if not self.s.auth:
            return None
        name = request_user(scope, self.sessions)
        try:
            await asyncio.to_thread(access.require, self.s, name, "upload")  # a refusal is audited
        except access.AccessError as e:
            return (401 if name is None else 403), str(e)
        return None

    def _counting(self, receive: Receive) -> Receive:
        received = 0

        async def counting() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            return {"type": "http.disconnect"} if received > self.cap else message
        return counting
