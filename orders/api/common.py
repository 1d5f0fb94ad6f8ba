"""What every REST endpoint shares: authentication, permissions and throttles
(``ApiMixin``), the error responses in the schema, and ETag/304 for cheap polling.

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
from rest_framework.authentication import SessionAuthentication, TokenAuthentication
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response

from orders.api.permissions import DEFAULT_THROTTLES, TokenReadOnlyUnlessStaff
from orders.api.serializers import ErrorSerializer


def errors(*codes: int) -> dict[int, Any]:
    """Schema entries for error statuses, all in the one error shape."""
    return {code: ErrorSerializer for code in codes}


COMMON_ERRORS = (401, 403, 429, 503)


class ApiMixin:
    """Token or session authentication; the API's permissions and throttles.

    Token first: an anonymous caller then gets 401 with ``WWW-Authenticate:
    Token`` (DRF answers 403 when the first authenticator offers no challenge).
    Session authentication enforces CSRF for unsafe methods.
    """

    authentication_classes = [TokenAuthentication, SessionAuthentication]
    permission_classes = [IsAuthenticated, TokenReadOnlyUnlessStaff]
    throttle_classes = DEFAULT_THROTTLES


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
