"""Who may do what. Users and roles live in the database, passwords as scrypt hashes (RFC 7914, from the
standard library). Every action of the app, its API and the CLI goes through `require`, so a role is
refused on the server whatever the browser shows. Refusals and log-ins are audit events."""
from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from sqlalchemy import select

from db.models import AuditEvent, User
from db.session import transaction
from xr.config import Settings
from xr.errors import UserError
from xr.sessions import end_sessions


class Role(StrEnum):
    """A user's role. Stored as its string value (users.role): no schema change."""
    RADIOLOGIST = "radiologist"
    EDUCATOR = "educator"
    ANNOTATOR = "annotator"
    ADMIN = "admin"  # allowed everything


ROLES = tuple(Role)
# action -> (roles allowed besides admin, what it is in a refusal). The UI shows each role only its
# workspaces, but this table is what decides.
PERMISSIONS: dict[str, tuple[frozenset[Role], str]] = {
    "draft": (frozenset({Role.RADIOLOGIST}), "draft studies"),
    "worklist": (frozenset({Role.RADIOLOGIST}), "open the worklist"),
    "edit": (frozenset({Role.RADIOLOGIST}), "edit reports"),
    "approve": (frozenset({Role.RADIOLOGIST}), "approve reports"),
    "export_report": (frozenset({Role.RADIOLOGIST}), "export reports"),
    "refine": (frozenset({Role.RADIOLOGIST}), "refine drafts"),
    "teach": (frozenset({Role.EDUCATOR}), "use the teaching view"),
    "generate": (frozenset({Role.EDUCATOR, Role.RADIOLOGIST}), "generate synthetic films"),
    "correct": (frozenset({Role.ANNOTATOR}), "correct drafts"),
    "export_edits": (frozenset({Role.ANNOTATOR}), "export fine-tuning data"),
    "users": (frozenset(), "manage users"),
}
# Files come in only where a workspace takes them: drafting, and films to generate from (xr/ui/uploads.py)
PERMISSIONS["upload"] = (PERMISSIONS["draft"][0] | PERMISSIONS["generate"][0], "upload files")
LOCAL_USER_NAME = "local"  # single-user mode: the one person at this machine, allowed everything
_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{1,31}$")
MIN_PASSWORD = 8
LOCK_AFTER, LOCK_MINUTES = 5, 15  # failed log-ins, and the window they count in
# scrypt cost: 2^15 x 8 x 1 needs 32 MiB and ~0.1 s, in line with OWASP's minimum for scrypt.
_N, _R, _P = 2**15, 8, 1


class AccessError(UserError):
    """Not logged in, wrong password, or a role without the right."""


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    key = hashlib.scrypt(password.encode(), salt=salt, n=_N, r=_R, p=_P, maxmem=2**26, dklen=32)
    return f"scrypt${_N}${_R}${_P}${base64.b64encode(salt).decode()}${base64.b64encode(key).decode()}"


def verify_password(password: str, stored: str | None) -> bool:
    """Constant-time; a missing hash still costs one scrypt, so timing does not tell which names exist."""
    n: int
    r: int
    p: int
    salt: bytes
    key: bytes
    try:
        kind, n_text, r_text, p_text, salt_text, key_text = (stored or "").split("$")
        n, r, p = int(n_text), int(r_text), int(p_text)
        salt, key = base64.b64decode(salt_text), base64.b64decode(key_text)
        assert kind == "scrypt"
    except (ValueError, AssertionError):
        n, r, p, salt, key, stored = _N, _R, _P, b"\0" * 16, b"\0" * 32, None
    got = hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, maxmem=2**26, dklen=len(key))
    return hmac.compare_digest(got, key) and stored is not None


def allowed(role: str, action: str) -> bool:
    if action not in PERMISSIONS:
        raise KeyError(action)
    return role == Role.ADMIN or role in PERMISSIONS[action][0]


def check_name(name: str) -> str:
    if not _NAME.match(name or ""):
        raise AccessError(f"'{name}' is not a valid user name: 2-32 characters, lower-case letters, digits, . _ -")
    if name == LOCAL_USER_NAME:
        raise AccessError(f"'{LOCAL_USER_NAME}' is reserved for single-user mode")
    return name


def add_user(s: Settings, name: str, role: str, password: str) -> int:
    check_name(name)
    if role not in ROLES:
        raise AccessError(f"unknown role '{role}': one of {', '.join(ROLES)}")
    if len(password) < MIN_PASSWORD:
        raise AccessError(f"the password needs at least {MIN_PASSWORD} characters")
    with transaction(s.database_url) as session:
        if session.scalar(select(User).where(User.name == name)) is not None:
            raise AccessError(f"user '{name}' exists (change the password with `python -m xr user passwd {name}`)")
        user = User(name=name, role=role, password_hash=hash_password(password))
        session.add(user)
        session.flush()
        session.add(AuditEvent(user_id=None, action="user", detail={"added": user.id, "role": role}))
        return user.id


def set_password(s: Settings, name: str, password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise AccessError(f"the password needs at least {MIN_PASSWORD} characters")
    with transaction(s.database_url) as session:
        user = session.scalar(select(User).where(User.name == name, User.password_hash.is_not(None)))
        if user is None:
            raise AccessError(f"no user '{name}'")
        user.password_hash = hash_password(password)
        end_sessions(session, user.id)  # whoever logged in with the old password is logged out everywhere
        session.add(AuditEvent(user_id=None, action="user", detail={"password": user.id}))


def _named(session, name: str) -> User:
    user = session.scalar(select(User).where(User.name == name, User.password_hash.is_not(None)))
    if user is None:
        raise AccessError(f"no user '{name}'")
    return user


def set_disabled(s: Settings, name: str, disabled: bool) -> None:
    """A disabled user cannot log in, and a session they already have is refused at its next request
    (every request reads the user's row); nothing of theirs is deleted."""
    with transaction(s.database_url) as session:
        user = _named(session, name)
        user.disabled = disabled
        end_sessions(session, user.id)
        session.add(AuditEvent(user_id=None, action="user", detail={"disabled" if disabled else "enabled": user.id}))


def set_role(s: Settings, name: str, role: str) -> None:
    """Takes effect at the user's next request, in a session they already have too."""
    if role not in ROLES:
        raise AccessError(f"unknown role '{role}': one of {', '.join(ROLES)}")
    with transaction(s.database_url) as session:
        user = _named(session, name)
        user.role = role
        session.add(AuditEvent(user_id=None, action="user", detail={"role": user.id, "to": role}))


@dataclass(frozen=True)
class UserInfo:
    """A log-in user, as `python -m xr user list` shows it."""
    name: str
    role: Role
    created: str  # ISO time, seconds, UTC
    disabled: bool = False


def list_users(s: Settings) -> list[UserInfo]:
    """The log-in users by name (not the single-user mode's local user, which has no password)."""
    with transaction(s.database_url, read_only=True) as session:
        users = session.scalars(select(User).where(User.password_hash.is_not(None)).order_by(User.name))
        return [UserInfo(name=u.name, role=Role(u.role), created=u.created_at.isoformat(timespec="seconds"),
                         disabled=u.disabled) for u in users]


def has_users(s: Settings) -> bool:
    with transaction(s.database_url, read_only=True) as session:
        return session.scalar(select(User.id).where(User.password_hash.is_not(None)).limit(1)) is not None


def login(s: Settings, name: str, password: str) -> bool:
    """The app's log-in check. Each attempt is an audit event (on the user it names, if any; a name that
    is no user is not kept: people type passwords into the name field). After LOCK_AFTER failures within
    LOCK_MINUTES a user is locked out for the rest of that window, right password or not."""
    with transaction(s.database_url) as session:
        user = session.scalar(select(User).where(User.name == (name or "").strip()))
        locked = user is not None and _recent_failures(session, user.id) >= LOCK_AFTER
        ok = verify_password(password or "", user.password_hash if user else None) and not locked
        ok = ok and user is not None and not user.disabled  # after the hash: a disabled name takes as long
        detail = {"ok": ok, "locked": True} if locked else {"ok": ok}
        session.add(AuditEvent(user_id=user.id if user else None, action="login", detail=detail))
        return ok


def reauthenticate(s: Settings, name: str, password: str) -> None:
    """A signature asks for the password again, whoever holds the session (a screen left unlocked, a
    stolen cookie): AccessError unless it is right. Single-user mode has no passwords to ask for."""
    if s.auth and not login(s, name, password or ""):
        raise AccessError("that is not your password (or the account is locked): not signed")


def _recent_failures(session, user_id: int) -> int:
    """Failed log-ins of the last LOCK_MINUTES, not counting attempts made while locked: those would keep
    an account locked for ever (one guess every few minutes), so a lock ends LOCK_MINUTES after the
    failures that caused it."""
    since = datetime.now(UTC) - timedelta(minutes=LOCK_MINUTES)
    events = session.scalars(select(AuditEvent).where(AuditEvent.user_id == user_id, AuditEvent.action == "login",
                                                      AuditEvent.at >= since)).all()
    return sum(not e.detail.get("ok") and not e.detail.get("locked") for e in events)


def whoami(s: Settings, username: str | None) -> tuple[str, str]:
    """(name, role) behind a request. `username` is None only without log-in: in single-user mode that is
    the local user, allowed everything; with log-in on it is refused."""
    if username is None:
        if s.auth:
            raise AccessError("log in first")
        return LOCAL_USER_NAME, Role.ADMIN
    with transaction(s.database_url, read_only=True) as session:
        user = session.scalar(select(User).where(User.name == username, User.password_hash.is_not(None)))
        if user is None:
            raise AccessError("log in first")
        if user.disabled:
            raise AccessError("this account is disabled: ask your administrator")
        return user.name, user.role


def require(s: Settings, username: str | None, action: str) -> tuple[str, str]:
    """(name, role) of the user behind a request if the role may do `action`; else AccessError (audited)."""
    name, role = whoami(s, username)
    if allowed(role, action):
        return name, role
    with transaction(s.database_url) as session:
        user = session.scalar(select(User).where(User.name == name))
        assert user is not None  # whoami found this user just now; users are never deleted
        session.add(AuditEvent(user_id=user.id, action="denied", detail={"action": action}))
    article = "an" if role[0] in "aeiou" else "a"
    raise AccessError(f"{article} {role} may not {PERMISSIONS[action][1]}")
