"""What every REST endpoint shares: authentication, permissions and throttles
(``ApiMixin``), the error responses in the schema, pagination that refuses bad
``page``/``page_size`` (``StrictPagination``), and ETag/304 for cheap polling.

Used by the orders' endpoints here and by the event feed in ``notifications.api``.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from django.core.serializers.json import DjangoJSONEncoder
from django.utils.http import parse_etags
from drf_spectacular.utils import OpenApiResponse
from rest_framework import status
from rest_framework.authentication import SessionAuthentication
from rest_framework.pagination import PageNumberPagination
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response

from booktime.errors import ClientError
from orders.api.permissions import (
    DEFAULT_THROTTLES,
    ThrottledTokenAuthentication,
    TokenReadOnlyUnlessStaff,
)
from orders.api.serializers import ErrorSerializer


def errors(*codes: int) -> dict[int, Any]:
    """Schema entries for error statuses, all in the one error shape."""
    return {code: ErrorSerializer for code in codes}


COMMON_ERRORS = (401, 403, 429, 503)
# What any operation that reads a body may answer before the view runs: a body
# over DATA_UPLOAD_MAX_MEMORY_SIZE (413 ``too_large``, orders.api.parsers) or a
# Content-Type the API does not parse, or none (415 ``unsupported_media_type``).
BODY_ERRORS = (413, 415)


def document_body_errors(result: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    """drf-spectacular post-processing hook (``SPECTACULAR_SETTINGS``): every
    operation with a request body documents ``BODY_ERRORS`` in the one error
    shape, as the 400 beside it does."""
    for operations in result.get("paths", {}).values():
        for operation in operations.values():
            if not isinstance(operation, dict) or "requestBody" not in operation:
                continue
            responses = operation.setdefault("responses", {})
            for code in BODY_ERRORS:
                responses.setdefault(
                    str(code),
                    {
                        "content": {
                            "application/json": {"schema": {"$ref": "#/components/schemas/Error"}}
                        },
                        "description": "",
                    },
                )
    return result


class ApiMixin:
    """Token or session authentication; the API's permissions and throttles.

    Token first: an anonymous caller then gets 401 with ``WWW-Authenticate:
    Token`` (DRF answers 403 when the first authenticator offers no challenge).
    Session authentication enforces CSRF for unsafe methods. Unknown tokens
    count against the client address (``ThrottledTokenAuthentication``).
    Throttles run before permissions, so a refused caller (an anonymous 401,
    a 403) spends its budget too.
    """

    authentication_classes = [ThrottledTokenAuthentication, SessionAuthentication]
    permission_classes = [IsAuthenticated, TokenReadOnlyUnlessStaff]
    throttle_classes = DEFAULT_THROTTLES
    throttles_checked = False

    def check_permissions(self, request: Request) -> None:
        self.check_throttles(request)
        self.throttles_checked = True
        super().check_permissions(request)  # type: ignore[misc]

    def check_throttles(self, request: Request) -> None:
        if not self.throttles_checked:  # DRF calls it again after the permissions
            super().check_throttles(request)  # type: ignore[misc]


# --- ETag / 304 ---------------------------------------------------------------


def weak_etag(data: Any) -> str:
    digest = hashlib.sha256(
        json.dumps(data, sort_keys=True, cls=DjangoJSONEncoder).encode()
    ).hexdigest()
    return f'W/"{digest[:32]}"'


def etag_matches(request: Request, etag: str) -> bool:
    """If-None-Match against ``etag`` with the weak comparison RFC 9110 asks for."""
    header = request.headers.get("If-None-Match")
    if not header:
        return False
    candidates = parse_etags(header)
    if "*" in candidates:
        return True
    bare = etag.removeprefix("W/")
    return any(candidate.removeprefix("W/") == bare for candidate in candidates)


def conditional_response(request: Request, data: Any, etag: str) -> Response:
    """200 with ``data`` and its ETag, or an empty 304 when the client has it already."""
    headers = {"ETag": etag, "Cache-Control": "private, no-cache"}
    if etag_matches(request, etag):
        return Response(status=status.HTTP_304_NOT_MODIFIED, headers=headers)
    return Response(data, headers=headers)


NOT_MODIFIED = OpenApiResponse(description="Not modified (If-None-Match matched the ETag).")


# --- pagination ---------------------------------------------------------------


class StrictPagination(PageNumberPagination):
    """Page-number pagination that refuses what DRF would ignore or guess at.

    ``page`` and ``page_size`` must be positive integers (``page`` may also be
    ``last``), ``page_size`` at most ``max_page_size``: anything else is 400
    ``invalid`` naming the parameter (DRF silently falls back to the default
    size, and answers ``page=abc`` with a 404). A page past the last is still
    404. Repeated parameters are refused before this (``booktime.limits``).
    """

    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 200
    max_page_digits = 18

    def get_page_size(self, request: Request) -> int:
        raw = request.query_params.get(self.page_size_query_param)
        if raw is None:
            return self.page_size
        return self.positive_int(raw, self.page_size_query_param, self.max_page_size)

    def paginate_queryset(self, queryset: Any, request: Request, view: Any = None) -> Any:
        raw = request.query_params.get(self.page_query_param)
        if raw is not None and raw not in self.last_page_strings:
            self.positive_int(raw, self.page_query_param, 10**self.max_page_digits - 1)
        return super().paginate_queryset(queryset, request, view)

    @staticmethod
    def positive_int(raw: str, name: str, maximum: int) -> int:
        """``raw`` as an integer from 1 to ``maximum``, else ``ClientError("invalid")``."""
        digits = len(str(maximum))
        if raw.isascii() and raw.isdigit() and len(raw) <= digits and 1 <= int(raw) <= maximum:
            return int(raw)
        raise ClientError("invalid", f"{name} must be an integer from 1 to {maximum}", field=name)

    def get_schema_operation_parameters(self, view: Any) -> list[dict[str, Any]]:
        parameters = super().get_schema_operation_parameters(view)
        for parameter in parameters:
            if parameter["name"] == self.page_size_query_param:
                parameter["schema"].update(minimum=1, maximum=self.max_page_size)
            elif parameter["name"] == self.page_query_param:
                parameter["schema"].update(minimum=1)
        return parameters
