"""HTTP long-poll at ``events/poll/?stream=…&after=…&timeout=…``.

Answers at once with the stored events after the cursor (one page, with the
new cursor) when there are any; otherwise holds the request until the next
event of the stream or the timeout, then answers
``{"stream": …, "events": [...], "cursor": N}``. A cursor the log cannot serve
is answered ``{"reset": true, "cursor": N, "events": []}``. A client polling in
a loop with the returned cursor sees every event once, in order.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from django.conf import settings

from booktime.errors import ClientError
from notifications import metrics, slots
from notifications.http import StreamingHttpConsumer
from notifications.log import Backlog, parse_cursor
from notifications.resume import Outgoing
from notifications.streams import StreamError, Subscription

# Polls held open in this process when the count is not shared (notifications.slots).
open_polls = slots.local["poll"]


class LongPollConsumer(StreamingHttpConsumer):
    """One request, one answer: stored events, the next live event, or a timeout."""

    answered = False
    timeout_task: asyncio.Task | None = None
    slot: slots.Slot | None = None

    async def handle(self, body: bytes) -> None:
        params = self.query()
        after = parse_cursor(params.get("after"), "after")
        timeout = self.timeout_param(params.get("timeout"))
        followed = await self.open_requested_stream(params, after, self.take_slot)
        if self.answered:
            return
        if timeout == 0:
            await self.answer([], followed.cursor.last_sent)
            return
        self.timeout_task = asyncio.get_running_loop().create_task(
            self.answer_after(timeout, followed)
        )

    @staticmethod
    def timeout_param(raw: str | None) -> int:
        if raw is None or raw == "":
            return settings.LONGPOLL_DEFAULT_TIMEOUT
        maximum = settings.LONGPOLL_MAX_TIMEOUT
        # Length first: int() of 5,000 digits raises (Python's conversion limit).
        if not (raw.isascii() and raw.isdigit() and len(raw) <= 4) or int(raw) > maximum:
            raise ClientError(
                "bad_timeout",
                f"timeout must be an integer from 0 to {maximum} seconds",
                field="timeout",
            )
        return int(raw)

    async def take_slot(self, subscription: Subscription) -> None:
        """Refuse a client holding too many polls open at once, across
        processes (429; notifications.slots)."""
        self.stream = subscription.stream
        cap = settings.LONGPOLL_MAX_PER_CLIENT
        self.slot = await slots.take(
            "poll", self.scope, cap, slots.poll_slot_ttl(), self.principal.user_id
        )
        if self.slot is None:
            raise ClientError("too_many_polls", f"at most {cap} long-polls open at once per client")
        metrics.LONGPOLLS_HELD.inc()

    async def answer_after(self, timeout: int, followed: Any) -> None:
        await asyncio.sleep(timeout)
        await self.answer([], followed.cursor.last_sent)

    async def answer(self, events: list[Outgoing], cursor: int, reset: bool = False) -> None:
        """Send the one response (first caller wins) and leave the group."""
        if self.answered:
            return
        self.answered = True
        body = (
            '{"stream":'
            + json.dumps(self.stream)
            + ',"events":['
            + ",".join(e.text for e in events)
            + "]"
            + ',"cursor":'
            + str(cursor)
            + (',"reset":true' if reset else "")
            + "}"
        )
        await self.send_response(
            200,
            body.encode(),
            headers=[(b"Content-Type", b"application/json"), (b"Cache-Control", b"no-store")],
        )
        self.release_slot()
        await self.unfollow_all()

    async def disconnect(self) -> None:
        if self.timeout_task is not None and self.timeout_task is not asyncio.current_task():
            self.timeout_task.cancel()
        self.release_slot()

    def release_slot(self) -> None:
        if self.slot is not None:
            slots.release(self.slot)
            metrics.LONGPOLLS_HELD.dec()
            self.slot = None

    # -- FollowingMixin hooks -----------------------------------------------

    def answered_by(self, page: Backlog) -> bool:
        """Stored events (or a reset) answer the poll at once: no access watch,
        no access group joined and left (profiled: Redis round trips per poll)."""
        return page.reset or bool(page.events)

    async def send_events(self, subscription: Subscription, events: list[Outgoing]) -> None:
        await self.answer(events, events[-1].id)

    async def send_reset(self, subscription: Subscription, cursor: int) -> None:
        await self.answer([], cursor, reset=True)

    async def revoke(self, subscription: Subscription, error: StreamError) -> None:
        """Access ended while the poll was held (notifications.access): 401/403 JSON."""
        if self.answered:
            return
        self.answered = True
        await self.send_error(error)
        self.release_slot()
        await self.unfollow_all()
