"""Talking to the project's real ASGI application without a server: the
pieces the communicator-based tests share."""

from __future__ import annotations

from typing import Any


def session_cookie(user: Any) -> str:
    """``sessionid=...`` for ``user`` ("" for None; synchronous: touches the database)."""
    if user is None:
        return ""
    from django.test import Client

    client = Client()
    client.force_login(user)
    return f"sessionid={client.cookies['sessionid'].value}"


def http_scope(
    path: str, query: bytes = b"", headers: list[tuple[bytes, bytes]] | None = None
) -> dict[str, Any]:
    """An HTTP GET scope as daphne would build it, from 127.0.0.1."""
    return {
        "type": "http",
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query,
        "headers": headers if headers is not None else [(b"host", b"127.0.0.1")],
        "client": ("127.0.0.1", 40000),
        "server": ("127.0.0.1", 8000),
    }
