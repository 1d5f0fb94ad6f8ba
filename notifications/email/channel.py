"""The ``deliver`` worker's e-mail channel: a job is a batch of due e-mails, one connection.

Django's e-mail backends are synchronous, so the mail server is talked to in
a worker thread (``asyncio.to_thread``) while the database steps run through
``sync_to_async`` as in the webhook channel. Any Django backend works: SMTP,
console, or a provider's through django-anymail.
"""

from __future__ import annotations

import asyncio
import logging
import smtplib
from typing import Any

from django.core.mail import get_connection

from notifications.email import deliveries
from notifications.outbound.base import OutboundChannel
from notifications.webhooks.channel import db

logger = logging.getLogger("notifications.deliver")

BATCH = 20


def is_permanent(exc: Exception) -> bool:
    """A 5xx refusal of this message (or all its recipients): sending it again will not help."""
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        return all(code >= 500 for code, _ in exc.recipients.values())
    code = getattr(exc, "smtp_code", None)
    return (
        isinstance(exc, smtplib.SMTPResponseException)
        and code is not None
        and code >= 500
        and (not isinstance(exc, smtplib.SMTPServerDisconnected))
    )


def describe(exc: Exception) -> str:
    return f"{type(exc).__name__}: {exc}"


class EmailChannel(OutboundChannel):
    name = "email"

    async def prepare(self) -> None:
        await db(deliveries.prepare)()

    async def claim(self, limit: int) -> list[list[int]]:
        if limit <= 0:
            return []
        ids = await db(deliveries.claim)(BATCH)
        return [ids] if ids else []

    async def deliver(self, row_ids: list[int]) -> None:
        remaining = list(row_ids)
        connection: Any = None
        try:
            while remaining:
                outgoing = await db(deliveries.start_sending)(remaining[0])
                if outgoing is None:
                    remaining.pop(0)
                    continue
                try:
                    if connection is None:
                        connection = get_connection(fail_silently=False)
                        await asyncio.to_thread(connection.open)
                    await asyncio.to_thread(connection.send_messages, [outgoing.message])
                except Exception as exc:  # noqa: BLE001 - every failure is recorded on the row
                    permanent = is_permanent(exc)
                    logger.info("e-mail #%s not sent: %s", outgoing.row_id, describe(exc))
                    await db(deliveries.record_failure)(outgoing.row_id, describe(exc), permanent)
                    remaining.pop(0)
                    if not permanent:
                        return  # the server is unwell: the rest wait for the next claim
                    continue
                await db(deliveries.record_sent)(outgoing.row_id)
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
            if connection is not None:
                await asyncio.to_thread(connection.close)
