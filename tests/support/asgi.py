"""The project's real ASGI application (routing, session and token middleware,
origin check) without a server: the in-process helpers the communicator-based
tests share.

Signed-in sessions (``session_cookies``, ``session_cookie``), headers and
scopes as daphne would build them, one-shot requests that report what came
back (``http_get``, ``ws_open``, ``ws_answer``), and ``HttpStream`` for a
response read chunk by chunk (a stream or a parked long-poll).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

from channels.testing import ApplicationCommunicator, WebsocketCommunicator

from tests.support.sse import SSEFrame, sse_frame

HOST = b"127.0.0.1"
ORIGIN = b"http://127.0.0.1"


def application() -> Any:
    """The project's ASGI application (imported once Django is set up)."""
    from booktime.asgi import application as app

    return app


# -- sessions and headers ------------------------------------------------------------


def session_cookies(user: Any) -> dict[str, str]:
    """``{"sessionid": ...}`` of a new session signed in as ``user`` (touches the database).

    For any client: the ASGI app here, live servers (fixture ``login_cookies``).
    """
    from django.conf import settings
    from django.test import Client

    client = Client()
    client.force_login(user)
    return {settings.SESSION_COOKIE_NAME: client.cookies[settings.SESSION_COOKIE_NAME].value}


def session_cookie(user: Any) -> str:
    """``sessionid=...`` for ``user`` ("" for None; synchronous: touches the database)."""
    if user is None:
        return ""
    return "; ".join(f"{name}={value}" for name, value in session_cookies(user).items())


def with_host(headers: list[tuple[bytes, bytes]] | None) -> list[tuple[bytes, bytes]]:
    """``headers`` with ``Host: 127.0.0.1`` first, unless they name a host already."""
    headers = list(headers or [])
    if any(name == b"host" for name, _ in headers):
        return headers
    return [(b"host", HOST), *headers]


def http_headers(user: Any, **extra: str) -> list[tuple[bytes, bytes]]:
    """Host, ``user``'s session cookie (none for None) and ``extra`` (``last_event_id=...``
    becomes ``last-event-id``). Synchronous: touches the database."""
    headers = [(b"host", HOST)]
    cookie = session_cookie(user)
    if cookie:
        headers.append((b"cookie", cookie.encode()))
    headers += [(k.replace("_", "-").lower().encode(), v.encode()) for k, v in extra.items()]
    return headers


def ws_headers(user: Any, origin: str = ORIGIN.decode()) -> list[tuple[bytes, bytes]]:
    """``http_headers`` for a WebSocket opened by a page with ``origin``."""
    return http_headers(user, origin=origin)


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
        "headers": with_host(headers),
        "client": ("127.0.0.1", 40000),
        "server": ("127.0.0.1", 8000),
    }


def _header_dict(message: dict[str, Any]) -> dict[str, str]:
    """The headers of an ``http.response.start`` message, names lower-cased."""
    return {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in message.get("headers", [])}


# -- HTTP ------------------------------------------------------------------------------


STREAM_QUIET = 0.3  # seconds: a stream whose headers came and then nothing, for now


@dataclass
class HttpAnswer:
    """The start of an HTTP answer (``status`` None: still held open, e.g. a waiting long-poll)."""

    status: int | None
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "")


async def http_get(
    path: str,
    query: bytes = b"",
    headers: list[tuple[bytes, bytes]] | None = None,
    hold: float | None = None,
    timeout: float = 10.0,
) -> HttpAnswer:
    """GET ``path`` through the ASGI app; read the status and what body comes at once.

    An answer must start within ``timeout``, else the test fails. Only a caller
    that accepts a held answer (a long-poll waiting for news) passes ``hold``:
    then nothing at all for ``hold`` seconds gives ``status`` None. (Guessing
    "held" after a fixed quiet time by default misread a slow first request,
    cold imports on a busy machine, as a long-poll.) A stream that sent its
    headers and then stays quiet for ``STREAM_QUIET`` seconds is read as far as
    it came. The request is then ended with ``http.disconnect`` as a client
    going away would, and the app must finish cleanly.
    """
    communicator = ApplicationCommunicator(application(), http_scope(path, query, headers))
    await communicator.send_input({"type": "http.request", "body": b""})
    answer = HttpAnswer(status=None)
    deadline = time.monotonic() + timeout
    quiet_since = time.monotonic()
    while True:
        if not await communicator.receive_nothing(timeout=0.01, interval=0.005):
            message = await communicator.receive_output(timeout=1)
            quiet_since = time.monotonic()
            if message["type"] == "http.response.start":
                answer.status = message["status"]
                answer.headers = _header_dict(message)
            elif message["type"] == "http.response.body":
                answer.body += message.get("body", b"")
                if not message.get("more_body", False):
                    break
                if answer.status is not None and answer.body:
                    break  # a stream: its first chunk is enough
        elif answer.status is None:
            if hold is not None and time.monotonic() - quiet_since >= hold:
                break  # held open, as the caller allowed
        elif time.monotonic() - quiet_since >= STREAM_QUIET:
            break  # a stream that sent its headers and is waiting
        if time.monotonic() > deadline:
            raise TimeoutError(f"no complete answer to {path}?{query!r} within {timeout} s")
    await communicator.send_input({"type": "http.disconnect"})
    await communicator.wait(timeout=5)
    return answer


class HttpStream:
    """A streaming HTTP request to the real ASGI app, read chunk by chunk
    (``HttpCommunicator`` cannot test a response that never completes)."""

    def __init__(
        self, path: str, query: str = "", headers: list[tuple[bytes, bytes]] | None = None
    ) -> None:
        self.communicator = ApplicationCommunicator(
            application(), http_scope(path, query.encode(), headers)
        )
        self.status: int | None = None
        self.headers: dict[str, str] = {}
        self.complete = False
        self._unparsed = b""  # what ``sse()`` read past the last blank line

    async def start(self, timeout: float = 5) -> HttpStream:
        await self.communicator.send_input({"type": "http.request", "body": b""})
        start = await self.communicator.receive_output(timeout)
        assert start["type"] == "http.response.start", start
        self.status = start["status"]
        self.headers = _header_dict(start)
        return self

    async def chunk(self, timeout: float = 5) -> bytes:
        message = await self.communicator.receive_output(timeout)
        assert message["type"] == "http.response.body", message
        self.complete = not message.get("more_body", False)
        return message.get("body", b"")

    async def body(self, timeout: float = 5) -> bytes:
        data = b""
        while not self.complete:
            data += await self.chunk(timeout)
        return data

    async def json(self, timeout: float = 5) -> Any:
        return json.loads(await self.body(timeout))

    async def sse(self, timeout: float = 5) -> SSEFrame:
        """The next server-sent event block, parsed by ``tests.support.sse``
        (comment-only blocks skipped; an event may span chunks)."""
        while True:
            block, blank, rest = self._unparsed.partition(b"\n\n")
            if blank:
                self._unparsed = rest
                frame = sse_frame(block.decode().splitlines())
                if frame is not None:
                    return frame
            else:
                self._unparsed += await self.chunk(timeout)

    async def close(self) -> None:
        await self.communicator.send_input({"type": "http.disconnect"})
        await self.communicator.wait(timeout=5)


# -- WebSocket -------------------------------------------------------------------------


async def ws_open(
    headers: list[tuple[bytes, bytes]], path: str = "/ws/live/"
) -> tuple[WebsocketCommunicator, bool, int | None]:
    """Open ``path`` through the ASGI app; returns (communicator, accepted, close code)."""
    communicator = WebsocketCommunicator(application(), path, headers=with_host(headers))
    accepted, code = await communicator.connect(timeout=5)
    return communicator, accepted, (None if accepted else code)


async def open_socket(
    headers: list[tuple[bytes, bytes]], path: str = "/ws/live/"
) -> WebsocketCommunicator:
    """``ws_open`` for a socket that must be accepted."""
    communicator, accepted, code = await ws_open(headers, path)
    assert accepted, f"{path} refused the WebSocket (close code {code})"
    return communicator


async def ws_answer(
    communicator: WebsocketCommunicator, frame: dict[str, Any], timeout: float = 5.0
) -> dict[str, Any]:
    """Send one frame and return the first frame that comes back."""
    await communicator.send_json_to(frame)
    return await communicator.receive_json_from(timeout=timeout)
