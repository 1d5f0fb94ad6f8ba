"""Clients for live servers: what live tests use to talk to real daphne processes.

Live tests talk to the project's real ASGI application (routing, session/auth
middleware, origin check) over real sockets, as a browser or a third party
would: WebSocket helpers, a client that follows a stream across reconnects
(``ResumingFollower``), a fail-over load balancer, waiting with timeouts, and
a look at channel-layer groups in Redis. The servers themselves are
``devtools.daphne.DaphneServer`` (fixtures ``daphne_server``, ``start_daphne``);
SSE parsing is ``tests.support.sse``.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Mapping
from typing import Any

from devtools.daphne import DaphneServer
from devtools.processes import wait_for
from tests.support.sse import sse_frames

# -- waiting ---------------------------------------------------------------------


def wait_until(
    condition: Callable[[], Any], timeout: float = 10.0, message: str = "condition"
) -> Any:
    """Poll a synchronous ``condition`` until it returns something truthy, and return that."""
    result: list[Any] = []

    def check() -> bool:
        value = condition()
        if value:
            result.append(value)
        return bool(value)

    wait_for(check, timeout, f"timed out after {timeout} s waiting for {message}")
    return result[0]


async def async_wait_until(
    condition: Callable[[], Any], timeout: float = 10.0, message: str = "condition"
) -> Any:
    """Async ``wait_until``; ``condition`` may be a plain or an async callable."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout} s waiting for {message}")
        await asyncio.sleep(0.02)


# -- WebSocket -------------------------------------------------------------------


def cookie_header(cookies: Mapping[str, str] | None) -> dict[str, str]:
    if not cookies:
        return {}
    return {"Cookie": "; ".join(f"{k}={v}" for k, v in cookies.items())}


async def ws_connect(
    server: DaphneServer,
    path: str = "/ws/live/",
    *,
    cookies: Mapping[str, str] | None = None,
    origin: str | None = "",
    timeout: float = 10.0,
) -> Any:
    """Open a WebSocket to ``server`` as a page from it would (same-site ``Origin``).

    ``origin=""`` (default) sends ``server.origin``; pass another string to
    test the origin check, or ``None`` to send no Origin header.
    Returns a ``websockets`` client connection; close it (``async with`` works).
    """
    from websockets.asyncio.client import connect

    return await connect(
        server.ws_url + path,
        origin=(server.origin if origin == "" else origin),  # type: ignore[arg-type]
        additional_headers=cookie_header(cookies),
        open_timeout=timeout,
        close_timeout=2,
    )


async def ws_send(ws: Any, message: Mapping[str, Any]) -> None:
    await ws.send(json.dumps(message))


async def ws_recv(ws: Any, timeout: float = 10.0) -> dict[str, Any]:
    """Next JSON frame, or ``TimeoutError`` after ``timeout`` seconds."""
    raw = await asyncio.wait_for(ws.recv(), timeout)
    return json.loads(raw)


async def ws_recv_until(
    ws: Any, predicate: Callable[[dict[str, Any]], bool], timeout: float = 10.0
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Read frames until one matches ``predicate``; returns (it, the frames before it)."""
    skipped: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(f"no matching frame within {timeout} s; got {skipped!r}")
        frame = await ws_recv(ws, remaining)
        if predicate(frame):
            return frame, skipped
        skipped.append(frame)


# -- a client that follows the reconnect rule ---------------------------------------


class FollowerError(Exception):
    """The server refused the stream (an error frame or a 4xx): reconnecting will not help."""


class ResumingFollower:
    """Follows one stream over WebSocket (``"ws"``), SSE (``"sse"``) or long-poll (``"poll"``).

    When the connection drops it reconnects, trying the next server of
    ``servers`` in turn (a load balancer's job), and resumes from its cursor:
    ``after`` in the WebSocket ``subscribe``, ``Last-Event-ID`` for SSE, ``after`` for long-poll.
    ``received`` keeps every event frame as it came (duplicates included, for
    tests to check); ``events`` keeps each id once, as the browser client does.
    Used by the server-kill and reconnect-storm tests.
    """

    def __init__(
        self,
        servers: list[DaphneServer],
        stream: str,
        *,
        transport: str = "ws",
        cookies: Mapping[str, str] | None = None,
        after: int | None = 0,
        token: str | None = None,
    ) -> None:
        if transport not in ("ws", "sse", "poll"):
            raise ValueError("transport must be 'ws', 'sse' or 'poll'")
        self.servers = list(servers)
        self.stream = stream
        self.transport = transport
        self.cookies = dict(cookies or {})
        self.cursor = after
        self.token = token
        self.received: list[dict[str, Any]] = []
        self.events: list[dict[str, Any]] = []
        self.resets: list[int] = []
        self.connections: list[DaphneServer] = []  # the server of each successful (re)connect
        self.error: BaseException | None = None
        self._index = 0
        self._task: asyncio.Task[None] | None = None
        self._ws: Any = None

    # -- control --------------------------------------------------------------

    def start(self) -> ResumingFollower:
        self._task = asyncio.get_running_loop().create_task(self._run())
        return self

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def drop(self) -> None:
        """Close the current WebSocket from the client side; the follower reconnects."""
        if self._ws is not None:
            await self._ws.close()

    @property
    def ids(self) -> list[int]:
        return [event["id"] for event in self.events]

    @property
    def server(self) -> DaphneServer | None:
        """The server of the current (or last) connection."""
        return self.connections[-1] if self.connections else None

    async def wait_connected(self, count: int = 1, timeout: float = 15.0) -> None:
        """Until the stream has been (re)opened ``count`` times in all."""
        await async_wait_until(
            lambda: self._check() and len(self.connections) >= count,
            timeout,
            f"{self.transport} follower of {self.stream} to connect {count} time(s)",
        )

    async def wait_for_ids(self, ids: list[int], timeout: float = 15.0) -> None:
        """Until every id in ``ids`` has arrived."""
        wanted = set(ids)
        await async_wait_until(
            lambda: self._check() and wanted <= set(self.ids),
            timeout,
            f"{self.transport} follower of {self.stream} to receive {sorted(wanted)}; "
            f"has {self.ids}",
        )

    def _check(self) -> bool:
        if self.error is not None:
            raise FollowerError(f"{self.stream}: {self.error}") from self.error
        return True

    # -- the loop ---------------------------------------------------------------

    async def _run(self) -> None:
        import httpx
        from websockets.exceptions import InvalidHandshake, WebSocketException

        delay = 0.05
        while True:
            server = self.servers[self._index % len(self.servers)]
            try:
                if self.transport == "ws":
                    await self._follow_ws(server)
                elif self.transport == "sse":
                    await self._follow_sse(server)
                else:
                    await self._follow_poll(server)
                delay = 0.05  # a clean end: reconnect at once
            except FollowerError as exc:
                self.error = exc
                return
            except (
                OSError,
                TimeoutError,
                httpx.TransportError,
                InvalidHandshake,
                WebSocketException,
            ):
                # Refused, reset or cut off: the next server, with the cursor we have.
                await asyncio.sleep(delay)
                delay = min(delay * 2, 1.0)
            self._index += 1

    def _accept(self, envelope: dict[str, Any]) -> None:
        self.received.append(envelope)
        if self.cursor is None or envelope["id"] > self.cursor:
            self.events.append(envelope)
            self.cursor = envelope["id"]

    async def _follow_ws(self, server: DaphneServer) -> None:
        ws = await ws_connect(server, cookies=self.cookies)
        self._ws = ws
        try:
            message: dict[str, Any] = {"action": "subscribe", "stream": self.stream}
            if self.cursor is not None:
                message["after"] = self.cursor
            if self.token is not None:
                message["token"] = self.token
            await ws_send(ws, message)
            async for raw in ws:
                frame = json.loads(raw)
                kind = frame.get("type")
                if kind == "subscribed":
                    self.connections.append(server)
                elif kind == "event":
                    self._accept(frame["event"])
                elif kind == "reset":
                    self.resets.append(frame["cursor"])
                    self.cursor = frame["cursor"]
                elif kind == "error":
                    raise FollowerError(f"{frame.get('code')}: {frame.get('message')}")
        finally:
            self._ws = None
            await ws.close()

    async def _follow_sse(self, server: DaphneServer) -> None:
        import httpx

        headers = {} if self.cursor is None else {"Last-Event-ID": str(self.cursor)}
        params = {"stream": self.stream}
        if self.token is not None:
            params["token"] = self.token
        timeout = httpx.Timeout(10.0, read=None)  # heartbeats keep it alive; a kill ends it
        async with (
            httpx.AsyncClient(base_url=server.url, cookies=self.cookies, timeout=timeout) as client,
            client.stream("GET", "/events/stream/", params=params, headers=headers) as response,
        ):
            if response.status_code != 200:
                raise FollowerError(f"HTTP {response.status_code}: {(await response.aread())!r}")
            self.connections.append(server)
            async for frame in sse_frames(response.aiter_lines()):
                if frame.event == "reset":
                    cursor = frame.json()["cursor"]
                    self.resets.append(cursor)
                    self.cursor = cursor
                elif frame.event.startswith("order."):
                    self._accept(frame.json())

    async def _follow_poll(self, server: DaphneServer) -> None:
        """Long-poll from the cursor, again and again; a 5xx or a refusal moves on."""
        import httpx

        async with httpx.AsyncClient(
            base_url=server.url, cookies=self.cookies, timeout=httpx.Timeout(30.0)
        ) as client:
            first = True
            while True:
                params: dict[str, Any] = {"stream": self.stream, "timeout": 10}
                if self.cursor is not None:
                    params["after"] = self.cursor
                if self.token is not None:
                    params["token"] = self.token
                response = await client.get("/events/poll/", params=params)
                if response.status_code >= 500:
                    raise OSError(f"HTTP {response.status_code} from {server.url}")
                if response.status_code != 200:
                    raise FollowerError(f"HTTP {response.status_code}: {response.text}")
                if first:
                    self.connections.append(server)
                    first = False
                answer = response.json()
                if answer.get("reset"):
                    self.resets.append(answer["cursor"])
                for envelope in answer["events"]:
                    self._accept(envelope)
                self.cursor = answer["cursor"]


# -- channel-layer state, seen from Redis ------------------------------------------


async def group_member_count(redis_url: str, prefix: str, group: str) -> int:
    """How many members ``group`` has in Redis, for the configured layer.

    ``redis`` (RedisChannelLayer) keeps a sorted set per group: its size.
    ``pubsub`` keeps members in each process and subscribes the process to the
    group's channel: the number of subscribed connections (``PUBSUB NUMSUB``).
    """
    import redis.asyncio as aioredis
    from django.conf import settings

    client = aioredis.from_url(redis_url)
    try:
        if settings.CHANNEL_LAYER == "pubsub":
            [(_, count)] = await client.pubsub_numsub(f"{prefix}__group__{group}")
            return int(count)
        return int(await client.zcard(f"{prefix}:group:{group}"))
    finally:
        await client.aclose()


# -- a load balancer for fail-over tests ---------------------------------------------


class FailoverProxy:
    """A TCP load balancer on 127.0.0.1: each new connection goes to the first
    backend port that accepts it, so when one server dies, reconnecting
    clients land on the next — as behind a real load balancer.

    Runs its own event loop in a thread, so sync tests (Playwright) can use it.
    Use as a context manager; ``url`` is the address to give clients.
    """

    def __init__(self, backend_ports: list[int]) -> None:
        import threading

        self.backend_ports = list(backend_ports)
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.AbstractServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> FailoverProxy:
        self._thread.start()
        self._server = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._serve, "127.0.0.1", 0), self._loop
        ).result(10)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def __exit__(self, *exc_info: object) -> None:
        async def shut() -> None:
            assert self._server is not None
            self._server.close()
            for task in asyncio.all_tasks():
                if task is not asyncio.current_task():
                    task.cancel()

        asyncio.run_coroutine_threadsafe(shut(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    async def _serve(self, client_reader: Any, client_writer: Any) -> None:
        for port in self.backend_ports:
            try:
                backend_reader, backend_writer = await asyncio.open_connection("127.0.0.1", port)
                break
            except OSError:
                continue
        else:
            client_writer.close()
            return

        async def pipe(reader: Any, writer: Any) -> None:
            try:
                while data := await reader.read(65536):
                    writer.write(data)
                    await writer.drain()
            except (OSError, asyncio.IncompleteReadError):
                pass
            finally:
                writer.close()

        await asyncio.gather(
            pipe(client_reader, backend_writer), pipe(backend_reader, client_writer)
        )
