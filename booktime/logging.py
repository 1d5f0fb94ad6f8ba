"""Log format and the request/connection id that ties a request's lines together.

``RequestIdMiddleware`` (outermost in ``booktime/asgi.py``) gives every HTTP
request and WebSocket connection an id: the proxy's ``X-Request-ID`` (nginx
sends ``$request_id``, deploy/nginx/booktime.conf) when it is well formed,
else a fresh one. ``RequestIdFilter`` puts it on every log record as
``request_id``; ``JsonFormatter`` (``LOG_FORMAT=json``) writes one JSON object
per line.
"""

from __future__ import annotations

import json
import logging
import re
import uuid
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

request_id: ContextVar[str | None] = ContextVar("booktime_request_id", default=None)

_VALID_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")


def id_for(scope: dict[str, Any]) -> str:
    """The proxy's X-Request-ID if it looks like an id, else a new random one."""
    for name, value in scope.get("headers", ()):
        if name == b"x-request-id":
            candidate = value.decode("latin-1")
            if _VALID_ID.fullmatch(candidate):
                return candidate
    return uuid.uuid4().hex


class RequestIdMiddleware:
    """ASGI: run each HTTP request / WebSocket connection with its id in ``request_id``."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        token = request_id.set(id_for(scope))
        try:
            return await self.app(scope, receive, send)
        finally:
            request_id.reset(token)


class RequestIdFilter(logging.Filter):
    """Adds ``record.request_id`` (``-`` outside a request)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id.get() or "-"
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, request_id, exception."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", None) or request_id.get(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)
