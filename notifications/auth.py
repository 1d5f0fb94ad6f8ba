"""Credentials on the streaming transports: API tokens and tracking links.

Browsers authenticate with the session cookie (``StreamAuthMiddlewareStack``:
its key is looked up by the first authorization, not at the handshake;
``notifications.access.Principal``).
Third parties may also open SSE, long-poll or WebSocket streams with the
same DRF token they use for the REST API: ``Authorization: Token <key>``.
A header with an unknown key makes the request anonymous, so the consumer
answers 401 / ``unauthenticated`` rather than falling back to a session; it
also counts against the client address (``booktime.throttles.AUTH_ADDRESS``),
and past that limit a request bearing a token is refused before the token is
looked up: 429 JSON with ``Retry-After`` (HTTP), a refused handshake (403,
WebSocket).

A tracking link's token reaches a stream in a WebSocket ``subscribe`` frame,
an ``X-Tracking-Token`` header, or the cookie the tracking page sets
(``tracking_token_for``); never in a URL, where access logs would keep it.
"""

from __future__ import annotations

import json
from typing import Any

from channels.security.websocket import WebsocketDenier
from channels.sessions import CookieMiddleware
from django.contrib.auth.models import AnonymousUser

from booktime.clientip import client_address
from booktime.errors import CODES, error_body
from booktime.limits import repeated_headers
from booktime.throttles import AUTH_ADDRESS
from notifications.hops import database_hop
from notifications.streams import StreamError, parse_stream_name
from orders.access import TRACKING_HEADER, tracking_cookie_name


def active_user_for_token(key: str) -> Any:
    """The active user an API token belongs to, else ``AnonymousUser``."""
    from rest_framework.authtoken.models import Token

    token = Token.objects.select_related("user").filter(key=key).first()
    if token is None or not token.user.is_active:
        return AnonymousUser()
    return token.user


async def checked_user_for_token(key: str, address: str) -> tuple[Any, int]:
    """(the token's user, 0), or (None, seconds to wait) past the address's
    failure limit; an unknown token counts one failure. One database trip
    (``notifications.hops``)."""
    return await database_hop(_checked_user_for_token, key, address)


def _checked_user_for_token(key: str, address: str) -> tuple[Any, int]:
    wait = AUTH_ADDRESS.wait(address)
    if wait:
        return None, wait
    user = active_user_for_token(key)
    if not user.is_authenticated:
        AUTH_ADDRESS.fail(address)
    return user, 0


def StreamAuthMiddlewareStack(inner: Any) -> Any:  # noqa: N802 - as channels' AuthMiddlewareStack
    """What the stream routes need of a request's credentials: its cookies.

    channels' ``AuthMiddlewareStack`` loads the session and its user at every
    handshake (a database hop), and its session wrapper inspects the session
    on every message sent. The stream consumers need neither: they read the
    session cookie's key (``notifications.access.Principal.of``) and resolve
    it in the same database hop as their first authorization, as
    ``AuthMiddleware`` would have (``resolve_pending``); they never change a
    session. Django's views authenticate for themselves. Profiled: the
    handshake's session + user hop was 17 % of a WebSocket connect's server
    time (docs/performance.md).
    """
    return CookieMiddleware(inner)


def token_from_headers(headers: list[tuple[bytes, bytes]]) -> str | None:
    for name, value in headers:
        if name.lower() == b"authorization":
            scheme, _, key = value.decode("latin-1").partition(" ")
            if scheme.lower() == "token" and key.strip():
                return key.strip()
    return None


def tracking_token_for(scope: dict, stream: Any, explicit: Any = None) -> Any:
    """The tracking token a request brings for ``stream``, if any.

    ``explicit`` (a WebSocket frame's ``token``) first, then the
    ``X-Tracking-Token`` header, then the tracking page's cookie for the
    stream's order (``orders.access.tracking_cookie_name``).
    """
    if explicit is not None:
        return explicit
    wanted = TRACKING_HEADER.lower().encode()
    for name, value in scope.get("headers", []):
        if name.lower() == wanted and value:
            return value.decode("latin-1")
    try:
        kind, order_id = parse_stream_name(stream)
    except StreamError:
        return None
    if kind != "order" or order_id is None:
        return None
    return (scope.get("cookies") or {}).get(tracking_cookie_name(order_id))


# Credentials a stream request brings once at most: with two, which one
# counts would be a guess (a proxy in front may pick the other).
CREDENTIAL_HEADERS = {
    b"authorization": "Authorization",
    TRACKING_HEADER.lower().encode(): TRACKING_HEADER,
}


async def refuse(
    scope: dict, receive: Any, send: Any, body: dict[str, Any], headers: list[tuple[bytes, bytes]]
) -> None:
    """``body`` as JSON with its code's status (HTTP), or a refused handshake (WebSocket)."""
    if scope["type"] == "websocket":
        await WebsocketDenier()(scope, receive, send)
        return
    await send(
        {
            "type": "http.response.start",
            "status": CODES[body["error"]["code"]],
            "headers": [
                (b"content-type", b"application/json"),
                (b"cache-control", b"no-store"),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": json.dumps(body).encode()})


async def refuse_throttled(scope: dict, receive: Any, send: Any, wait: int) -> None:
    """429 JSON with ``Retry-After`` (HTTP), or a refused handshake (WebSocket)."""
    body = error_body(
        "throttled",
        f"Too many failed authentication attempts from this address; retry in {wait} s.",
    )
    await refuse(scope, receive, send, body, [(b"retry-after", str(wait).encode())])


class TokenAuthMiddleware:
    """Sets ``scope["user"]`` from an ``Authorization: Token`` header, if any;
    counts unknown tokens and refuses an address past its failure limit. A
    credential header given twice is 400 ``invalid`` naming it."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> Any:
        repeated = repeated_headers(scope.get("headers", []), CREDENTIAL_HEADERS)
        if repeated:
            body = error_body("invalid", "Each credential header may be given once.", repeated)
            return await refuse(scope, receive, send, body, [])
        key = token_from_headers(scope.get("headers", []))
        if key is not None:
            user, wait = await checked_user_for_token(key, client_address(scope))
            if wait:
                return await refuse_throttled(scope, receive, send, wait)
            # ``api_token``: the credential notifications.access re-checks.
            scope = dict(scope, user=user, api_token=key)
        return await self.app(scope, receive, send)
