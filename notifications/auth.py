"""API tokens for the streaming transports.

Browsers authenticate with the session cookie (channels' AuthMiddleware).
Third parties may also open SSE, long-poll or WebSocket streams with the
same DRF token they use for the REST API: ``Authorization: Token <key>``.
A header with an unknown key makes the request anonymous, so the consumer
answers 401 / ``unauthenticated`` rather than falling back to a session.
"""

from __future__ import annotations

from typing import Any

from channels.db import database_sync_to_async
from django.contrib.auth.models import AnonymousUser


@database_sync_to_async
def user_for_token(key: str) -> Any:
    from rest_framework.authtoken.models import Token

    token = Token.objects.select_related("user").filter(key=key).first()
    if token is None or not token.user.is_active:
        return AnonymousUser()
    return token.user


def token_from_headers(headers: list[tuple[bytes, bytes]]) -> str | None:
    for name, value in headers:
        if name.lower() == b"authorization":
            scheme, _, key = value.decode("latin-1").partition(" ")
            if scheme.lower() == "token" and key.strip():
                return key.strip()
    return None


class TokenAuthMiddleware:
    """Sets ``scope["user"]`` from an ``Authorization: Token`` header, if any."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> Any:
        key = token_from_headers(scope.get("headers", []))
        if key is not None:
            scope = dict(scope, user=await user_for_token(key))
        return await self.app(scope, receive, send)
