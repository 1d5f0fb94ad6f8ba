"""A webhook receiver to run as a separate process (tests and ``python -m bench --webhooks``).

``python tests/webhooks/receiver.py --record FILE [--port P]`` listens on
127.0.0.1 (a free port unless given), prints ``LISTENING <port>``, and appends
one JSON line per request to FILE: ``{"path", "headers", "body",
"received_at"}`` (Unix time). Each path answers as its mode says (default
200 at once); a test changes a mode over HTTP:

    POST /_control/mode  {"path": "/a", "status": 500, "sleep": 0.0}

Plain asyncio HTTP/1.1 with keep-alive: no dependencies, and cheap enough to
run ten of them next to the bench.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from typing import Any

MAX_BODY = 1024 * 1024


class Receiver:
    def __init__(self, record: str) -> None:
        self.record = open(record, "a", buffering=1)  # noqa: SIM115 - lives as long as the process
        self.modes: dict[str, dict[str, Any]] = {}

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
                length = min(int(headers.get("content-length", "0") or 0), MAX_BODY)
                body = (await reader.readexactly(length)).decode() if length else ""
                path = target.split("?", 1)[0]
                if path.startswith("/_control/"):
                    status, answer = self.control(method, path, body)
                else:
                    entry = {"path": path, "headers": headers, "body": body}
                    mode = self.modes.get(path, {})
                    if mode.get("sleep"):
                        await asyncio.sleep(float(mode["sleep"]))
                    entry["received_at"] = received_at
                    entry["status"] = int(mode.get("status", 200))
                    self.record.write(json.dumps(entry) + "\n")
                    status, answer = entry["status"], mode.get("body", "ok")
                data = answer.encode()
                writer.write(
                    f"HTTP/1.1 {status} X\r\nContent-Type: text/plain\r\n"
                    f"Content-Length: {len(data)}\r\n\r\n".encode()
                    + data
                )
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, ValueError):
            pass
        finally:
            writer.close()

    def control(self, method: str, path: str, body: str) -> tuple[int, str]:
        if method == "POST" and path == "/_control/mode":
            mode = json.loads(body)
            self.modes[mode.pop("path")] = mode
            return 200, "ok"
        if path == "/_control/ping":
            return 200, "pong"
        return 404, "unknown control"


async def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--record", required=True)
    parser.add_argument("--status", type=int, default=200, help="answer for every path at start")
    args = parser.parse_args(argv)
    receiver = Receiver(args.record)
    if args.status != 200:
        receiver.modes = _DefaultModes({"status": args.status})
    server = await asyncio.start_server(receiver.handle, "127.0.0.1", args.port, backlog=1024)
    port = server.sockets[0].getsockname()[1]
    print(f"LISTENING {port}", flush=True)
    async with server:
        await server.serve_forever()


class _DefaultModes(dict):
    def __init__(self, default: dict[str, Any]) -> None:
        super().__init__()
        self.default = default

    def get(self, key: str, fallback: Any = None) -> Any:
        return super().get(key, self.default)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:]))
