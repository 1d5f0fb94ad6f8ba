"""Webhook test helpers: endpoints, waiting for deliveries, the tests' retry settings.

The receiver processes are ``devtools.webhook_receiver.WebhookReceiver``
(fixture ``start_receiver``); the ``deliver`` worker is ``start_deliver``
(``tests/webhooks/conftest.py``, on the shared ``start_worker``).
"""

from __future__ import annotations

from typing import Any

from devtools.webhook_receiver import WebhookReceiver
from tests.support.live import wait_until

# Short schedule for tests: retries after ~0.1, 0.2, 0.4, 0.5, 0.5 ... s.
FAST_RETRIES = {
    "WEBHOOKS_ALLOW_PRIVATE_NETWORKS": "1",
    "WEBHOOKS_RETRY_BASE_MS": "100",
    "WEBHOOKS_RETRY_MAX_MS": "500",
    "WEBHOOKS_POLL_MS": "200",
    "WEBHOOKS_READ_TIMEOUT_SECONDS": "5",
    "WEBHOOKS_CONNECT_TIMEOUT_SECONDS": "2",
}


def make_endpoint(url: str, **fields: Any) -> Any:
    """An endpoint created the way the API creates one (cursor at the newest event)."""
    from notifications.webhooks import deliveries
    from notifications.webhooks.models import WebhookEndpoint

    return WebhookEndpoint.objects.create(url=url, **deliveries.cursors_from_now(), **fields)


def wait_for_ids(
    receiver: WebhookReceiver, path: str, expected: list[int], timeout: float = 20.0
) -> list[int]:
    """Wait until ``path`` got every id in ``expected`` (2xx); return what arrived."""
    return wait_until(
        lambda: (ids := receiver.event_ids(path)) and set(expected) <= set(ids) and ids,
        timeout,
        f"events {expected} at {path}",
    )
