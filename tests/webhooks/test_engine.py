"""The delivery engine in-process (worker loop + webhook channel) against a real receiver process.

Catch-up after a lost on-commit hook, re-send, replay from a cursor, secret
rotation, connection-time address checks, no redirects, the bounded read of
a response, and the retry schedule.
"""

from __future__ import annotations

import asyncio
import json
import tracemalloc
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone
from standardwebhooks import Webhook, WebhookVerificationError

from notifications.outbound.worker import Worker
from notifications.webhooks import deliveries
from notifications.webhooks.channel import WebhookChannel
from notifications.webhooks.models import RESPONSE_EXCERPT_BYTES, WebhookDelivery, WebhookEndpoint
from notifications.webhooks.schedule import gives_up, nominal_schedule, retry_delay
from notifications.webhooks.sender import MAX_RESPONSE_BYTES
from orders.models import OrderEvent
from tests.support.live import wait_until
from tests.support.webhooks import make_endpoint

pytestmark = [pytest.mark.django_db(transaction=True)]


def drain() -> None:
    """Deliver everything due, in this process, then return."""

    async def run() -> None:
        channel = WebhookChannel()
        try:
            await Worker([channel], concurrency=8, poll_seconds=0.1, listen=False).drain()
        finally:
            await channel.close()

    asyncio.run(run())


def ids_after(after: int) -> list[int]:
    return list(OrderEvent.objects.filter(id__gt=after).order_by("id").values_list("id", flat=True))


def test_catch_up_creates_rows_a_lost_commit_hook_missed_and_keeps_order(
    webhook_settings: Any, start_receiver: Any, make_order: Any, alice: Any
) -> None:
    receiver = start_receiver()
    endpoint = make_endpoint(receiver.url("/a"))
    make_order(alice, "packed")
    expected = ids_after(endpoint.start_after)
    # As if the process died between commit and creating the first two rows.
    WebhookDelivery.objects.filter(event_id__in=expected[:2]).delete()
    assert WebhookDelivery.objects.count() == 1

    drain()
    assert receiver.event_ids("/a") == expected
    assert WebhookDelivery.objects.filter(state="delivered").count() == 3


def test_catch_up_steps_over_a_gap_in_event_ids_at_once(
    webhook_settings: Any, start_receiver: Any, make_order: Any, alice: Any
) -> None:
    # Ids used and gone (rolled-back inserts, pruning): 2,500 of them, more
    # than one catch-up batch, between the endpoint's cursor and its events.
    receiver = start_receiver()
    endpoint = make_endpoint(receiver.url("/a"))
    order = make_order(alice)
    filler = OrderEvent.objects.filter(order=order).first()
    OrderEvent.objects.bulk_create(
        OrderEvent(order=order, type=filler.type, data=filler.data) for _ in range(2500)
    )
    OrderEvent.objects.filter(id__gt=endpoint.start_after).delete()
    WebhookDelivery.objects.all().delete()
    make_order(alice, "paid")
    expected = ids_after(endpoint.start_after)

    drain()
    assert receiver.event_ids("/a") == expected


def test_resend_and_replay_from_a_cursor(
    webhook_settings: Any, start_receiver: Any, make_order: Any, alice: Any
) -> None:
    receiver = start_receiver()
    make_order(alice, "paid")  # before the endpoint exists: not sent...
    old = ids_after(0)
    endpoint = make_endpoint(receiver.url("/a"))
    make_order(alice, "paid")
    new = ids_after(endpoint.start_after)
    drain()
    assert receiver.event_ids("/a") == new

    row = WebhookDelivery.objects.get(endpoint=endpoint, event_id=new[0])
    deliveries.resend(row)
    drain()
    assert receiver.event_ids("/a") == [*new, new[0]]
    row.refresh_from_db()
    assert row.attempts == 2 and row.state == "delivered"

    deliveries.replay(endpoint, after=old[0])  # ...until a replay from a cursor reaches back
    drain()
    assert receiver.event_ids("/a") == [*new, new[0], *old[1:], *new]


def test_rotation_signs_with_both_secrets_during_the_grace_period(
    webhook_settings: Any, start_receiver: Any, make_order: Any, alice: Any
) -> None:
    receiver = start_receiver()
    endpoint = make_endpoint(receiver.url("/a"))
    old_secret = endpoint.secret
    new_secret = deliveries.rotate_secret(endpoint, grace_seconds=3600)
    assert new_secret.startswith("whsec_") and new_secret != old_secret
    make_order(alice)
    drain()
    request = receiver.requests("/a")[-1]
    assert len(request["headers"]["webhook-signature"].split(" ")) == 2
    for secret in (old_secret, new_secret):
        assert Webhook(secret).verify(request["body"], request["headers"])["type"] == (
            "order.created"
        )

    # Grace over: only the new secret signs.
    WebhookEndpoint.objects.filter(id=endpoint.id).update(
        previous_secret_expires_at=timezone.now() - timedelta(seconds=1)
    )
    make_order(alice)
    drain()
    request = receiver.requests("/a")[-1]
    assert len(request["headers"]["webhook-signature"].split(" ")) == 1
    Webhook(new_secret).verify(request["body"], request["headers"])
    with pytest.raises(WebhookVerificationError):
        Webhook(old_secret).verify(request["body"], request["headers"])


def test_private_addresses_are_refused_at_connection_time(
    webhook_settings: Any, start_receiver: Any, make_order: Any, alice: Any
) -> None:
    receiver = start_receiver()
    # Saved while allowed (or: its DNS name now points somewhere private).
    by_ip = make_endpoint(receiver.url("/ip"))
    by_name = make_endpoint(f"http://localhost:{receiver.port}/name")
    webhook_settings.WEBHOOKS_ALLOW_PRIVATE_NETWORKS = False
    make_order(alice)
    drain()
    assert receiver.requests() == []
    for endpoint in (by_ip, by_name):
        row = WebhookDelivery.objects.get(endpoint=endpoint)
        assert row.state == "pending" and row.last_error.startswith("refused: ")
        assert "non-public address" in row.last_error and row.last_status_code is None


def test_the_checked_address_is_called_with_the_host_header_kept(
    webhook_settings: Any, start_receiver: Any, make_order: Any, alice: Any
) -> None:
    receiver = start_receiver()
    make_endpoint(f"http://localhost:{receiver.port}/name")
    make_order(alice)
    drain()
    (request,) = receiver.requests("/name")
    assert request["headers"]["host"] == f"localhost:{receiver.port}"


def test_redirects_are_not_followed(
    webhook_settings: Any, start_receiver: Any, make_order: Any, alice: Any
) -> None:
    receiver = start_receiver()
    receiver.set_mode("/a", status=302)
    endpoint = make_endpoint(receiver.url("/a"))
    make_order(alice)
    drain()
    assert len(receiver.requests()) == 1  # no request to wherever it pointed
    row = WebhookDelivery.objects.get(endpoint=endpoint)
    assert row.state == "pending" and row.last_status_code == 302 and row.last_error == "HTTP 302"
    assert WebhookEndpoint.objects.get(id=endpoint.id).retry_at is not None


def test_a_huge_response_body_is_read_only_up_to_the_bound(
    webhook_settings: Any, start_receiver: Any, make_order: Any, alice: Any
) -> None:
    receiver = start_receiver()
    huge = 256 * 2**20  # streamed by the receiver as it is read, never built in memory
    receiver.set_mode("/a", body_bytes=huge)
    endpoint = make_endpoint(receiver.url("/a"))
    make_order(alice)
    tracemalloc.start()
    try:
        drain()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()

    row = WebhookDelivery.objects.get(endpoint=endpoint)
    assert row.state == "delivered" and row.last_status_code == 200
    assert row.last_response == "x" * RESPONSE_EXCERPT_BYTES  # what is kept: the first 1 KiB
    # What was read: MAX_RESPONSE_BYTES, then the connection was dropped. The
    # receiver got rid of no more than the sockets' buffers hold (a few MiB)...
    sent = wait_until(lambda: receiver.stats()["sent"].get("/a"), message="the answer to end")
    assert MAX_RESPONSE_BYTES <= sent < 32 * 2**20
    # ...and this process never held more than a fraction of the body.
    assert peak < 16 * 2**20


def test_the_default_retry_schedule_spans_at_least_three_days(settings: Any) -> None:
    assert settings.WEBHOOKS_DISABLE_AFTER_SECONDS == 3 * 24 * 3600
    schedule = nominal_schedule()
    assert schedule[:3] == [10.0, 30.0, 70.0]  # 10 s, then +20 s, +40 s
    assert schedule[-1] > 71 * 3600 and len(schedule) == 22
    assert max(b - a for a, b in zip(schedule, schedule[1:], strict=False)) == 6 * 3600
    for failures, low, high in ((1, 8, 12), (2, 16, 24), (40, 0.8 * 21600, 1.2 * 21600)):
        delay = retry_delay(failures).total_seconds()
        assert low <= delay <= high
    start = timezone.now()
    assert not gives_up(start, start + timedelta(days=3) - timedelta(seconds=1))
    assert gives_up(start, start + timedelta(days=3))


def test_delivery_body_is_the_stream_envelope(
    webhook_settings: Any, start_receiver: Any, make_order: Any, alice: Any
) -> None:
    receiver = start_receiver()
    make_endpoint(receiver.url("/a"))
    order = make_order(alice)
    drain()
    body = json.loads(receiver.requests("/a")[0]["body"])
    assert set(body) == {"id", "type", "at", "order"}
    assert body["order"]["reference"] == order.reference
