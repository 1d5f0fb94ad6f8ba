"""One JSON error shape for the whole API.

Every error under ``api/`` answers ``{"error": {"code", "message", "fields"}}``.
Input errors always have code ``invalid`` and name each bad input in
``fields`` (``{"lines[1].quantity": "..."}``, ``{"after": "..."}``). Covered:
DRF's own exceptions, the domain errors (``InvalidTransition`` -> 409,
``OrderError`` -> 400), cursor and stream errors from ``notifications``, a
database that is briefly unavailable (503), and Django's 404/500 for any
``api/`` path (``handler404``/``handler500`` in ``booktime/urls.py``).
"""

from __future__ import annotations

import logging
from typing import Any

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.db import InterfaceError, OperationalError
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.views import defaults
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from notifications.log import CursorError
from notifications.streams import StreamError
from orders.actions import OrderError
from orders.status import InvalidTransition

logger = logging.getLogger(__name__)

API_PREFIX = "/api/"
# A database restart or failover usually takes a few seconds.
DB_RETRY_AFTER_SECONDS = 5


def error_body(
    code: str, message: str, fields: dict[str, Any] | None = None, **extra: Any
) -> dict[str, Any]:
    """The one error shape; ``extra`` adds keys next to code/message/fields."""
    return {"error": {"code": code, "message": message, "fields": fields or {}, **extra}}


def flatten_errors(detail: Any, prefix: str = "") -> dict[str, str]:
    """DRF's nested validation errors as ``{"lines[0].quantity": "message"}``."""
    flat: dict[str, str] = {}
    if isinstance(detail, dict):
        for key, value in detail.items():
            if key == "non_field_errors" and prefix:
                name = prefix  # an error about the nested object as a whole
            elif isinstance(key, int):  # many=True serializers key errors by index
                name = f"{prefix}[{key}]"
            else:
                name = f"{prefix}.{key}" if prefix else str(key)
            flat.update(flatten_errors(value, name))
    elif isinstance(detail, list):
        if all(not isinstance(item, dict | list) for item in detail):
            if detail:
                flat[prefix or "non_field_errors"] = " ".join(str(item) for item in detail)
        else:
            for index, item in enumerate(detail):
                flat.update(flatten_errors(item, f"{prefix}[{index}]"))
    else:
        flat[prefix or "non_field_errors"] = str(detail)
    return flat


def _validation_message(fields: dict[str, str]) -> str:
    if list(fields) == ["non_field_errors"]:
        return fields["non_field_errors"]
    return "Invalid input: " + ", ".join(fields) + "."


def api_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """REST_FRAMEWORK["EXCEPTION_HANDLER"]: every error in the one JSON shape."""
    if isinstance(exc, InvalidTransition):
        return Response(
            error_body(
                "invalid_transition",
                str(exc),
                {"status": str(exc)},
                current=exc.current,
                requested=exc.requested,
                allowed=list(exc.allowed),
            ),
            status=status.HTTP_409_CONFLICT,
        )
    if isinstance(exc, OrderError):
        return Response(error_body("invalid", exc.message, dict(exc.fields)), status=400)
    if isinstance(exc, CursorError):
        return Response(error_body("invalid", exc.message, {exc.param: exc.message}), status=400)
    if isinstance(exc, StreamError):
        return Response(error_body(exc.code, exc.message), status=exc.http_status)
    if isinstance(exc, OperationalError | InterfaceError):
        logger.warning("Database unavailable: %s: %s", type(exc).__name__, exc)
        return Response(
            error_body("database_unavailable", "The database is briefly unavailable; retry soon."),
            status=status.HTTP_503_SERVICE_UNAVAILABLE,
            headers={"Retry-After": str(DB_RETRY_AFTER_SECONDS)},
        )

    # What DRF's own handler does, done here too so the reshaping below sees it.
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied()
    response = drf_exception_handler(exc, context)
    if response is None:
        # Not an API exception: a bug. Log it with its traceback and answer in
        # the API's shape rather than with Django's HTML page.
        logger.exception("Unhandled error in %s", context.get("view").__class__.__name__)
        return Response(
            error_body("server_error", "Internal server error."),
            status=status.HTTP_500_INTERNAL_SERVER_ERROR,
        )

    if isinstance(exc, exceptions.ValidationError):
        fields = flatten_errors(exc.detail)
        response.data = error_body("invalid", _validation_message(fields), fields)
    else:
        detail = exc.detail
        message = str(detail) if not isinstance(detail, dict | list) else "Request failed."
        code = detail.code if hasattr(detail, "code") and detail.code else exc.default_code
        response.data = error_body(str(code), message)
    return response


def is_api_request(request: HttpRequest) -> bool:
    return request.path.startswith(API_PREFIX)


def not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    """handler404: JSON for api/ paths, Django's page elsewhere."""
    if is_api_request(request):
        return JsonResponse(error_body("not_found", "Not found."), status=404)
    return defaults.page_not_found(request, exception)


def server_error(request: HttpRequest) -> HttpResponse:
    """handler500: JSON for api/ paths, Django's page elsewhere."""
    if is_api_request(request):
        return JsonResponse(error_body("server_error", "Internal server error."), status=500)
    return defaults.server_error(request)
