"""HTTP long-poll at ``events/poll/?stream=…&after=…&timeout=…[&token=…]``.

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
from collections import Counter
from typing import Any

from django.conf import settings

from booktime.errors import ClientError
from notifications import metrics
from notifications.http import StreamingHttpConsumer
from notifications.log import parse_cursor
from notifications.resume import Outgoing
from notifications.streams import Subscription

# Open polls per client key in this process (see LONGPOLL_MAX_PER_CLIENT).
open_polls: Counter[str] = Counter()


class LongPollConsumer(StreamingHttpConsumer):
    """One request, one answer: stored events, the next live event, or a timeout."""

    answered = False
    timeout_task: asyncio.Task | None = None
    client_key: str | None = None

    async def handle(self, body: bytes) -> None:
        params = self.query()
        after = parse_cursor(params.get("after"), "after")
        timeout = self.timeout_param(params.get("timeout"))
        subscription = await self.authorize_stream(params)
        self.take_slot()
        self.stream = subscription.stream
        followed = await self.follow(subscription, after)
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
        if not (raw.isascii() and raw.isdigit()) or int(raw) > maximum:
            raise ClientError(
                "bad_timeout",
                f"timeout must be an integer from 0 to {maximum} seconds",
                field="timeout",
            )
        return int(raw)

    def take_slot(self) -> None:
        """Refuse a client holding too many polls open at once (429)."""
        user = self.scope.get("user")
        if user is not None and user.is_authenticated:
            key = f"user:{user.pk}"
        else:
            key = f"addr:{(self.scope.get('client') or ('?',))[0]}"
        if open_polls[key] >= settings.LONGPOLL_MAX_PER_CLIENT:
            raise ClientError(
                "too_many_polls",
                f"at most {settings.LONGPOLL_MAX_PER_CLIENT} long-polls open at once per client",
            )
        open_polls[key] += 1
        metrics.LONGPOLLS_HELD.inc()
        self.client_key = key

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
        if self.client_key is not None:
            open_polls[self.client_key] -= 1
            metrics.LONGPOLLS_HELD.dec()
            if open_polls[self.client_key] <= 0:
                del open_polls[self.client_key]
            self.client_key = None

    # -- FollowingMixin hooks -----------------------------------------------

    async def send_events(self, subscription: Subscription, events: list[Outgoing]) -> None:
        await self.answer(events, events[-1].id)

    async def send_reset(self, subscription: Subscription, cursor: int) -> None:
        await self.answer([], cursor, reset=True)
