"""The REST API's errors, rendered by DRF in the one vocabulary (``booktime.errors``).

Every error under ``api/`` (the orders' endpoints and the event feed) answers
``{"error": {"code", "message", "fields"}}`` with the code's HTTP status.
Covered: any ``ClientError`` (the domain's ``InvalidTransition`` and
``OrderError``, cursor and stream errors), a database that is briefly
unavailable (``unavailable``, 503, ``Retry-After: 2``, as on the streams),
a body Django refuses while reading it (413 ``too_large``, 400
``parse_error``: ``orders.api.parsers.refused_request``), and DRF's own exceptions, whose codes are mapped onto the vocabulary
(``not_authenticated``/``authentication_failed`` -> ``unauthenticated``,
``permission_denied`` -> ``forbidden``). Validation errors have code
``invalid`` and name each bad input in ``fields``
(``{"lines[1].quantity": "..."}``). Django's 404/500 for ``api/`` paths:
``booktime.errors.not_found``/``server_error``.
"""

from __future__ import annotations

import logging
from typing import Any

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import SuspiciousOperation
from django.http import Http404
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from booktime.errors import OUTAGE_ERRORS, ClientError, Unavailable, error_body
from orders.api.parsers import refused_request

logger = logging.getLogger(__name__)

# DRF's codes that name, in other words, a code of the vocabulary.
DRF_CODES = {
    "not_authenticated": "unauthenticated",
    "authentication_failed": "unauthenticated",
    "permission_denied": "forbidden",
}


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


def client_error_response(exc: ClientError) -> Response:
    """A ``ClientError`` as an HTTP response: its status, body and ``Retry-After``."""
    headers = {"Retry-After": str(exc.retry_after)} if exc.retry_after is not None else None
    return Response(exc.body(), status=exc.status, headers=headers)


def api_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """REST_FRAMEWORK["EXCEPTION_HANDLER"]: every error in the one JSON shape."""
    if isinstance(exc, ClientError):
        return client_error_response(exc)
    if isinstance(exc, OUTAGE_ERRORS):
        logger.warning("Database unavailable: %s: %s", type(exc).__name__, exc)
        return client_error_response(Unavailable())
    if isinstance(exc, SuspiciousOperation):  # a body too big, too many fields: the client's
        return client_error_response(refused_request(exc))

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
        code = str(detail.code if hasattr(detail, "code") and detail.code else exc.default_code)
        response.data = error_body(DRF_CODES.get(code, code), message)
    return response
