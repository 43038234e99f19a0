"""Log-in sessions kept in the database (db.models.LoginSession), as the mapping of token -> user name
that Gradio reads and writes (`app.tokens`): every app process on one database shares them, a session
idle for `IDLE` or older than `LIFETIME` is over, and a password change or `xr user disable` ends all of
a user's sessions (xr.access). Tokens are stored as their SHA-256 only.
"""
from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Iterator, MutableMapping
from datetime import UTC, datetime, timedelta
from http.cookies import SimpleCookie

from sqlalchemy import delete, make_url, select, update
from starlette.types import ASGIApp, Receive, Scope, Send

from db.models import LoginSession, User
from db.session import sqlalchemy_url, transaction
from xr.config import Settings

IDLE = timedelta(minutes=30)
LIFETIME = timedelta(hours=12)
TOUCH = timedelta(minutes=1)  # last_seen is written at most this often: not a write per request


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def end_sessions(session, user_id: int) -> None:
    """Inside a transaction of the caller's: every session of the user ends."""
    session.execute(delete(LoginSession).where(LoginSession.user_id == user_id))


class DatabaseSessions(MutableMapping[str, str]):
    def __init__(self, s: Settings) -> None:
        self.s = s

    def __setitem__(self, token: str, username: str) -> None:
        with transaction(self.s.database_url) as session:
            user = session.scalar(select(User).where(User.name == username))
            if user is None:
                raise KeyError(username)
            session.add(LoginSession(token_hash=token_hash(token), user_id=user.id))

    def __getitem__(self, token: str) -> str:
        """Read in a read-only transaction (Gradio asks on every request, on its event loop): a write
        transaction only to end an expired session or, once a minute, to note that it is in use."""
        if not isinstance(token, str) or not token:
            raise KeyError(token)
        now = datetime.now(UTC).replace(tzinfo=None)  # stored times read back naive UTC (db.models.UTCDateTime)
        digest = token_hash(token)
        with transaction(self.s.database_url, read_only=True) as session:
            row = session.scalar(select(LoginSession).where(LoginSession.token_hash == digest))
            if row is None:
                raise KeyError(token)
            over = now - row.last_seen > IDLE or now - row.created_at > LIFETIME or row.user.disabled
            name, touch = row.user.name, now - row.last_seen > TOUCH
        if over:
            del self[token]  # over: gone for every process
            raise KeyError(token)
        if touch:
            with transaction(self.s.database_url) as session:
                session.execute(update(LoginSession).where(LoginSession.token_hash == digest).values(last_seen=now))
        return name

    def get(self, token, default=None):
        try:
            return self[token]
        except KeyError:
            return default

    def __contains__(self, token: object) -> bool:
        return self.get(token) is not None

    def __delitem__(self, token: str) -> None:
        with transaction(self.s.database_url) as session:
            session.execute(delete(LoginSession).where(LoginSession.token_hash == token_hash(token)))

    def __iter__(self) -> Iterator[str]:
        """Tokens are not kept, only their hashes: nothing to list. Gradio's /logout looks for the caller's
        tokens this way and so finds none: `EndOnLogout` ends the caller's session before it runs."""
        return iter(())

    def __len__(self) -> int:
        return 0


def cookie_name(s: Settings) -> str:
    """The part of the session cookie's name Gradio makes random per process: the same for every process on
    one database, so they share log-ins. Not a secret (a cookie's name never is): derived from the
    database URL without its password."""
    safe = make_url(sqlalchemy_url(s.database_url)).render_as_string(hide_password=True)
    return hashlib.sha256(b"xr-session-cookie:" + safe.encode()).hexdigest()[:32]


def session_token(scope: Scope, name: str) -> str | None:
    """The log-in token of a request's cookie (Gradio's secure or plain variant), if it carries one."""
    cookies: SimpleCookie = SimpleCookie()
    for key, value in scope["headers"]:
        if key.lower() == b"cookie":
            cookies.load(value.decode("latin-1"))
    for key in (f"access-token-{name}", f"access-token-unsecure-{name}"):
        if key in cookies and cookies[key].value:
            return cookies[key].value
    return None


def request_user(scope: Scope, sessions: DatabaseSessions) -> str | None:
    """The logged-in user a request comes from (None: no live session). Looked up on the event loop, as
    Gradio's own check does: awaiting a thread here would let two requests of one page overtake each other
    (a sentence ticked, then text typed, would arrive typed first)."""
    token = session_token(scope, cookie_name(sessions.s))
    return None if token is None else sessions.get(token)


class EndOnLogout:
    """ASGI middleware: `GET /logout` ends the caller's session in the database before Gradio clears the
    cookie, so a copy of the cookie is dead on the server too."""

    def __init__(self, app: ASGIApp, sessions: DatabaseSessions) -> None:
        self.app, self.sessions = app, sessions

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].rstrip("/") == "/logout":
            token = session_token(scope, cookie_name(self.sessions.s))
            if token is not None:
                await asyncio.to_thread(self.sessions.__delitem__, token)
        await self.app(scope, receive, send)
