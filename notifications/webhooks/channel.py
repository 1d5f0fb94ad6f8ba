"""The ``deliver`` worker's webhook channel: a job is one leased endpoint.

For a leased endpoint it sends the oldest pending rows one after another,
recording successes in batches, and stops at the first failure (which
schedules the retry and holds the later rows) or when the lease is running
out. Other endpoints run in their own jobs, so a slow or failing receiver
never delays a healthy one.
"""

from __future__ import annotations

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


def db(function: Any) -> Any:
    """Run ORM code off the event loop (one thread: SQLite allows one writer anyway)."""

    def call(*args: Any) -> Any:
        close_old_connections()
        return function(*args)

    return sync_to_async(call, thread_sensitive=True)


class WebhookChannel(OutboundChannel):
    name = "webhooks"

    def __init__(self) -> None:
        self.sender = Sender()

    async def close(self) -> None:
        await self.sender.close()

    async def prepare(self) -> None:
        await db(deliveries.catch_up)()

    async def claim(self, limit: int) -> list[EndpointSnapshot]:
        return await db(deliveries.claim_endpoints)(limit)

    async def deliver(self, endpoint: EndpointSnapshot) -> None:
        # Stop well before the lease ends: one more attempt may take this long.
        budget = (
            settings.WEBHOOKS_CONNECT_TIMEOUT_SECONDS + 2 * settings.WEBHOOKS_READ_TIMEOUT_SECONDS
        )
        stop_at = time.monotonic() + deliveries.LEASE_SECONDS - budget - 5
        try:
            while time.monotonic() < stop_at:
                batch: list[Outgoing] = await db(deliveries.next_batch)(endpoint.id, BATCH)
                if not batch:
                    return
                sent: list[tuple[Outgoing, Attempt]] = []
                try:
                    for out in batch:
                        attempt = await self.sender.send(endpoint, out)
                        if not attempt.ok:
                            await db(deliveries.record_successes)(endpoint.id, sent)
                            sent = []
                            await db(deliveries.record_failure)(endpoint.id, out, attempt)
                            return
                        sent.append((out, attempt))
                        if time.monotonic() >= stop_at:
                            break
                finally:
                    if sent:
                        await db(deliveries.record_successes)(endpoint.id, sent)
        finally:
            await db(deliveries.release)(endpoint.id)
