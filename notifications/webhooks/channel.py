"""The ``deliver`` worker's webhook channel: a job is one leased endpoint.

For a leased endpoint it sends the oldest pending rows one after another,
and stops at the first failure (which schedules the retry and holds the
later rows), when nothing is left, or when the lease is running out. Other
endpoints run in their own jobs, so a slow or failing receiver never delays
a healthy one.

Recording a batch's successes and reading the next batch is one trip to the
database; jobs that finish a batch while another trip is under way share the
next one (``Recorder``: one transaction, however many endpoints).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import close_old_connections

from notifications.outbound.base import OutboundChannel
from notifications.webhooks import deliveries
from notifications.webhooks.deliveries import Attempt, EndpointSnapshot, Outgoing
from notifications.webhooks.sender import Sender

BATCH = 50

Sent = list[tuple[Outgoing, Attempt]]


def db(function: Any) -> Any:
    """Run ORM code off the event loop (one thread: SQLite allows one writer anyway)."""

    def call(*args: Any) -> Any:
        close_old_connections()
        return function(*args)

    return sync_to_async(call, thread_sensitive=True)


class Recorder:
    """Group commit for finished batches: one ``finish_batches`` trip for every job
    that finished a batch since the last trip began."""

    def __init__(self) -> None:
        self._waiting: list[tuple[int, Sent, asyncio.Future[list[Outgoing]]]] = []
        self._flusher: asyncio.Task[None] | None = None

    async def finish(self, endpoint_id: int, sent: Sent) -> list[Outgoing]:
        """Record ``sent``; the endpoint's next batch (empty: its lease was given back)."""
        future = asyncio.get_running_loop().create_future()
        self._waiting.append((endpoint_id, sent, future))
        if self._flusher is None:
            self._flusher = asyncio.create_task(self._flush())
        return await future

    async def _flush(self) -> None:
        work: list[tuple[int, Sent, asyncio.Future[list[Outgoing]]]] = []
        try:
            while self._waiting:
                work, self._waiting = self._waiting, []
                batches = await db(deliveries.finish_batches)(
                    [(endpoint_id, sent) for endpoint_id, sent, _ in work], BATCH
                )
                for (_, _, future), batch in zip(work, batches, strict=True):
                    future.set_result(batch)
                work = []
        except BaseException as exc:  # each job handles it (and cancellation ends them too)
            for _, _, future in work + self._waiting:
                if future.done():
                    continue
                if isinstance(exc, asyncio.CancelledError):
                    future.cancel()
                else:
                    future.set_exception(exc)
            self._waiting = []
            if not isinstance(exc, Exception):
                raise
        finally:
            self._flusher = None


class WebhookChannel(OutboundChannel):
    name = "webhooks"

    def __init__(self) -> None:
        self.sender = Sender()
        self.recorder = Recorder()

    async def close(self) -> None:
        await self.sender.close()

    async def claim(self, limit: int) -> list[EndpointSnapshot]:
        # The catch-up (``prepare``'s job) and each endpoint's first batch come in
        # the same trip to the database.
        return await db(deliveries.catch_up_and_claim)(limit, BATCH)

    async def deliver(self, endpoint: EndpointSnapshot) -> None:
        # Stop well before the lease ends: one more attempt may take this long.
        budget = (
            settings.WEBHOOKS_CONNECT_TIMEOUT_SECONDS + 2 * settings.WEBHOOKS_READ_TIMEOUT_SECONDS
        )
        stop_at = time.monotonic() + deliveries.LEASE_SECONDS - budget - 5
        sent: Sent = []
        released = False
        try:
            batch = endpoint.first_batch
            while batch:
                for out in batch:
                    attempt = await self.sender.send(endpoint, out)
                    if not attempt.ok:
                        await db(deliveries.finish_with_failure)(endpoint.id, sent, out, attempt)
                        sent, released = [], True
                        return
                    sent.append((out, attempt))
                    if time.monotonic() >= stop_at:
                        return  # the lease is running out: record, release, let a scan go on
                batch = await self.recorder.finish(endpoint.id, sent)
                sent, released = [], not batch  # no next batch: the lease was given back
        finally:
            # Successes not recorded yet (lease running out, or an error) are
            # recorded now; if that fails they are simply sent again later.
            if sent:
                await db(deliveries.record_successes)(endpoint.id, sent)
            if not released:
                await db(deliveries.release)(endpoint.id)
