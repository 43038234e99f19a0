"""Each page session and each passing file belongs to the user it was made for (ASGI middleware).

Gradio keys a page's state by a `session_hash` the browser makes up, and serves any file in its folder to
any logged-in user who names it: an educator who reused a radiologist's session hash read that
radiologist's viewer, and a file's URL seen over a shoulder opened for anyone. Here:

- the first user to use a session hash owns it, and a request with it from anyone else is refused;
- a file in the app's folder may be fetched, or sent back as an input, only by a user it was shown to
  (its path went out in an answer to them: a draft's images, an export) or who uploaded it.

Both are kept in this process's memory, as Gradio keeps the sessions and files themselves.
"""
from __future__ import annotations

import json
import logging
import os
import re
from collections import OrderedDict
from pathlib import Path
from urllib.parse import parse_qs, unquote

from starlette.datastructures import Headers
from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from xr.sessions import DatabaseSessions, request_user
from xr.ui.tempfiles import fetched_file

log = logging.getLogger("xr.app")
MAX_BODY = 16 * 2**20  # a JSON request body read whole to find its session hash; an event's data is far less
REMEMBERED = 100_000  # session hashes, and files per user, remembered at most (the oldest are forgotten)
_SCANNED = (b"application/json", b"text/event-stream", b"text/html")  # answers that can name files
# /heartbeat/{session_hash}, GET /stream/{session_hash}/{run}/{component}/... (POST /stream/{event_id} is not one)
_HEARTBEAT = re.compile(r"^/gradio_api/heartbeat/([^/]+)/?$")
_STREAM = re.compile(r"^/gradio_api/stream/([^/]+)/[^/]+/[^/]+")
_ESCAPED = re.compile(r"\\u([0-9a-fA-F]{4})")  # a JSON string's \uXXXX: a file name outside ASCII


class Owners:
    def __init__(self, app: ASGIApp, sessions: DatabaseSessions, folder: Path) -> None:
        self.app, self.sessions = app, sessions
        self.folder = str(folder)
        # a name inside a JSON string: up to its closing quote (a space or an accent is part of a file name)
        self.file_pattern = re.compile(re.escape(self.folder) + r"/(?:[^\"\\\n]|\\u[0-9a-fA-F]{4})+")
        self.owner: OrderedDict[str, str | None] = OrderedDict()  # session hash -> user
        self.shown: dict[str | None, OrderedDict[str, None]] = {}  # user -> files they may fetch

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or not (path.startswith("/gradio_api/") or path in ("/", "/config")):
            await self.app(scope, receive, send)  # the page's scripts and styles: nobody's
            return
        body = b""
        if scope["method"] == "POST" and Headers(scope=scope).get("content-type", "").lower().startswith("application/json"):
            read = await _read(receive)
            if read is None:
                await PlainTextResponse("request too large", status_code=413)(scope, receive, send)
                return
            body, receive = read, _replay(read, receive)
        user = request_user(scope, self.sessions)
        refusal = self._refusal(user, scope, body)
        if refusal:
            log.warning("refused %s %s from %s: %s", scope["method"], scope["path"].split("=", 1)[0], user, refusal)
            await PlainTextResponse(refusal, status_code=403)(scope, receive, send)
            return
        await self.app(scope, receive, self._noting(user, send))

    def _refusal(self, user: str | None, scope: Scope, body: bytes) -> str | None:
        session = _session_hash(scope, body)
        if session:
            if self.owner.setdefault(session, user) != user:
                return "this page session belongs to another user"
            self.owner.move_to_end(session)
            if len(self.owner) > REMEMBERED:
                self.owner.popitem(last=False)
        shown = self.shown.get(user, OrderedDict[str, None]())
        fetched = fetched_file(scope)
        named = [fetched] if fetched else []
        named += self._files_in(body.decode("utf-8", "replace"))
        if any(p.startswith(self.folder + os.sep) and p not in shown and unquote(p) not in shown for p in named):
            return "this file was not made for you"
        return None

    def _noting(self, user: str | None, send: Send) -> Send:
        """`send`, noting every file of the folder named in an answer to `user` as theirs."""
        scanned = False
        tail = ""  # the end of the last chunk: a name cut in two between chunks is still found

        async def sending(message: Message) -> None:
            nonlocal scanned, tail
            if message["type"] == "http.response.start":
                kind = dict(message.get("headers", [])).get(b"content-type", b"")
                scanned = kind.startswith(_SCANNED)
            elif message["type"] == "http.response.body" and scanned:
                text = tail + message.get("body", b"").decode("utf-8", "replace")
                self._note(user, self._files_in(text))
                tail = text[-1024:]
            await send(message)
        return sending

    def _files_in(self, text: str) -> list[str]:
        return [os.path.abspath(_ESCAPED.sub(lambda m: chr(int(m.group(1), 16)), p))
                for p in self.file_pattern.findall(text)]

    def _note(self, user: str | None, paths: list[str]) -> None:
        if not paths:
            return
        shown = self.shown.setdefault(user, OrderedDict())
        for p in {*paths, *map(unquote, paths)}:  # a file's URL names it percent-encoded, its path plainly
            shown[p] = None
            shown.move_to_end(p)
        while len(shown) > REMEMBERED:
            shown.popitem(last=False)


def _session_hash(scope: Scope, body: bytes) -> str | None:
    """Where Gradio takes it from: the path (heartbeat, streams), the query (queue data) or a JSON body."""
    found = _HEARTBEAT.match(scope["path"]) or (_STREAM.match(scope["path"]) if scope["method"] == "GET" else None)
    if found:
        return found.group(1)
    query = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("session_hash")
    if query:
        return query[0]
    if body:
        try:
            value = json.loads(body).get("session_hash")
        except (ValueError, AttributeError):
            return None
        return value if isinstance(value, str) else None
    return None


async def _read(receive: Receive) -> bytes | None:
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if len(body) > MAX_BODY:
            return None
        if not message.get("more_body"):
            return body


def _replay(body: bytes, receive: Receive) -> Receive:
    """The body once more, then the connection's own messages (a streaming answer waits on its disconnect)."""
    sent = False

    async def replaying() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()
    return replaying
