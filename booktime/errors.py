"""One error vocabulary for every surface: the REST API, WebSocket, SSE and long-poll.

A refusal is a ``ClientError``: a ``code`` from ``CODES`` (which fixes its
HTTP status), a human ``message``, the input it is about (``fields``) and,
for ``unavailable``, how long to wait (``RETRY_AFTER``). The domain
(``orders``), the stream rules (``notifications``) and the transports raise
it; each surface renders it the same way:

- HTTP (REST, SSE, long-poll): status ``CODES[code]``, body ``error_body``
  ``{"error": {"code", "message", "fields"}}``, ``Retry-After`` when set.
  REST renders through ``orders.api.errors.api_exception_handler``; Django's
  404/500 for ``api/`` paths through ``not_found``/``server_error`` here.
- WebSocket: the frame ``{"type": "error", "code", "message", ...}``
  (``ClientError.frame``), with ``retry_after`` when set.

A database that does not answer (``OUTAGE_ERRORS``) is ``unavailable`` (503,
``Retry-After: 2``) on every surface: ``Unavailable``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from django.db import InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views import defaults

# code -> HTTP status. Every code any surface sends is listed here.
CODES: dict[str, int] = {
    # The input is wrong; ``fields`` names it where there is one.
    "invalid": 400,  # a parameter or body field failed validation, or came twice
    "parse_error": 400,  # REST: the body could not be parsed, or broke booktime.limits
    "bad_cursor": 400,  # ``after`` / ``Last-Event-ID`` is not a non-negative integer
    "bad_stream": 400,  # a stream name that is not order:<id>, mine or staff
    "bad_timeout": 400,  # long-poll ``timeout`` out of range
    "bad_token": 400,  # WebSocket: a tracking ``token`` that is not a string
    "bad_json": 400,  # WebSocket: a frame that is not a JSON object within booktime.limits
    "bad_frame": 400,  # WebSocket: a binary frame
    "unknown_action": 400,  # WebSocket: ``action`` is not subscribe, unsubscribe or ping
    "not_subscribed": 400,  # WebSocket: unsubscribe from a stream not followed
    "too_large": 413,  # a WebSocket frame or a REST body over its size limit
    # Who is asking.
    "unauthenticated": 401,  # no or bad credentials (sign in, token, tracking link)
    "forbidden": 403,  # known, but not allowed (says nothing about whether it exists)
    "not_found": 404,  # unknown path, or an order the caller may not see
    "method_not_allowed": 405,
    "not_acceptable": 406,
    "unsupported_media_type": 415,
    # The state of the order.
    "invalid_transition": 409,  # the lifecycle forbids it; ``allowed`` lists what may come next
    # Limits.
    "throttled": 429,  # REST: over the request rate; ``Retry-After`` from the throttle
    "too_many_polls": 429,  # long-poll: too many open at once for this client
    "too_many_streams": 429,  # SSE: too many open at once for this client
    "too_many_subscriptions": 429,  # WebSocket: too many streams on one socket
    # The server.
    "server_error": 500,  # a bug; logged with its traceback, never shown
    "unavailable": 503,  # the database is briefly unreachable; retry after RETRY_AFTER
}

# Seconds to wait before retrying, by code (HTTP ``Retry-After``, WebSocket ``retry_after``).
RETRY_AFTER: dict[str, int] = {"unavailable": 2}

# Database errors that mean "not reachable right now" rather than a bug.
OUTAGE_ERRORS: tuple[type[Exception], ...] = (OperationalError, InterfaceError)

API_PREFIX = "/api/"


def error_body(
    code: str, message: str, fields: Mapping[str, Any] | None = None, **extra: Any
) -> dict[str, Any]:
    """The one HTTP error body; ``extra`` adds keys next to code/message/fields."""
    return {"error": {"code": code, "message": message, "fields": dict(fields or {}), **extra}}


class ClientError(Exception):
    """A request the server refuses, in the one vocabulary (see the module docstring).

    ``field`` names the one input at fault (``fields`` then maps it to the
    message); ``fields`` maps several. ``extra`` goes into the body or frame
    as is (``invalid_transition``'s ``allowed``).
    """

    def __init__(
        self,
        code: str,
        message: str,
        *,
        field: str | None = None,
        fields: Mapping[str, Any] | None = None,
        **extra: Any,
    ) -> None:
        if code not in CODES:
            raise ValueError(f"unknown error code {code!r}: add it to booktime.errors.CODES")
        super().__init__(message)
        self.code = code
        self.message = message
        self.field = field
        self.fields: dict[str, Any] = dict(fields or ({field: message} if field else {}))
        self.extra = extra

    @property
    def status(self) -> int:
        """The HTTP status of this error's code."""
        return CODES[self.code]

    @property
    def retry_after(self) -> int | None:
        """Seconds the client should wait before retrying, if the code says so."""
        return RETRY_AFTER.get(self.code)

    def body(self) -> dict[str, Any]:
        """The HTTP JSON body."""
        return error_body(self.code, self.message, self.fields, **self.extra)

    def frame(self, **context: Any) -> dict[str, Any]:
        """The WebSocket error frame; ``context`` adds keys such as ``stream``."""
        frame = {"type": "error", "code": self.code, "message": self.message}
        frame.update(self.extra)
        frame.update(context)
        if self.retry_after is not None:
            frame["retry_after"] = self.retry_after
        return frame


class Unavailable(ClientError):
    """The database could not be reached: 503 with ``Retry-After`` on every surface."""

    def __init__(
        self, message: str = "The database is briefly unavailable; retry shortly."
    ) -> None:
        super().__init__("unavailable", message)


class WithoutTraceback(logging.Filter):
    """Drop the traceback from a record (``LOGGING``'s ``django.security``
    handler): a request Django refuses as suspicious, such as a bad ``Host``
    header, is the client's error, not a bug; one line says enough."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.exc_info = None
        record.exc_text = None
        return True


# --- Django's 404/500 (``handler404``/``handler500`` in booktime/urls.py) ----------


def is_api_request(request: HttpRequest) -> bool:
    return request.path.startswith(API_PREFIX)


def not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    """handler404: JSON for api/ paths, Django's page elsewhere."""
    if is_api_request(request):
        return JsonResponse(error_body("not_found", "Not found."), status=CODES["not_found"])
    return defaults.page_not_found(request, exception)


def server_error(request: HttpRequest) -> HttpResponse:
    """handler500: JSON for api/ paths, Django's page elsewhere."""
    if is_api_request(request):
        body = error_body("server_error", "Internal server error.")
        return JsonResponse(body, status=CODES["server_error"])
    return defaults.server_error(request)
