"""Who may talk to the app over the network, checked before Gradio sees a request (ASGI middleware):

- the **Host** header must name this app (`XR_ALLOWED_HOSTS`, by default the loopback names and the
  address it listens on), or a page of any web site could reach a local app through DNS rebinding;
- a request that carries an **Origin** (every browser fetch and form post does) must come from a page of
  this app: the Origin's host and port equal the Host header. Gradio's own CORS rules answer any origin
  with credentials when the Host is not localhost, which would let any page a logged-in user opens act
  as that user.
"""
from __future__ import annotations

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
