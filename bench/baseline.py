"""The bench's baseline: the same three transports without Django or channels.

A raw ASGI 3 application, served by the same daphne as the app
(``daphne bench.baseline:application``), speaking the same wire protocol as
booktime (``ws/live/``, ``events/stream/``, ``events/poll/``) for the
``order:<id>`` and ``staff`` streams. Each server process holds one Redis
connection that pattern-subscribes to ``<prefix>:*``; the bench driver
publishes each event's envelope to its groups' channels directly (no database,
no event log, no authorization). Recent events per group are kept in memory
so that a cursor (``after``) and long-poll re-polls lose nothing.

It is the floor the app is compared with: what fan-out through the same Redis
and the same ASGI server costs when nothing else happens.

Environment: ``REDIS_URL``, ``CHANNEL_LAYER_PREFIX``.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
from collections import defaultdict, deque
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qs

import redis.asyncio as aioredis

from booktime.server_fixes import defer_handshake_config_dump

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

# Events kept per group for cursors and re-polls; a bench phase sends each
# order at most four status changes, the staff group sees them all.
BUFFER_PER_GROUP = 5000
HEARTBEAT_SECONDS = 15
LONGPOLL_DEFAULT_TIMEOUT = 25.0
LONGPOLL_MAX_TIMEOUT = 60.0


def channel_prefix() -> str:
    """The Redis pub/sub channel prefix; the driver publishes to ``<prefix>:<group>``."""
    return os.environ.get("CHANNEL_LAYER_PREFIX", "bench") + "-baseline"


def group_for_stream(stream: Any) -> str | None:
    """The group behind a stream name, or None when the baseline does not serve it."""
    if stream == "staff":
        return "staff.orders"
    if isinstance(stream, str) and stream.startswith("order:") and stream[6:].isdigit():
        return "order." + stream[6:]
    return None


Listener = Callable[[str, dict[str, Any]], None]


class Hub:
    """One per process: the Redis subscription and the local group members."""

    def __init__(self) -> None:
        self.members: dict[str, set[Listener]] = defaultdict(set)
        self.buffers: dict[str, deque[dict[str, Any]]] = defaultdict(
            lambda: deque(maxlen=BUFFER_PER_GROUP)
        )
        self._started: asyncio.Future[None] | None = None
        self._reader_task: asyncio.Task[None] | None = None  # a strong reference

    async def ensure_started(self) -> None:
        """Start the Redis reader once; return when the subscription is live."""
        if self._started is None:
            self._started = asyncio.get_running_loop().create_future()
            self._reader_task = asyncio.get_running_loop().create_task(self._reader(self._started))
        await asyncio.shield(self._started)

    async def _reader(self, started: asyncio.Future[None]) -> None:
        url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
        prefix = channel_prefix() + ":"
        try:
            client = aioredis.from_url(url)
            pubsub = client.pubsub()
            await pubsub.psubscribe(prefix + "*")
            # The first message is the psubscribe confirmation: only then is
            # the subscription live.
            while True:
                message = await pubsub.get_message(timeout=5.0)
                if message and message["type"] == "psubscribe":
                    break
        except Exception as exc:  # noqa: BLE001 - report to every waiting connection
            started.set_exception(exc)
            raise
        started.set_result(None)
        async for message in pubsub.listen():
            if message["type"] != "pmessage":
                continue
            group = message["channel"].decode()[len(prefix) :]
            self.dispatch(group, json.loads(message["data"]))

    def dispatch(self, group: str, event: dict[str, Any]) -> None:
        self.buffers[group].append(event)
        for listener in list(self.members.get(group, ())):
            listener(group, event)

    def backlog(self, group: str, after: int) -> list[dict[str, Any]]:
        return [event for event in self.buffers.get(group, ()) if event["id"] > after]

    def join(self, group: str, listener: Listener) -> None:
        self.members[group].add(listener)

    def leave(self, group: str, listener: Listener) -> None:
        members = self.members.get(group)
        if members is not None:
            members.discard(listener)
            if not members:
                del self.members[group]


hub = Hub()


def _query(scope: Scope) -> dict[str, str]:
    parsed = parse_qs(scope.get("query_string", b"").decode("latin-1"))
    return {key: values[-1] for key, values in parsed.items()}


def _int(raw: Any, default: int = 0) -> int:
    try:
        return int(raw)
    except (TypeError, ValueError):
        return default


async def websocket_app(scope: Scope, receive: Receive, send: Send) -> None:
    """``ws/live/``: subscribe/unsubscribe/ping, event frames per stream."""
    message = await receive()
    if message["type"] != "websocket.connect":
        return
    await hub.ensure_started()
    await send({"type": "websocket.accept"})
    queue: asyncio.Queue[tuple[str, dict[str, Any]]] = asyncio.Queue()
    streams: dict[str, str] = {}  # group -> stream
    last_sent: dict[str, int] = {}  # stream -> last event id sent

    def listener(group: str, event: dict[str, Any]) -> None:
        queue.put_nowait((group, event))

    async def send_event(stream: str, event: dict[str, Any]) -> None:
        if event["id"] <= last_sent.get(stream, 0):
            return
        last_sent[stream] = event["id"]
        frame = {"type": "event", "stream": stream, "event": event}
        await send({"type": "websocket.send", "text": json.dumps(frame)})

    async def pump() -> None:
        while True:
            group, event = await queue.get()
            stream = streams.get(group)
            if stream is not None:
                await send_event(stream, event)

    pump_task = asyncio.get_running_loop().create_task(pump())
    try:
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                break
            if message["type"] != "websocket.receive":
                continue
            try:
                action = json.loads(message.get("text") or "{}")
            except ValueError:
                action = {}
            kind = action.get("action")
            if kind == "ping":
                await send({"type": "websocket.send", "text": '{"type": "pong"}'})
            elif kind in ("subscribe", "unsubscribe"):
                stream = action.get("stream")
                group = group_for_stream(stream)
                if group is None:
                    error = {"type": "error", "code": "bad_stream", "message": "unknown stream"}
                    await send({"type": "websocket.send", "text": json.dumps(error)})
                elif kind == "subscribe":
                    streams[group] = stream
                    last_sent[stream] = _int(action.get("after"))
                    # Join first, then queue the backlog, with no await in
                    # between: the pump sees stored events before live ones.
                    hub.join(group, listener)
                    for event in hub.backlog(group, last_sent[stream]):
                        queue.put_nowait((group, event))
                    reply = {"type": "subscribed", "stream": stream}
                    await send({"type": "websocket.send", "text": json.dumps(reply)})
                else:
                    hub.leave(group, listener)
                    streams.pop(group, None)
                    reply = {"type": "unsubscribed", "stream": stream}
                    await send({"type": "websocket.send", "text": json.dumps(reply)})
    finally:
        pump_task.cancel()
        for group in streams:
            hub.leave(group, listener)


async def _send_json(send: Send, status: int, body: dict[str, Any]) -> None:
    payload = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})


async def sse_app(scope: Scope, receive: Receive, send: Send) -> None:
    """``events/stream/``: ``id:``/``event:``/``data:`` frames until the client goes."""
    query = _query(scope)
    stream = query.get("stream")
    group = group_for_stream(stream)
    if group is None:
        await _send_json(send, 400, {"code": "bad_stream"})
        return
    headers = dict(scope.get("headers", []))
    after = _int(headers.get(b"last-event-id", query.get("after")))
    await hub.ensure_started()
    queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

    def listener(_group: str, event: dict[str, Any]) -> None:
        queue.put_nowait(event)

    hub.join(group, listener)
    for event in hub.backlog(group, after):  # no await since the join: nothing missed
        queue.put_nowait(event)
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")],
        }
    )
    await send({"type": "http.response.body", "body": b"retry: 3000\n\n", "more_body": True})
    disconnected = asyncio.get_running_loop().create_task(receive())
    try:
        while True:
            getter = asyncio.get_running_loop().create_task(queue.get())
            done, _ = await asyncio.wait(
                {getter, disconnected},
                timeout=HEARTBEAT_SECONDS,
                return_when=asyncio.FIRST_COMPLETED,
            )
            if disconnected in done:
                getter.cancel()
                break
            if getter not in done:
                getter.cancel()
                await send({"type": "http.response.body", "body": b": hb\n\n", "more_body": True})
                continue
            event = getter.result()
            if event["id"] <= after:
                continue
            after = event["id"]
            body = f"id: {after}\nevent: {event['type']}\ndata: {json.dumps(event)}\n\n"
            await send({"type": "http.response.body", "body": body.encode(), "more_body": True})
    finally:
        hub.leave(group, listener)
        disconnected.cancel()


async def poll_app(scope: Scope, receive: Receive, send: Send) -> None:
    """``events/poll/``: events after the cursor at once, or hold until one comes."""
    query = _query(scope)
    group = group_for_stream(query.get("stream"))
    if group is None:
        await _send_json(send, 400, {"code": "bad_stream"})
        return
    after = _int(query.get("after"))
    try:
        timeout = min(float(query.get("timeout", LONGPOLL_DEFAULT_TIMEOUT)), LONGPOLL_MAX_TIMEOUT)
    except ValueError:
        timeout = LONGPOLL_DEFAULT_TIMEOUT
    await hub.ensure_started()
    events = hub.backlog(group, after)
    if not events:
        arrived: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        def listener(_group: str, event: dict[str, Any]) -> None:
            if event["id"] > after and not arrived.done():
                arrived.set_result(None)

        hub.join(group, listener)
        try:
            await asyncio.wait_for(arrived, timeout)
        except TimeoutError:
            pass
        finally:
            hub.leave(group, listener)
        events = hub.backlog(group, after)
    cursor = events[-1]["id"] if events else after
    await _send_json(send, 200, {"events": events, "cursor": cursor})


async def read_request(receive: Receive) -> None:
    """Consume the request body, so that the next ``receive()`` is the disconnect."""
    while True:
        message = await receive()
        if message["type"] != "http.request" or not message.get("more_body"):
            return


async def application(scope: Scope, receive: Receive, send: Send) -> None:
    """Route by protocol and path, as booktime's ASGI router does."""
    path = scope.get("path", "")
    if scope["type"] == "http":
        await read_request(receive)
    if scope["type"] == "websocket" and path == "/ws/live/":
        await websocket_app(scope, receive, send)
    elif scope["type"] == "http" and path == "/events/stream/":
        await sse_app(scope, receive, send)
    elif scope["type"] == "http" and path == "/events/poll/":
        await poll_app(scope, receive, send)
    elif scope["type"] == "http" and path == "/healthz":
        # The readiness probe: the hub listens from here on, as the app's log
        # keeps events from its start (a restarted baseline then hears what is
        # published before its first client; the reconnect storm).
        await hub.ensure_started()
        await _send_json(send, 200, {"status": "ok"})
    elif scope["type"] == "http":
        await _send_json(send, 404, {"code": "not_found"})
    elif scope["type"] == "websocket":
        await receive()
        await send({"type": "websocket.close", "code": 4404})


# As booktime.asgi does: the startup heap leaves the cycle collector's view,
# and autobahn's per-connection debug dump is made only when logged, so that
# the ratios compare the two applications, not the server's settings.
defer_handshake_config_dump()
gc.freeze()
