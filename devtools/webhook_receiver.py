"""A webhook receiver in a child process, for the tests and ``python -m bench --webhooks``.

``WebhookReceiver`` (an ``HttpServerProcess``) runs this module as
``python -m devtools.webhook_receiver --fd N --record FILE``: plain asyncio
HTTP/1.1 with keep-alive on the listening socket it was handed, no
dependencies, cheap enough to run ten next to the bench. Each request is
appended to FILE as one JSON line ``{"path", "headers", "body",
"received_at" (Unix time), "status"}`` and read back with ``requests()``,
``event_ids()`` or ``received()``.

Each path answers as its mode says (default: 200 at once, body ``ok``);
``set_mode`` changes it over HTTP (``POST /_control/mode``):

- ``status``: the status to answer;
- ``sleep``: seconds to wait before answering (a slow receiver);
- ``body_bytes``: answer with a body of that many bytes, written in chunks
  as the client reads them (never held in memory); once the answer has
  ended (all sent, or the client closed the connection), how many bytes went
  out is in ``stats()["sent"]``.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import socket
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from devtools.processes import HttpServerProcess

MAX_REQUEST_BODY = 1024 * 1024
CHUNK = 64 * 1024


# -- the server (runs in the child) ---------------------------------------------


class Receiver:
    def __init__(self, record: str, default_status: int = 200) -> None:
        self.record = open(record, "a", buffering=1)  # noqa: SIM115 - lives as long as the process
        self.default: dict[str, Any] = {"status": default_status}
        self.modes: dict[str, dict[str, Any]] = {}
        self.sent: dict[str, int] = {}  # body bytes written per path, once done (body_bytes)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                received_at = time.time()
                lines = head.decode("latin-1").split("\r\n")
                method, target, _ = lines[0].split(" ", 2)
                headers = {}
                for line in lines[1:]:
                    if ":" in line:
                        name, value = line.split(":", 1)
                        headers[name.strip().lower()] = value.strip()
                length = min(int(headers.get("content-length", "0") or 0), MAX_REQUEST_BODY)
                body = (await reader.readexactly(length)).decode() if length else ""
                path = target.split("?", 1)[0]
                if path.startswith("/_control/"):
                    status, answer = self.control(method, path, body)
                    await self.answer(writer, status, answer.encode())
                    continue
                mode = self.modes.get(path, self.default)
                if mode.get("sleep"):
                    await asyncio.sleep(float(mode["sleep"]))
                status = int(mode.get("status", 200))
                entry = {"path": path, "headers": headers, "body": body}
                entry |= {"received_at": received_at, "status": status}
                self.record.write(json.dumps(entry) + "\n")
                if mode.get("body_bytes"):
                    await self.answer_huge(writer, path, status, int(mode["body_bytes"]))
                else:
                    await self.answer(writer, status, b"ok")
        except (
            asyncio.IncompleteReadError,
            asyncio.LimitOverrunError,
            ConnectionError,
            ValueError,
        ):
            pass
        finally:
            writer.close()

    @staticmethod
    async def answer(writer: asyncio.StreamWriter, status: int, data: bytes) -> None:
        writer.write(
            f"HTTP/1.1 {status} X\r\nContent-Type: text/plain\r\n"
            f"Content-Length: {len(data)}\r\n\r\n".encode()
            + data
        )
        await writer.drain()

    async def answer_huge(
        self, writer: asyncio.StreamWriter, path: str, status: int, size: int
    ) -> None:
        writer.write(
            f"HTTP/1.1 {status} X\r\nContent-Type: text/plain\r\n"
            f"Content-Length: {size}\r\n\r\n".encode()
        )
        chunk = b"x" * CHUNK
        sent = 0
        try:
            while sent < size:
                part = chunk[: size - sent]
                writer.write(part)
                await writer.drain()  # raises once the client has closed the connection
                sent += len(part)
        finally:
            self.sent[path] = sent

    def control(self, method: str, path: str, body: str) -> tuple[int, str]:
        if method == "POST" and path == "/_control/mode":
            mode = json.loads(body)
            self.modes[mode.pop("path")] = mode
            return 200, "ok"
        if path == "/_control/stats":
            return 200, json.dumps({"sent": self.sent})
        if path == "/_control/ping":
            return 200, "pong"
        return 404, "unknown control"


async def serve(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m devtools.webhook_receiver")
    parser.add_argument("--fd", type=int, required=True, help="listening socket to serve on")
    parser.add_argument("--record", required=True, help="file to append requests to")
    parser.add_argument("--status", type=int, default=200, help="answer for every path at start")
    args = parser.parse_args(argv)
    receiver = Receiver(args.record, args.status)
    listener = socket.socket(fileno=args.fd)
    server = await asyncio.start_server(receiver.handle, sock=listener, backlog=1024)
    async with server:
        await server.serve_forever()


# -- the handle (in the parent) -----------------------------------------------------


class WebhookReceiver(HttpServerProcess):
    """A receiver process on 127.0.0.1; what it got is read back from its record file.

    ``status`` is every path's answer at start (``set_mode`` changes one
    path's). ``restart()`` keeps the port and the record.
    """

    READY_PATH = "/_control/ping"
    START_TIMEOUT_SECONDS = 15.0

    def __init__(
        self,
        port: int = 0,
        status: int = 200,
        *,
        name: str = "webhook-receiver",
        record: Path | None = None,
        log_path: Path | None = None,
    ) -> None:
        super().__init__(name=name, port=port, log_path=log_path)
        self.status = status
        self._owns_record = record is None
        self.record = record or Path(
            tempfile.mkstemp(prefix="booktime-receiver-", suffix=".jsonl")[1]
        )
        self.record.touch()

    def command(self) -> list[str]:
        return [
            sys.executable, "-m", "devtools.webhook_receiver",
            "--fd", str(self.listen_fd),
            "--record", str(self.record),
            "--status", str(self.status),
        ]  # fmt: skip

    def url(self, path: str = "/hook") -> str:
        """The URL of ``path`` on this receiver (an endpoint's URL)."""
        return f"http://{self.host}:{self.port}{path}"

    def _control(self, method: str, path: str, payload: dict[str, Any] | None = None) -> Any:
        connection = http.client.HTTPConnection(self.host, self.port, timeout=10)
        try:
            body = json.dumps(payload) if payload is not None else None
            connection.request(method, path, body=body)
            response = connection.getresponse()
            text = response.read().decode()
            if response.status != 200:
                raise RuntimeError(f"{self!r}: {method} {path} answered {response.status}: {text}")
            return text
        finally:
            connection.close()

    def set_mode(
        self, path: str, status: int = 200, sleep: float = 0.0, body_bytes: int = 0
    ) -> None:
        """How ``path`` answers from now on (see the module docstring)."""
        mode = {"path": path, "status": status, "sleep": sleep, "body_bytes": body_bytes}
        self._control("POST", "/_control/mode", mode)

    def stats(self) -> dict[str, Any]:
        """``{"sent": {path: body bytes written}}`` for answers in ``body_bytes`` mode that ended."""
        return json.loads(self._control("GET", "/_control/stats"))

    def requests(self, path: str | None = None) -> list[dict[str, Any]]:
        """Every request recorded (on ``path``), in arrival order."""
        lines = self.record.read_text().splitlines()
        entries = [json.loads(line) for line in lines if line.strip()]
        return [e for e in entries if path is None or e["path"] == path]

    def event_ids(self, path: str | None = None, ok_only: bool = True) -> list[int]:
        """Event ids received on ``path``, in arrival order (answered 2xx only, by default)."""
        return [event_id for event_id, _ in self.received(path, ok_only)]

    def received(self, path: str | None = None, ok_only: bool = True) -> list[tuple[int, float]]:
        """(event id, receipt time) of each request on ``path`` (2xx-answered only, by default)."""
        return [
            (json.loads(e["body"])["id"], e["received_at"])
            for e in self.requests(path)
            if not ok_only or 200 <= e["status"] < 300
        ]

    def close(self) -> None:
        """Stop the receiver and remove its record, unless the caller gave its path."""
        super().close()
        if self._owns_record:
            self.record.unlink(missing_ok=True)

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<WebhookReceiver {self.name} port {self.port} {state}>"


if __name__ == "__main__":
    asyncio.run(serve(sys.argv[1:]))
