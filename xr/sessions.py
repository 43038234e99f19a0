"""Log-in sessions kept in the database (db.models.LoginSession), as the mapping of token -> user name
that Gradio reads and writes (`app.tokens`): every app process on one database shares them, a session
idle for `IDLE` or older than `LIFETIME` is over, and a password change or `xr user disable` ends all of
a user's sessions (xr.access). Tokens are stored as their SHA-256 only.
"""
from __future__ import annotations

import hashlib
from collections.abc import Iterator, MutableMapping
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, select

from db.models import LoginSession, User
from db.session import transaction
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
        if not isinstance(token, str) or not token:
            raise KeyError(token)
        now = datetime.now(UTC).replace(tzinfo=None)  # stored times read back naive UTC (db.models.UTCDateTime)
        name = None
        with transaction(self.s.database_url) as session:
            row = session.scalar(select(LoginSession).where(LoginSession.token_hash == token_hash(token)))
            if row is not None and (now - row.last_seen > IDLE or now - row.created_at > LIFETIME or row.user.disabled):
                session.delete(row)  # over: gone for every process
            elif row is not None:
                if now - row.last_seen > TOUCH:
                    row.last_seen = now
                name = row.user.name
        if name is None:
            raise KeyError(token)
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
        """Tokens are not kept, only their hashes: nothing to list (Gradio's "log out everywhere" then ends
        this session only; `xr user passwd` ends them all)."""
        return iter(())

    def __len__(self) -> int:
        return 0
