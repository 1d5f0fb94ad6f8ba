"""Several workers on PostgreSQL: claims skip locked endpoints, and two real
``deliver`` processes share the work without sending anything twice or out of order."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from django.db import connection, transaction

from notifications.webhooks import deliveries
from notifications.webhooks.models import WebhookEndpoint
from orders.models import OrderEvent
from tests.support.webhooks import make_endpoint, wait_for_ids

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def test_a_claim_skips_endpoints_another_worker_has_locked(
    webhook_settings: Any, make_order: Any, alice: Any
) -> None:
    endpoints = [make_endpoint(f"http://127.0.0.1:9/e{i}") for i in range(3)]
    make_order(alice)
    deliveries.catch_up()
    locked, release = threading.Event(), threading.Event()

    def other_worker() -> None:
        with transaction.atomic():  # holds endpoint 0's row lock, as mid-claim
            WebhookEndpoint.objects.select_for_update().get(id=endpoints[0].id)
            locked.set()
            release.wait(30)
        connection.close()

    thread = threading.Thread(target=other_worker)
    thread.start()
    try:
        assert locked.wait(10)
        started = time.monotonic()
        claimed = deliveries.claim_endpoints(10)
        assert time.monotonic() - started < 2  # did not wait for the lock
        assert sorted(e.id for e in claimed) == [endpoints[1].id, endpoints[2].id]
        assert deliveries.claim_endpoints(10) == []  # leased now
    finally:
        release.set()
        thread.join(10)
    # Once the other transaction is over, endpoint 0 is claimable.
    assert [e.id for e in deliveries.claim_endpoints(10)] == [endpoints[0].id]


def test_two_deliver_workers_share_the_work_without_duplicates(
    start_receiver: Any, start_deliver: Any, make_order: Any, alice: Any
) -> None:
    receiver = start_receiver()
    paths = [f"/e{i}" for i in range(8)]
    for path in paths:
        make_endpoint(receiver.url(path))
    before = OrderEvent.objects.order_by("-id").values_list("id", flat=True).first() or 0
    start_deliver()
    start_deliver()
    for _ in range(6):
        make_order(alice, "shipped")
    expected = list(
        OrderEvent.objects.filter(id__gt=before).order_by("id").values_list("id", flat=True)
    )
    assert len(expected) == 24
    for path in paths:
        assert wait_for_ids(receiver, path, expected, timeout=30) == expected  # once, in order
