"""Endpoint health for the staff dashboard: last success, failing since, disabled."""

from __future__ import annotations

from typing import Any

from notifications.webhooks.models import WebhookEndpoint
from orders.models import format_timestamp


def _when(value: Any) -> str | None:
    return format_timestamp(value) if value else None


def endpoint_health() -> list[dict[str, Any]]:
    """One row per endpoint; ``state`` is ``healthy``, ``failing`` or ``disabled``."""
    rows = []
    for endpoint in WebhookEndpoint.objects.order_by("id"):
        if not endpoint.enabled:
            state = "disabled"
        elif endpoint.failing_since:
            state = "failing"
        else:
            state = "healthy"
        rows.append(
            {
                "id": endpoint.id,
                "url": endpoint.url,
                "description": endpoint.description,
                "state": state,
                "last_success_at": _when(endpoint.last_success_at),
                "failing_since": _when(endpoint.failing_since),
                "consecutive_failures": endpoint.consecutive_failures,
                "disabled_reason": endpoint.disabled_reason,
            }
        )
    return rows
