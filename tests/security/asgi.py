"""Requests to the project's real ASGI application (routing, session and token
middleware, origin check) without a server: what the fuzz and authorization
tests send, and what came back."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

from channels.testing import ApplicationCommunicator, WebsocketCommunicator

from booktime.testing.asgi import http_scope

HOST = b"127.0.0.1"
ORIGIN = b"http://127.0.0.1"


def application() -> Any:
    from booktime.asgi import application as app

    return app


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
    hold: float = 0.3,
    timeout: float = 10.0,
) -> HttpAnswer:
    """GET ``path`` through the ASGI app; read the status and what body comes at once.

    A response that has not started after ``timeout`` fails the test, unless
    nothing at all came for ``hold`` seconds (a long-poll waiting for news):
    then ``status`` is None. The request is then ended with ``http.disconnect``
    as a client going away would, and the app must finish cleanly.
    """
    communicator = ApplicationCommunicator(
        application(), http_scope(path, query, [(b"host", HOST), *(headers or [])])
    )
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
                answer.headers = {
                    k.decode("latin-1").lower(): v.decode("latin-1")
                    for k, v in message.get("headers", [])
                }
            elif message["type"] == "http.response.body":
                answer.body += message.get("body", b"")
                if not message.get("more_body", False):
                    break
                if answer.status is not None and answer.body:
                    break  # a stream: its first chunk is enough
        elif answer.status is None and time.monotonic() - quiet_since >= hold:
            break  # held open
        elif answer.status is not None and time.monotonic() - quiet_since >= hold:
            break  # a stream that sent its headers and is waiting
        if time.monotonic() > deadline:
            raise TimeoutError(f"no complete answer to {path}?{query!r} within {timeout} s")
    await communicator.send_input({"type": "http.disconnect"})
    await communicator.wait(timeout=5)
    return answer


async def ws_open(
    headers: list[tuple[bytes, bytes]], path: str = "/ws/live/"
) -> tuple[WebsocketCommunicator, bool, int | None]:
    """Open ``path`` through the ASGI app; returns (communicator, accepted, close code)."""
    communicator = WebsocketCommunicator(application(), path, headers=[(b"host", HOST), *headers])
    accepted, code = await communicator.connect(timeout=5)
    return communicator, accepted, (None if accepted else code)


async def ws_answer(
    communicator: WebsocketCommunicator, frame: dict[str, Any], timeout: float = 5.0
) -> dict[str, Any]:
    """Send one frame and return the first frame that comes back."""
    await communicator.send_json_to(frame)
    return await communicator.receive_json_from(timeout=timeout)
