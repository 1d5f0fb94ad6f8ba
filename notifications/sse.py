"""Server-sent events at ``events/stream/?stream=…[&after=…]``.

Each event is written as ``id:``/``event:``/``data:``; a ``retry:`` hint comes
first and a comment heartbeat every STREAM_HEARTBEAT_SECONDS keeps proxies
from closing an idle stream. Resume from the ``Last-Event-ID`` header (sent by
EventSource on reconnect) or ``?after=``; the header wins.
"""

from __future__ import annotations

import asyncio
import contextlib
import json

from django.conf import settings

from booktime.errors import ClientError
from notifications import slots
from notifications.http import StreamingHttpConsumer
from notifications.log import parse_cursor
from notifications.resume import Outgoing
from notifications.streams import StreamError, Subscription

RETRY_MS = 2000  # how long EventSource waits before reconnecting
HEADERS = [
    (b"Content-Type", b"text/event-stream; charset=utf-8"),
    (b"Cache-Control", b"no-cache"),
    (b"X-Accel-Buffering", b"no"),  # nginx: do not buffer the stream
]


class EventStreamConsumer(StreamingHttpConsumer):
    """Streams one stream's events as text/event-stream until the client goes."""

    heartbeat_task: asyncio.Task | None = None
    slot: slots.Slot | None = None

    async def handle(self, body: bytes) -> None:
        params = self.query()
        after = parse_cursor(params.get("after"), "after")
        last_event_id = parse_cursor(self.header(b"last-event-id"), "Last-Event-ID")
        if last_event_id is not None:
            after = last_event_id
        await self.open_requested_stream(params, after, self.take_slot)
        self.heartbeat_task = asyncio.get_running_loop().create_task(self.heartbeat())

    async def joined(self, subscription: Subscription) -> None:
        """Headers go out once the group is joined: a client that sees the
        stream open can make a change and be sure to hear of it."""
        await self.send_headers(status=200, headers=HEADERS)
        await self.write(f"retry: {RETRY_MS}\n\n")

    async def take_slot(self, subscription: Subscription | None = None) -> None:
        """Refuse a client holding too many streams open at once, across
        processes (429; notifications.slots)."""
        cap = settings.SSE_MAX_PER_CLIENT
        self.slot = await slots.take(
            "sse", self.scope, cap, slots.sse_slot_ttl(), self.principal.user_id
        )
        if self.slot is None:
            raise ClientError(
                "too_many_streams", f"at most {cap} event streams open at once per client"
            )

    async def heartbeat(self) -> None:
        """A comment line every few seconds; proxies drop silent connections.
        It also keeps the stream's slot alive (notifications.slots)."""
        while True:
            await asyncio.sleep(settings.STREAM_HEARTBEAT_SECONDS)
            await self.write(": heartbeat\n\n")
            if self.slot is not None:
                await slots.renew(self.slot, slots.sse_slot_ttl())

    async def disconnect(self) -> None:
        await self.stop_heartbeat()
        if self.slot is not None:
            slots.release(self.slot)
            self.slot = None

    async def stop_heartbeat(self) -> None:
        if self.heartbeat_task is not None and self.heartbeat_task is not asyncio.current_task():
            self.heartbeat_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.heartbeat_task
        self.heartbeat_task = None

    async def cut_off(self) -> None:
        """End the response; EventSource reconnects with Last-Event-ID."""
        await self.send_body(b"", more_body=False)

    async def write(self, text: str) -> None:
        await self.send_body(text.encode(), more_body=True)

    # -- FollowingMixin hooks -----------------------------------------------

    async def send_events(self, subscription: Subscription, events: list[Outgoing]) -> None:
        await self.write(
            "".join(f"id: {e.id}\nevent: {e.type}\ndata: {e.text}\n\n" for e in events)
        )

    async def send_reset(self, subscription: Subscription, cursor: int) -> None:
        data = json.dumps({"stream": subscription.stream, "cursor": cursor})
        await self.write(f"id: {cursor}\nevent: reset\ndata: {data}\n\n")

    async def revoke(self, subscription: Subscription, error: StreamError) -> None:
        """Access ended (notifications.access): ``event: error``, then end the
        response; EventSource's reconnect is refused (401/403)."""
        await self.stop_heartbeat()
        data = json.dumps(error.frame(stream=subscription.stream))
        await self.send_body(f"event: error\ndata: {data}\n\n".encode(), more_body=False)
        await self.unfollow_all()
