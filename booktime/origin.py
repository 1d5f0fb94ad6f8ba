"""The WebSocket origin check: the full origin (scheme, host, port) must be allowed.

A browser sends ``Origin`` with every WebSocket handshake, and a cross-site
page could otherwise open ``ws/live/`` on the visitor's session cookie. The
allowed origins are

- **the site's own**: the handshake's ``Host`` (which must be in
  ``ALLOWED_HOSTS``) with the scheme of the connection (``ws`` → ``http``,
  ``wss`` → ``https``; ``https`` also when a ``TRUSTED_PROXIES`` peer says so
  with ``SECURE_PROXY_SSL_HEADER``) and the Host's port (default 80/443);
- every entry of ``CSRF_TRUSTED_ORIGINS`` (``https://*.example.com`` allows
  its subdomains on that scheme and port, as Django's CSRF check does).

Anything else is refused with HTTP 403 before the socket is accepted: another
port or scheme of the same host, another host, ``null`` (sandboxed frames,
``file://`` pages), an origin with a path or credentials, and **a handshake
without ``Origin``**. Browsers always send one; a non-browser client must
send the site's origin (channels' ``AllowedHostsOriginValidator``, used
before, refused a missing ``Origin`` too).
"""

from __future__ import annotations

from typing import Any, NamedTuple
from urllib.parse import urlsplit

from channels.security.websocket import WebsocketDenier
from django.conf import settings
from django.http.request import split_domain_port, validate_host

from booktime.clientip import forwarded_secure

DEFAULT_PORTS = {"http": 80, "https": 443}


class Origin(NamedTuple):
    scheme: str
    host: str
    port: int


def parse_origin(value: str) -> Origin | None:
    """``scheme://host[:port]`` as an ``Origin``; None for ``null`` or anything malformed."""
    if not value or value == "null" or not value.isascii():
        return None
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS or not parts.hostname:
        return None
    if parts.username is not None or parts.password is not None:
        return None
    if parts.path not in ("", "/") or parts.query or parts.fragment or value.endswith("?"):
        return None
    return Origin(scheme, parts.hostname.lower(), port or DEFAULT_PORTS[scheme])


def _header(scope: dict[str, Any], name: bytes) -> str | None:
    values = [v for k, v in scope.get("headers", []) if k.lower() == name]
    if len(values) != 1:  # none, or ambiguous
        return None
    try:
        return values[0].decode("ascii")
    except UnicodeDecodeError:
        return None


def allowed_hosts() -> list[str]:
    hosts = list(settings.ALLOWED_HOSTS)
    if settings.DEBUG and not hosts:  # Django's own default in that case
        hosts = [".localhost", "127.0.0.1", "[::1]"]
    return hosts


def own_origin(scope: dict[str, Any]) -> Origin | None:
    """The origin of the site as this handshake reached it, if its Host is allowed."""
    host_header = _header(scope, b"host")
    if not host_header:
        return None
    domain, port = split_domain_port(host_header.lower())
    if not domain or not validate_host(domain, allowed_hosts()):
        return None
    secure = scope.get("scheme") in ("wss", "https") or forwarded_secure(scope)
    scheme = "https" if secure else "http"
    try:
        number = int(port) if port else DEFAULT_PORTS[scheme]
    except ValueError:
        return None
    return Origin(scheme, domain.strip("[]"), number)


def _matches_trusted(origin: Origin, trusted: str) -> bool:
    wildcard = "*." in trusted
    pattern = parse_origin(trusted.replace("*.", "", 1) if wildcard else trusted)
    if pattern is None or (origin.scheme, origin.port) != (pattern.scheme, pattern.port):
        return False
    if wildcard:
        return origin.host == pattern.host or origin.host.endswith("." + pattern.host)
    return origin.host == pattern.host


def origin_allowed(scope: dict[str, Any]) -> bool:
    """Whether the handshake's ``Origin`` is the site's own or a trusted one."""
    origin = parse_origin(_header(scope, b"origin") or "")
    if origin is None:
        return False
    if origin == own_origin(scope):
        return True
    return any(_matches_trusted(origin, trusted) for trusted in settings.CSRF_TRUSTED_ORIGINS)


class OriginValidator:
    """ASGI middleware for WebSocket routes: 403 at the handshake unless ``origin_allowed``."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        if scope["type"] != "websocket":
            raise ValueError("OriginValidator is for WebSocket connections only")
        if origin_allowed(scope):
            return await self.app(scope, receive, send)
        return await WebsocketDenier()(scope, receive, send)
