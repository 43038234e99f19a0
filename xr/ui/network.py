"""Who may talk to the app over the network, checked before Gradio sees a request (ASGI middleware):

- the **Host** header must name this app (`XR_ALLOWED_HOSTS`, by default the loopback names and the
  address it listens on), or a page of any web site could reach a local app through DNS rebinding;
- a request that carries an **Origin** (every browser fetch and form post does) must come from a page of
  this app: the Origin's host and port equal the Host header. Gradio's own CORS rules answer any origin
  with credentials when the Host is not localhost, which would let any page a logged-in user opens act
  as that user.
"""
from __future__ import annotations

import ipaddress
import os
import sys
from pathlib import Path
from urllib.parse import urlsplit

from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp, Receive, Scope, Send


def _hostname(host: str) -> str:
    """`name[:port]` or `[v6][:port]` -> the name, lower case, without brackets."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1:].split("]", 1)[0]
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


class HostAndOrigin:
    def __init__(self, app: ASGIApp, allowed_hosts: frozenset[str]) -> None:
        self.app, self.allowed_hosts = app, allowed_hosts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
            host = headers.get("host", "")
            refusal = None
            if self.allowed_hosts and _hostname(host) not in self.allowed_hosts:
                refusal = (400, "this host name is not served here (XR_ALLOWED_HOSTS)")
            elif "origin" in headers and urlsplit(headers["origin"]).netloc.lower() != host.strip().lower():
                refusal = (403, "requests from pages of other sites are refused")
            if refusal is not None:
                if scope["type"] == "http":
                    await PlainTextResponse(refusal[1], status_code=refusal[0])(scope, receive, send)
                else:
                    await send({"type": "websocket.close", "code": 1008})
                return
        await self.app(scope, receive, send)


class SameAccount:
    """Single-user mode (no log-in, everyone admin) answers only the account that started the app: another
    account on the same machine reaching 127.0.0.1 is refused. The client socket's owner is read from the
    kernel's socket table (Linux /proc/net/tcp, tcp6), as identd does; where there is none, or for a
    client on another machine (the app warns at start when it listens beyond this one), nothing is checked."""

    def __init__(self, app: ASGIApp) -> None:
        self.app, self.uid = app, os.getuid()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket") and scope.get("client") and scope.get("server"):
            owner = socket_owner(tuple(scope["client"]), tuple(scope["server"]))
            if owner is not None and owner != self.uid:
                if scope["type"] == "http":
                    await PlainTextResponse("this single-user app belongs to another account on this machine",
                                            status_code=403)(scope, receive, send)
                else:
                    await send({"type": "websocket.close", "code": 1008})
                return
        await self.app(scope, receive, send)


def socket_owner(client: tuple, server: tuple) -> int | None:
    """The uid owning the TCP socket client -> server on this machine, or None if it is not one of ours."""
    want = (_ip(client[0]), int(client[1]), _ip(server[0]), int(server[1]))
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if (*_endpoint(fields[1]), *_endpoint(fields[2])) == want:
                return int(fields[7])
    return None


def _ip(address: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    ip = ipaddress.ip_address(address)
    return ip.ipv4_mapped or ip if isinstance(ip, ipaddress.IPv6Address) else ip


def _endpoint(field: str) -> tuple:
    """'0100007F:1F90' -> (127.0.0.1, 8080): the kernel writes each 32-bit word of the address in host order."""
    address, port = field.split(":")
    raw = bytes.fromhex(address)
    ordered = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4)) if sys.byteorder == "little" else raw
    return _ip(str(ipaddress.ip_address(ordered))), int(port, 16)
