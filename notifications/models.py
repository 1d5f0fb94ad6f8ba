"""State the notification rules keep in the database."""

from __future__ import annotations

from django.db import models


class LogHorizon(models.Model):
    """How far the event log has been pruned (a single row, id=1).

    Events with ``id <= pruned_through`` may be gone, so a cursor below it
    cannot be served and is answered with a reset. Written by the
    ``prune_events`` command; read by ``notifications.log``.
    """

    pruned_through = models.BigIntegerField(default=0)
    pruned_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"event log pruned through #{self.pruned_through}"

    @classmethod
    def pruned_through_id(cls) -> int:
        """The horizon; in SQL, as every backlog read asks (notifications.sql)."""
        from notifications import sql

        rows = sql.run(
            f"SELECT {sql.column(cls, 'pruned_through')} FROM {sql.table(cls)} WHERE id = 1", []
        )
        return (rows[0][0] or 0) if rows else 0


# Webhooks, e-mail and Web Push keep their rows in their own modules.
from notifications.email.models import (  # noqa: E402, F401
    EmailMessage,
    EmailPreferences,
    OutboundCursor,
)
from notifications.push.models import PushMessage, PushSubscription  # noqa: E402, F401
from notifications.webhooks.models import WebhookDelivery, WebhookEndpoint  # noqa: E402, F401
