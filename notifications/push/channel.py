"""The ``deliver`` worker's push channel: a job is a batch of due push messages."""

from __future__ import annotations

import logging

from notifications.outbound.base import OutboundChannel
from notifications.push import deliveries
from notifications.push.sender import PushSender, vapid_configured
from notifications.webhooks.channel import db

logger = logging.getLogger("notifications.deliver")

BATCH = 50


class PushChannel(OutboundChannel):
    name = "push"

    def __init__(self) -> None:
        self.sender = PushSender()

    async def close(self) -> None:
        await self.sender.close()

    async def prepare(self) -> None:
        await db(deliveries.catch_up)()

    async def claim(self, limit: int) -> list[list[int]]:
        if limit <= 0 or not vapid_configured():
            return []
        ids = await db(deliveries.claim)(BATCH)
        return [ids] if ids else []

    async def deliver(self, row_ids: list[int]) -> None:
        remaining = list(row_ids)
        try:
            while remaining:
                outgoing = await db(deliveries.start)(remaining[0])
                if outgoing is not None:
                    status, error = await self.sender.send(
                        outgoing.subscription_info, outgoing.payload
                    )
                    if error:
                        logger.info("push #%s: %s", outgoing.row_id, error)
                    await db(deliveries.record)(outgoing.row_id, status, error)
                remaining.pop(0)
        except Exception:
            # A bug, not a delivery failure: the rows keep their lease, so they are
            # retried when it runs out rather than at once, in a hot loop (the
            # worker logs the traceback).
            remaining = []
            raise
        finally:
            if remaining:
                await db(deliveries.release)(remaining)
