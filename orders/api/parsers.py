"""Request body parsers for the whole REST API (``REST_FRAMEWORK["DEFAULT_PARSER_CLASSES"]``).

DRF's own parsers let a body nested 1,000 deep raise ``RecursionError`` (a
500), read a JSON body of any size into memory, and let Django's
``TooManyFieldsSent``/``RequestDataTooBig`` escape as 500s. These answer in the
one vocabulary instead, naming the ``body``:

- ``parse_error`` (400): not JSON, or JSON outside ``booktime.limits``
  (too deep, numbers too long or out of range, NUL or lone surrogates,
  a key given twice), or a form with too many fields;
- ``too_large`` (413): over ``DATA_UPLOAD_MAX_MEMORY_SIZE`` bytes.

Django itself may read the body first (the CSRF check of session
authentication reads the form); what it refuses there reaches
``orders.api.errors`` as a ``SuspiciousOperation``, which ``refused_request``
turns into the same answers.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.exceptions import (
    RequestDataTooBig,
    SuspiciousOperation,
    TooManyFieldsSent,
    TooManyFilesSent,
)
from django.http import QueryDict
from rest_framework import parsers

from booktime.errors import ClientError
from booktime.limits import InputError, load_json


def body_too_large() -> ClientError:
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    return ClientError("too_large", f"request bodies are limited to {limit} bytes", field="body")


def read_bounded(stream: Any) -> bytes:
    """The whole body, refusing one over ``DATA_UPLOAD_MAX_MEMORY_SIZE`` bytes."""
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    data = stream.read(limit + 1) if limit is not None else stream.read()
    if limit is not None and len(data) > limit:
        raise body_too_large()
    return data


def bad_body(message: str) -> ClientError:
    return ClientError("parse_error", message, field="body")


def refused_request(exc: SuspiciousOperation) -> ClientError:
    """A request body Django refuses while reading it (as when the CSRF check
    reads the form before any parser runs) in the one vocabulary."""
    if isinstance(exc, RequestDataTooBig):
        return body_too_large()
    if isinstance(exc, TooManyFieldsSent | TooManyFilesSent):
        return bad_body(str(exc))
    return ClientError("invalid", "The request was refused as malformed.")


class JSONParser(parsers.JSONParser):
    """JSON under ``booktime.limits``, at most ``DATA_UPLOAD_MAX_MEMORY_SIZE`` bytes."""

    def parse(self, stream: Any, media_type: Any = None, parser_context: Any = None) -> Any:
        encoding = parsers.get_encoding(parser_context or {})
        try:
            text = read_bounded(stream).decode(encoding)
        except UnicodeDecodeError:
            raise bad_body(f"the body is not valid {encoding} text") from None
        try:
            return load_json(text)
        except InputError as exc:
            raise bad_body(f"JSON parse error: {exc}") from None


class FormParser(parsers.FormParser):
    """URL-encoded forms, bounded in size and field count."""

    def parse(self, stream: Any, media_type: Any = None, parser_context: Any = None) -> Any:
        encoding = parsers.get_encoding(parser_context or {})
        try:
            return QueryDict(read_bounded(stream), encoding=encoding)
        except SuspiciousOperation as exc:  # TooManyFieldsSent
            raise bad_body(str(exc)) from None


class MultiPartParser(parsers.MultiPartParser):
    """Multipart forms, bounded in size and field count (no endpoint takes files)."""

    def parse(self, stream: Any, media_type: Any = None, parser_context: Any = None) -> Any:
        request = (parser_context or {}).get("request")
        meta = getattr(request, "META", {})
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        try:
            length = int(meta.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = 0
        if limit is not None and length > limit:
            raise body_too_large()
        try:
            return super().parse(stream, media_type, parser_context)
        except RequestDataTooBig:
            raise body_too_large() from None
        except SuspiciousOperation as exc:  # TooManyFieldsSent, TooManyFilesSent
            raise bad_body(str(exc)) from None
