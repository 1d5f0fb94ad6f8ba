"""Bench client process: many WebSocket, SSE and long-poll connections.

Run by ``bench.run`` as ``python -m bench.clients CONFIG.json`` so that the
clients' CPU never counts as the server's. It talks to the coordinator in JSON
lines: it prints ``{"stage": "warm"}`` after one throw-away connection per
transport, waits for ``{"cmd": "open"}``, opens every connection and prints
``{"stage": "ready", ...}``; then ``{"cmd": "expect", "events": [[id, order_id,
commit_ts], ...], "timeout": s}`` makes it wait until every subscription got
exactly the ids it should (or the timeout) and print ``{"stage": "done",
"results": ...}``; ``{"cmd": "close"}`` ends it. Idle runs skip ``expect``.

``{"cmd": "open", "transport": "ws"}`` opens only that transport's connections
(the memory scenario holds WebSockets, then opens SSE streams beside them).
``{"cmd": "churn"}`` (instead of ``open``) connects, subscribes and
disconnects every connection, ``in_flight`` at a time, and prints
``{"stage": "churned", ...}``. ``{"cmd": "drop"}`` closes every open
connection (as a deploy does); ``{"cmd": "storm", "events": ..., "in_flight":
k}`` then reconnects them all at once, each from the last id it received, and
prints ``{"stage": "settled", ...}`` once every one is subscribed again and has
every event committed while it was away.

Receipt times are ``time.time()`` taken when a frame is parsed, compared with
the driver's commit times (same machine, same clock). From ``ready`` until
``done`` (or ``drop``) this process's own cycle collector is off: a full
collection in a client holding hundreds of connections stops its event loop
for tens of milliseconds, and the deliveries it holds up are counted as the
server's slowest (docs/performance.md, round 7).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import sys
import time
from collections import defaultdict
from typing import Any

from websockets.asyncio.client import connect as ws_connect

from tests.support.sse import sse_frame

OPEN_CONCURRENCY = 100  # handshakes in flight at once
POLL_TIMEOUT = 25  # long-poll hold, as a browser client would ask


class Tracker:
    """What every subscription received, and whether all expected ids arrived."""

    def __init__(self) -> None:
        # (connection index, stream) -> list of (event id, receipt time)
        self.received: dict[tuple[int, str], list[tuple[int, float]]] = defaultdict(list)
        self.transport: dict[int, str] = {}
        self.resets = 0
        self.errors: list[str] = []
        self.expected: dict[tuple[int, str], set[int]] | None = None
        self.missing = 0
        self.all_in = asyncio.Event()

    def record(self, conn: int, stream: str, event_id: int, at: float) -> None:
        self.received[(conn, stream)].append((event_id, at))
        if self.expected is not None:
            wanted = self.expected.get((conn, stream))
            if wanted is not None and event_id in wanted:
                wanted.discard(event_id)
                self.missing -= 1
                if self.missing == 0:
                    self.all_in.set()

    def expect(self, subscriptions: list[tuple[int, str]], events: list[list[Any]]) -> None:
        by_order: dict[int, set[int]] = defaultdict(set)
        every: set[int] = set()
        for event_id, order_id, _ts in events:
            by_order[order_id].add(event_id)
            every.add(event_id)
        expected: dict[tuple[int, str], set[int]] = {}
        for key in subscriptions:
            _conn, stream = key
            wanted = set(every) if stream == "staff" else set(by_order[int(stream[6:])])
            wanted -= {event_id for event_id, _ in self.received.get(key, ())}
            expected[key] = wanted
        self.expected = expected
        self.all_in = asyncio.Event()
        self.missing = sum(len(ids) for ids in expected.values())
        if self.missing == 0:
            self.all_in.set()

    def results(
        self, subscriptions: list[tuple[int, str]], events: list[list[Any]]
    ) -> dict[str, Any]:
        """Per transport: latencies (ms), deliveries, lost, duplicated, unexpected."""
        commit = {event_id: ts for event_id, _order, ts in events}
        by_order: dict[int, set[int]] = defaultdict(set)
        for event_id, order_id, _ts in events:
            by_order[order_id].add(event_id)
        out: dict[str, dict[str, Any]] = {}
        for key in subscriptions:
            conn, stream = key
            stats = out.setdefault(
                self.transport[conn],
                {
                    "latencies_ms": [],
                    "deliveries": 0,
                    "expected": 0,
                    "lost": 0,
                    "duplicated": 0,
                    "unexpected": 0,
                    "first_receipt": None,
                    "last_receipt": None,
                },
            )
            wanted = set(commit) if stream == "staff" else by_order[int(stream[6:])]
            seen: set[int] = set()
            for event_id, at in self.received.get(key, ()):
                if event_id in seen:
                    stats["duplicated"] += 1
                    continue
                seen.add(event_id)
                if event_id not in wanted:
                    stats["unexpected"] += 1
                    continue
                stats["deliveries"] += 1
                stats["latencies_ms"].append(round((at - commit[event_id]) * 1000.0, 3))
                first, last = stats["first_receipt"], stats["last_receipt"]
                stats["first_receipt"] = at if first is None else min(first, at)
                stats["last_receipt"] = at if last is None else max(last, at)
            stats["expected"] += len(wanted)
            stats["lost"] += len(wanted - seen)
        return out


# --- minimal HTTP/1.1 client (SSE and long-poll) ---------------------------------


async def read_head(reader: asyncio.StreamReader) -> tuple[int, dict[str, str]]:
    """Status code and lower-cased headers of one response."""
    line = await reader.readline()
    if not line:
        raise ConnectionError("connection closed before the response")
    status = int(line.split(b" ", 2)[1])
    headers: dict[str, str] = {}
    while True:
        line = await reader.readline()
        if line in (b"\r\n", b"\n", b""):
            return status, headers
        name, _, value = line.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()


async def body_chunks(reader: asyncio.StreamReader, headers: dict[str, str]) -> Any:
    """Yield the body as it arrives: chunked, Content-Length or until EOF."""
    if headers.get("transfer-encoding", "").lower() == "chunked":
        while True:
            size = int((await reader.readline()).split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while (await reader.readline()) not in (b"\r\n", b"\n", b""):
                    pass
                return
            data = await reader.readexactly(size)
            await reader.readexactly(2)
            yield data
    elif "content-length" in headers:
        length = int(headers["content-length"])
        if length:
            yield await reader.readexactly(length)
    else:
        while data := await reader.read(65536):
            yield data


def request_bytes(path: str, port: int, cookie: str, accept: str) -> bytes:
    lines = [
        f"GET {path} HTTP/1.1",
        f"Host: 127.0.0.1:{port}",
        f"Accept: {accept}",
    ]
    if cookie:
        lines.append(f"Cookie: {cookie}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


# --- connections -------------------------------------------------------------------


class Connection:
    """One client connection with its subscriptions."""

    def __init__(self, index: int, spec: dict[str, Any], tracker: Tracker) -> None:
        self.index = index
        self.kind: str = spec["transport"]
        self.port: int = spec["port"]
        self.cookie: str = spec.get("cookie", "")
        self.streams: list[tuple[str, int]] = [(s, int(a)) for s, a in spec["streams"]]
        self.tracker = tracker
        self.tasks: list[asyncio.Task[Any]] = []
        self.is_open = False
        tracker.transport[index] = spec["transport"]

    def resume_from_received(self) -> None:
        """Each stream's cursor becomes the newest id received on it (as a browser's)."""
        self.streams = [
            (
                stream,
                max(
                    [after]
                    + [
                        event_id
                        for event_id, _ in self.tracker.received.get((self.index, stream), ())
                    ]
                ),
            )
            for stream, after in self.streams
        ]
        self.tasks = []

    async def open(self) -> None:
        """Connect and subscribe; returns once the server accepted every stream."""
        raise NotImplementedError

    async def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)


class WebSocketConnection(Connection):
    async def open(self) -> None:
        self.ws = await ws_connect(
            f"ws://127.0.0.1:{self.port}/ws/live/",
            additional_headers={"Cookie": self.cookie, "Origin": f"http://127.0.0.1:{self.port}"},
            compression=None,
            ping_interval=None,
            open_timeout=60,
            max_queue=None,
        )
        self.pending = {stream for stream, _ in self.streams}
        self.subscribed = asyncio.Event()
        self.tasks.append(asyncio.get_running_loop().create_task(self.read()))
        for stream, after in self.streams:
            action = {"action": "subscribe", "stream": stream, "after": after}
            await self.ws.send(json.dumps(action))
        await self.subscribed.wait()

    async def read(self) -> None:
        async for raw in self.ws:
            at = time.time()
            frame = json.loads(raw)
            kind = frame.get("type")
            if kind == "event":
                self.tracker.record(self.index, frame["stream"], frame["event"]["id"], at)
            elif kind == "subscribed":
                self.pending.discard(frame.get("stream"))
                if not self.pending:
                    self.subscribed.set()
            elif kind == "reset":
                self.tracker.resets += 1
            elif kind == "error":
                self.tracker.errors.append(f"ws error frame: {frame}")
                self.pending.clear()
                self.subscribed.set()

    async def close(self) -> None:
        if getattr(self, "ws", None) is not None:
            await self.ws.close()
        await super().close()


class PerStreamConnection(Connection):
    """A connection per stream: ``open()`` returns once each ``follow()`` has started."""

    async def open(self) -> None:
        ready = [asyncio.get_running_loop().create_future() for _ in self.streams]
        for (stream, after), started in zip(self.streams, ready, strict=True):
            self.tasks.append(
                asyncio.get_running_loop().create_task(self.follow(stream, after, started))
            )
        await asyncio.gather(*ready)

    async def follow(self, stream: str, after: int, started: asyncio.Future[None]) -> None:
        """Read ``stream`` from ``after`` on; resolve ``started`` once the server accepted."""
        raise NotImplementedError


class EventStreamConnection(PerStreamConnection):
    """One SSE response per stream (as a browser's EventSource)."""

    async def follow(self, stream: str, after: int, started: asyncio.Future[None]) -> None:
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
            path = f"/events/stream/?stream={stream}&after={after}"
            writer.write(request_bytes(path, self.port, self.cookie, "text/event-stream"))
            status, headers = await read_head(reader)
            if status != 200:
                raise ConnectionError(f"SSE {stream}: HTTP {status}")
        except BaseException as exc:
            if not started.done():
                started.set_exception(exc)
            raise
        started.set_result(None)
        buffer = b""
        try:
            async for chunk in body_chunks(reader, headers):
                at = time.time()
                buffer += chunk.replace(b"\r\n", b"\n")
                while b"\n\n" in buffer:
                    block, buffer = buffer.split(b"\n\n", 1)
                    self.parse(stream, block, at)
        finally:
            writer.close()

    def parse(self, stream: str, block: bytes, at: float) -> None:
        frame = sse_frame(block.decode().split("\n"))
        if frame is None:
            return
        if frame.event == "reset":
            self.tracker.resets += 1
        elif frame.data:
            payload = frame.json()
            if isinstance(payload, dict) and "id" in payload:
                self.tracker.record(self.index, stream, int(payload["id"]), at)


class LongPollConnection(PerStreamConnection):
    """One poll loop per stream over a kept-alive HTTP/1.1 connection."""

    async def follow(self, stream: str, cursor: int, started: asyncio.Future[None]) -> None:
        writer: asyncio.StreamWriter | None = None
        try:
            while True:
                if writer is None:
                    reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
                path = f"/events/poll/?stream={stream}&after={cursor}&timeout={POLL_TIMEOUT}"
                writer.write(request_bytes(path, self.port, self.cookie, "application/json"))
                if not started.done():
                    started.set_result(None)
                status, headers = await read_head(reader)
                body = b"".join([chunk async for chunk in body_chunks(reader, headers)])
                at = time.time()
                if status != 200:
                    raise ConnectionError(f"poll {stream}: HTTP {status} {body[:200]!r}")
                answer = json.loads(body)
                if answer.get("reset"):
                    self.tracker.resets += 1
                for event in answer.get("events", []):
                    self.tracker.record(self.index, stream, int(event["id"]), at)
                cursor = int(answer.get("cursor", cursor))
                if headers.get("connection", "").lower() == "close":
                    writer.close()
                    writer = None
        except BaseException as exc:
            if not started.done():
                started.set_exception(exc)
            if not isinstance(exc, asyncio.CancelledError):
                self.tracker.errors.append(f"poll {stream}: {type(exc).__name__}: {exc}")
            raise
        finally:
            if writer is not None:
                writer.close()


KINDS: dict[str, type[Connection]] = {
    "ws": WebSocketConnection,
    "sse": EventStreamConnection,
    "poll": LongPollConnection,
}


async def open_all(
    connections: list[Connection],
    tracker: Tracker,
    in_flight: int = OPEN_CONCURRENCY,
    then_close: bool = False,
) -> int:
    """Open every connection, ``in_flight`` at a time; returns how many failed.

    ``then_close``: close each one as soon as it is subscribed (churn).
    """
    gate = asyncio.Semaphore(in_flight)

    async def one(conn: Connection) -> bool:
        async with gate:
            try:
                await conn.open()
                conn.is_open = True
                if then_close:
                    await conn.close()
                    conn.is_open = False
                return True
            except Exception as exc:  # noqa: BLE001 - counted and reported
                tracker.errors.append(f"open {tracker.transport[conn.index]}: {exc!r}"[:300])
                return False

    outcomes = await asyncio.gather(*(one(conn) for conn in connections))
    return outcomes.count(False)


def emit(message: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


COMMAND_LINE_LIMIT = 64 * 1024 * 1024


async def main(config_path: str) -> None:
    with open(config_path) as handle:
        config = json.load(handle)
    loop = asyncio.get_running_loop()
    # A command line can be long: the storm's carries every event committed
    # while the clients were away (10,000 orders: over a megabyte).
    stdin = asyncio.StreamReader(limit=COMMAND_LINE_LIMIT)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(stdin), sys.stdin)

    async def command() -> dict[str, Any]:
        line = await stdin.readline()
        if not line:
            raise SystemExit(0)
        return json.loads(line)

    # Warm-up: one connection per transport, so lazy imports and first-use
    # caches on the server are not charged to the measured connections.
    warm_tracker = Tracker()
    warm = [
        KINDS[spec["transport"]](-1 - i, spec, warm_tracker)
        for i, spec in enumerate(config.get("warmup", []))
    ]
    await open_all(warm, warm_tracker)
    for conn in warm:
        await conn.close()
    emit({"stage": "warm", "errors": warm_tracker.errors[:5]})

    tracker = Tracker()
    connections = [
        KINDS[spec["transport"]](i, spec, tracker) for i, spec in enumerate(config["connections"])
    ]
    subscriptions = [(conn.index, stream) for conn in connections for stream, _ in conn.streams]
    while True:
        cmd = await command()
        if cmd["cmd"] == "open":
            chosen = [c for c in connections if cmd.get("transport") in (None, c.kind)]
            started = time.monotonic()
            failed = await open_all(chosen, tracker, cmd.get("in_flight", OPEN_CONCURRENCY))
            emit(
                {
                    "stage": "ready",
                    "open": len(chosen) - failed,
                    "failed": failed,
                    "open_seconds": round(time.monotonic() - started, 3),
                    "errors": tracker.errors[:5],
                }
            )
            gc.disable()  # until the deliveries are timed (module docstring)
        elif cmd["cmd"] == "churn":
            started = time.monotonic()
            failed = await open_all(
                connections, tracker, cmd.get("in_flight", OPEN_CONCURRENCY), then_close=True
            )
            emit(
                {
                    "stage": "churned",
                    "done": len(connections) - failed,
                    "failed": failed,
                    "seconds": round(time.monotonic() - started, 3),
                    "errors": tracker.errors[:5],
                }
            )
        elif cmd["cmd"] == "drop":
            await asyncio.gather(*(conn.close() for conn in connections), return_exceptions=True)
            for conn in connections:
                conn.is_open = False
                conn.resume_from_received()
            gc.enable()
            emit({"stage": "dropped"})
        elif cmd["cmd"] == "storm":
            events = cmd["events"]
            tracker.expect(subscriptions, events)
            started = time.monotonic()
            failed = await open_all(connections, tracker, cmd.get("in_flight", OPEN_CONCURRENCY))
            reopened = time.monotonic() - started
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(tracker.all_in.wait(), cmd["timeout"])
            emit(
                {
                    "stage": "settled",
                    "open": len(connections) - failed,
                    "failed": failed,
                    "reopen_seconds": round(reopened, 3),
                    "settle_seconds": round(time.monotonic() - started, 3),
                    "results": tracker.results(subscriptions, events),
                    "resets": tracker.resets,
                    "errors": tracker.errors[:5],
                }
            )
        elif cmd["cmd"] == "expect":
            events = cmd["events"]
            tracker.expect(subscriptions, events)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(tracker.all_in.wait(), cmd["timeout"])
            gc.enable()
            emit(
                {
                    "stage": "done",
                    "results": tracker.results(subscriptions, events),
                    "resets": tracker.resets,
                    "errors": tracker.errors[:5],
                }
            )
        elif cmd["cmd"] == "close":
            await asyncio.gather(*(conn.close() for conn in connections), return_exceptions=True)
            emit({"stage": "closed"})
            return


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
