"""Log-in attempts that cannot stall the app or be made at machine speed.

- `login_checker`: Gradio awaits an async `auth`, so the check (scrypt and a database write) runs in a
  worker thread, never on the event loop that serves every other request, and at most `GLOBAL` checks
  run at once whatever arrives (the rest wait their turn without holding a thread).
- `AddressBackoff` (ASGI middleware on `/login`): after `FREE` failed log-ins from one address (an IPv6
  address by its /64), each further attempt from it must wait twice as long as the last (1 s, 2 s,
  4 s ... up to `CAP` s) and is answered 429 before any password check until then. An attempt counts as
  failed from the moment it arrives, so parallel tries cannot slip through together; a successful log-in
  clears the address. The per-account lock (xr.access) still applies on top.
"""
from __future__ import annotations

import asyncio
import ipaddress
import time
from collections.abc import Callable

from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

GLOBAL = 2  # log-in checks at once: each is a scrypt (32 MiB, ~0.1 s of a core)
FREE = 3  # failed attempts from one address before it must wait
CAP = 60.0  # seconds: the longest wait
MAX_ADDRESSES = 10_000  # addresses remembered; the oldest are forgotten beyond that


WAITING = 32  # log-in checks waiting for their turn at most; beyond, an attempt fails at once


def login_checker(check: Callable[[str, str], bool]):
    gate: asyncio.Semaphore | None = None
    waiting = 0

    async def auth(name: str, password: str) -> bool:
        nonlocal gate, waiting
        gate = gate or asyncio.Semaphore(GLOBAL)  # made on the server's own event loop
        if waiting >= WAITING:
            return False  # a flood: its attempts fail without a check, and the queue stays short
        waiting += 1
        try:
            await gate.acquire()
        finally:
            waiting -= 1
        try:
            return await asyncio.to_thread(check, name, password)
        finally:
            gate.release()
    return auth


class AddressBackoff:
    def __init__(self, app: ASGIApp, clock: Callable[[], float] = time.monotonic) -> None:
        self.app, self.clock = app, clock
        self.failures: dict[str, tuple[int, float]] = {}  # address -> (failed attempts, not before)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"].rstrip("/") != "/login":
            await self.app(scope, receive, send)
            return
        address = _group((scope.get("client") or ("?", 0))[0])
        count, not_before = self.failures.get(address, (0, 0.0))
        wait = not_before - self.clock()
        if wait > 0:
            await PlainTextResponse(f"too many failed log-ins from this address: try again in {wait:.0f} s",
                                    status_code=429, headers={"Retry-After": str(int(wait) + 1)})(scope, receive, send)
            return
        self._count(address, count + 1)  # counted as failed until it succeeds: parallel tries see it at once
        status: list[int] = []

        async def watch(message: Message) -> None:
            if message["type"] == "http.response.start":
                status.append(message["status"])
            await send(message)

        await self.app(scope, receive, watch)
        if status and status[0] == 200:
            self.failures.pop(address, None)

    def _count(self, address: str, count: int) -> None:
        delay = min(CAP, 2.0 ** (count - FREE - 1)) if count > FREE else 0.0
        self.failures.pop(address, None)
        if len(self.failures) >= MAX_ADDRESSES:  # the oldest first (a dict keeps insertion order)
            self.failures.pop(next(iter(self.failures)))
        self.failures[address] = (count, self.clock() + delay)


def _group(address: str) -> str:
    """An IPv6 address by its /64 (one machine or one site can use a whole /64): otherwise each attempt
    could come from an address of its own."""
    if ":" in address:
        try:
            return str(ipaddress.IPv6Network(f"{address}/64", strict=False))
        except ValueError:
            return address
    return address
