"""What JSON from a client may look like, on every surface: one parser for all.

WebSocket frames (``notifications.websocket``) and REST bodies
(``orders.api.parsers``) are parsed by ``load_json``. It refuses, with an
``InputError`` that says what is wrong and never with a crash, what would
cost the server more than the input is worth or could not be stored or
answered later:

- nesting deeper than ``MAX_JSON_DEPTH``: CPython's parser recurses, ~1,000
  levels raise ``RecursionError``, and every later walk of the value would
  recurse again. Checked on the text before parsing, in C-speed passes;
- numbers longer than ``MAX_NUMBER_CHARS``: Python refuses integers over
  4,300 digits and converting long ones is quadratic; floats that overflow
  (``1e400`` would become ``inf``, which a JSON response cannot carry) and
  the non-JSON constants ``NaN`` and ``Infinity``;
- strings holding NUL or a lone surrogate (``"\\u0000"``, ``"\\ud800"``):
  no UTF-8 response and no PostgreSQL text column can hold them;
- an object naming a key twice: which value would count is a guess.

How many bytes may arrive at all is the surface's own limit
(``MAX_WEBSOCKET_FRAME_BYTES``, ``DATA_UPLOAD_MAX_MEMORY_SIZE``).

Query parameters: one value each. A parameter given twice under ``api/``
is 400 ``invalid`` naming it (``RepeatedParamsMiddleware``); the SSE and
long-poll consumers apply the same rule (``notifications.http``).
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.http import HttpRequest, HttpResponse, JsonResponse

from booktime.errors import CODES, error_body, is_api_request

# Deep enough for any request the API or the stream protocol defines (3 levels).
MAX_JSON_DEPTH = 32
# More characters than any id, cursor, price or quantity needs (2**63 has 19 digits).
MAX_NUMBER_CHARS = 40

# A JSON string, escapes included (unrolled, so long strings do not backtrack).
_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
_INNERMOST_PAIR = re.compile(r"\[\]|\{\}")
# Escapes that may stand for NUL or half of a surrogate pair; a hit is checked
# on the parsed value (the text may merely contain a backslash before "u").
_SUSPECT_ESCAPE = re.compile(r"\\u(?:0000|[dD][89a-fA-F][0-9a-fA-F]{2})")


class InputError(ValueError):
    """JSON the server will not take; the message says why (safe to show)."""


def load_json(text: str | bytes) -> Any:
    """Parse client JSON under the rules above; raises ``InputError``."""
    if isinstance(text, bytes | bytearray):
        try:
            text = bytes(text).decode("utf-8")
        except UnicodeDecodeError:
            raise InputError("not UTF-8 text") from None
    check_depth(text)
    try:
        value = json.loads(
            text,
            parse_int=_parse_int,
            parse_float=_parse_float,
            parse_constant=_refuse_constant,
            object_pairs_hook=_unique_keys,
        )
    except RecursionError:
        # Unbalanced brackets escape the text check; the parser still stops.
        raise InputError(f"nested deeper than {MAX_JSON_DEPTH} levels") from None
    except InputError:
        raise
    except ValueError as exc:
        raise InputError(f"not valid JSON ({_short(exc)})") from None
    if _SUSPECT_ESCAPE.search(text):
        check_strings(value)
    return value


def check_depth(text: str) -> None:
    """Refuse JSON text nested deeper than ``MAX_JSON_DEPTH`` without parsing it.

    Strings are blanked out, everything but brackets dropped, then innermost
    ``[]``/``{}`` pairs are removed one level per pass (each pass a C-speed
    regex): a pair still left after ``MAX_JSON_DEPTH`` passes is too deep.
    """
    skeleton = _NOT_BRACKET.sub("", _STRING.sub("", text))
    for _ in range(MAX_JSON_DEPTH):
        if not skeleton:
            return
        skeleton, removed = _INNERMOST_PAIR.subn("", skeleton)
        if not removed:
            return  # unbalanced: the parser reports the syntax error
    if _INNERMOST_PAIR.search(skeleton):
        raise InputError(f"nested deeper than {MAX_JSON_DEPTH} levels")


def check_text(value: str, what: str = "text") -> None:
    """Refuse text with NUL or a lone surrogate (``InputError`` naming ``what``)."""
    if "\x00" in value:
        raise InputError(f"{what} contains a NUL character")
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise InputError(f"{what} contains a lone surrogate (not valid Unicode)") from None


def check_strings(value: Any) -> None:
    """``check_text`` on every string and key of a parsed value (iteratively)."""
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, str):
            check_text(item, "a string")
        elif isinstance(item, dict):
            pending.extend(item.keys())
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)


def _parse_int(text: str) -> int:
    if len(text) > MAX_NUMBER_CHARS:
        raise InputError(f"a number longer than {MAX_NUMBER_CHARS} characters")
    return int(text)


def _parse_float(text: str) -> float:
    if len(text) > MAX_NUMBER_CHARS:
        raise InputError(f"a number longer than {MAX_NUMBER_CHARS} characters")
    value = float(text)
    if math.isinf(value):
        raise InputError(f"the number {text} is out of range")
    return value


def _refuse_constant(name: str) -> Any:
    raise InputError(f"{name} is not a JSON number")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise InputError(f"the key {_short(key)!r} appears twice in one object")
            seen.add(key)
    return result


def _short(value: Any, limit: int = 60) -> str:
    text = str(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def repeated_params(pairs: list[tuple[str, list[str]]]) -> dict[str, str]:
    """``{name: message}`` for every parameter given more than once."""
    return {name: f"{name} is given more than once" for name, values in pairs if len(values) > 1}


def repeated_headers(headers: list[tuple[bytes, bytes]], names: dict[bytes, str]) -> dict[str, str]:
    """``repeated_params`` for the headers in ``names`` (lower-case name: the
    name to report) of an ASGI scope's ``headers``."""
    given: dict[bytes, list[str]] = {}
    for key, value in headers:
        if key.lower() in names:
            given.setdefault(key.lower(), []).append(value.decode("latin-1"))
    return repeated_params([(names[key], values) for key, values in given.items()])


class RepeatedParamsMiddleware:
    """API requests naming a query parameter twice get 400 ``invalid`` naming it.

    Which of two values counts would be a guess (DRF takes the last, a proxy
    or cache in front may take the first). Sync and async capable, with no
    thread hop: the check is a look at the query string.
    """

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Any) -> None:
        self.get_response = get_response
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> Any:
        if self.is_async:
            return self._acall(request)
        return self.refusal(request) or self.get_response(request)

    async def _acall(self, request: HttpRequest) -> HttpResponse:
        return self.refusal(request) or await self.get_response(request)

    @staticmethod
    def refusal(request: HttpRequest) -> HttpResponse | None:
        if not is_api_request(request):
            return None
        fields = repeated_params(list(request.GET.lists()))
        if not fields:
            return None
        body = error_body("invalid", "Each query parameter may be given once.", fields)
        return JsonResponse(body, status=CODES["invalid"])
