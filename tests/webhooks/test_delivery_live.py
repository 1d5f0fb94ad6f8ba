"""End to end: order events -> a real ``manage.py deliver`` process -> real receiver processes.

Each receiver records what it got; the tests check signatures with the
``standardwebhooks`` verifier, once-per-id delivery, per-endpoint id order,
retries (500 then 200, receiver down then back), isolation of a slow or
dead endpoint from a healthy one, disabling after the failure window, and
the wake-up from a process that exits right after its commit.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
from typing import Any

import pytest
from standardwebhooks import Webhook

from devtools.processes import BASE_DIR
from notifications.outbound.wakeup import WAKE_GROUP
from notifications.webhooks.models import DeliveryState, WebhookDelivery, WebhookEndpoint
from orders.models import OrderEvent
from tests.support.live import group_member_count, wait_until
from tests.support.webhooks import make_endpoint, wait_for_ids

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]


def new_event_ids(after: int) -> list[int]:
    return list(OrderEvent.objects.filter(id__gt=after).order_by("id").values_list("id", flat=True))


def latest() -> int:
    return OrderEvent.objects.order_by("-id").values_list("id", flat=True).first() or 0


def test_events_arrive_signed_once_and_in_order(
    start_receiver: Any, start_deliver: Any, make_order: Any, alice: Any
) -> None:
    receiver = start_receiver()
    endpoint = make_endpoint(receiver.url("/a"))
    only_created = make_endpoint(receiver.url("/created"), event_types=["order.created"])
    start_deliver()
    before = latest()
    make_order(alice, "delivered")
    make_order(alice, "paid")
    expected = new_event_ids(before)
    assert len(expected) == 7

    ids = wait_for_ids(receiver, "/a", expected)
    assert ids == expected  # once each, in id order
    created = [e.id for e in OrderEvent.objects.filter(id__gt=before, type="order.created")]
    assert wait_for_ids(receiver, "/created", created) == created

    verifier = Webhook(endpoint.secret)
    for request in receiver.requests("/a"):
        payload = verifier.verify(request["body"], request["headers"])
        event = OrderEvent.objects.get(id=payload["id"])
        assert payload == json.loads(json.dumps(event.envelope()))  # the streams' envelope
        assert request["headers"]["webhook-id"] == f"evt_{event.id}"
        assert request["headers"]["host"] == f"127.0.0.1:{receiver.port}"
    with pytest.raises(Exception, match="signature"):
        Webhook(only_created.secret).verify(
            receiver.requests("/a")[0]["body"], receiver.requests("/a")[0]["headers"]
        )
    wait_until(
        lambda: not WebhookDelivery.objects.filter(state=DeliveryState.PENDING).exists(),
        message="every delivery row marked delivered",
    )
    row = WebhookDelivery.objects.get(endpoint=endpoint, event_id=expected[0])
    assert row.attempts == 1 and row.last_status_code == 200 and row.last_response == "ok"
    assert row.history[0]["status_code"] == 200 and row.last_latency_ms is not None


def test_500_then_200_resends_the_held_event_then_the_rest_in_order(
    start_receiver: Any, start_deliver: Any, make_order: Any, alice: Any
) -> None:
    receiver = start_receiver()
    receiver.set_mode("/a", status=500)
    make_endpoint(receiver.url("/a"))
    start_deliver()
    before = latest()
    make_order(alice, "shipped")
    expected = new_event_ids(before)

    # The first event is retried; the later ones wait behind it.
    wait_until(lambda: len(receiver.requests("/a")) >= 3, message="three failed attempts")
    assert {json.loads(r["body"])["id"] for r in receiver.requests("/a")} == {expected[0]}
    receiver.set_mode("/a", status=200)

    assert wait_for_ids(receiver, "/a", expected) == expected
    every = [json.loads(r["body"])["id"] for r in receiver.requests("/a")]
    failures = [r for r in receiver.requests("/a") if r["status"] == 500]
    assert every == [expected[0]] * len(failures) + expected
    # The same message each time: same webhook-id and body, so receivers dedupe.
    first = [r for r in receiver.requests("/a") if json.loads(r["body"])["id"] == expected[0]]
    assert len({(r["headers"]["webhook-id"], r["body"]) for r in first}) == 1


def test_a_receiver_down_for_a_while_gets_everything_when_back(
    start_receiver: Any, start_deliver: Any, make_order: Any, alice: Any
) -> None:
    receiver = start_receiver()
    endpoint = make_endpoint(receiver.url("/a"))
    start_deliver()
    receiver.stop()
    before = latest()
    make_order(alice, "delivered")
    make_order(alice, "packed")
    expected = new_event_ids(before)
    wait_until(
        lambda: WebhookEndpoint.objects.get(id=endpoint.id).consecutive_failures >= 3,
        message="connection failures recorded",
    )
    row = WebhookDelivery.objects.get(endpoint=endpoint, event_id=expected[0])
    assert row.last_status_code is None and "connect" in row.last_error
    assert row.next_attempt_at is not None

    receiver.start()  # same port
    assert wait_for_ids(receiver, "/a", expected) == expected
    wait_until(
        lambda: WebhookEndpoint.objects.get(id=endpoint.id).consecutive_failures == 0,
        message="endpoint healthy again",
    )
    assert WebhookEndpoint.objects.get(id=endpoint.id).failing_since is None


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_a_slow_and_a_dead_endpoint_do_not_delay_a_healthy_one(
    start_receiver: Any, start_deliver: Any, make_order: Any, alice: Any
) -> None:
    receiver = start_receiver()
    receiver.set_mode("/slow", sleep=4.0)  # below the 5 s read timeout: slow, not failing
    make_endpoint(receiver.url("/slow"))
    make_endpoint(f"http://127.0.0.1:{closed_port()}/dead")
    make_endpoint(receiver.url("/healthy"))
    start_deliver()
    before = latest()
    make_order(alice, "delivered")
    expected = new_event_ids(before)

    # All five reach the healthy endpoint while the slow one is still on its first.
    assert wait_for_ids(receiver, "/healthy", expected, timeout=3.5) == expected
    assert len(receiver.requests("/slow")) == 0
    assert wait_for_ids(receiver, "/slow", expected, timeout=40) == expected


def test_an_endpoint_failing_for_the_whole_window_is_disabled(
    start_receiver: Any, start_deliver: Any, make_order: Any, alice: Any
) -> None:
    receiver = start_receiver(status=500)
    endpoint = make_endpoint(receiver.url("/a"))
    start_deliver(WEBHOOKS_DISABLE_AFTER_SECONDS="2")
    make_order(alice, "paid")
    disabled = wait_until(
        lambda: WebhookEndpoint.objects.filter(id=endpoint.id, enabled=False).first(),
        timeout=20,
        message="endpoint disabled",
    )
    assert disabled.consecutive_failures >= 3
    assert disabled.disabled_at is not None and "failing since" in disabled.disabled_reason
    attempts = len(receiver.requests("/a"))
    assert attempts == disabled.consecutive_failures
    # Disabled: no more attempts, and pending rows stay for when staff re-enable it.
    assert WebhookDelivery.objects.filter(endpoint=endpoint, state="pending").count() == 2


def test_a_process_that_commits_and_exits_at_once_still_wakes_the_worker(
    start_receiver: Any,
    start_deliver: Any,
    make_order: Any,
    alice: Any,
    daphne_env: dict[str, str],
    redis_url: str,
    channel_layer_prefix: str,
) -> None:
    receiver = start_receiver()
    make_endpoint(receiver.url("/a"))
    order = make_order(alice)
    start_deliver(WEBHOOKS_POLL_MS="60000")  # no scan to fall back on within the test
    wait_until(
        lambda: asyncio.run(group_member_count(redis_url, channel_layer_prefix, WAKE_GROUP)),
        message="the worker listening for wake-ups",
    )
    first = wait_for_ids(receiver, "/a", new_event_ids(0))  # the worker's first scan
    before = latest()
    subprocess.run(  # noqa: S603 - fixed argv
        [
            sys.executable,
            "-c",
            "import django; django.setup(); from orders.actions import transition_order; "
            f"transition_order({order.pk}, 'paid')",
        ],
        cwd=BASE_DIR,
        env={**os.environ, **daphne_env},
        check=True,
        timeout=60,
    )
    expected = new_event_ids(before)
    assert len(expected) == 1
    # Its wake-up went out before it exited: delivered well within the 60 s poll.
    assert wait_for_ids(receiver, "/a", expected, timeout=10) == [*first, *expected]
