"""Bench driver process: commits E order-status changes at a set rate.

``python -m bench.driver PLAN.json`` where the plan is
``{"mode": "app"|"baseline", "orders": [[order_id, customer_id], ...],
"events": E, "rate": R, "first_id": N}``. Event k moves order ``k % len(orders)``
one step along placed→paid→packed→shipped→delivered, so the plan needs
``len(orders) * 4 >= E`` fresh (``placed``) orders.

- ``app``: through ``orders.actions.transition_order`` with the project's
  settings (the on-commit publish included). The commit time is stamped by an
  ``on_commit`` callback registered *before* the change, so it runs right
  after the commit and before the publish.
- ``baseline``: no database; the envelope goes straight to the baseline's
  Redis channels (one pipeline for the three groups); the time is stamped
  just before the publish. Ids count up from ``first_id``.

The app's driver stands for the app's web process, so it freezes its
startup heap as ``booktime.asgi`` does (unfrozen, a full collection of
Django's heap, tens of milliseconds, could fall between a commit and its
publish), and both drivers warm up before the first timed event
(``warm_up_app``; a Redis ``PING`` for the baseline): the steady state is
measured, not a new process's first publish, which paid 60-80 ms of
one-time set-up (the publisher thread, its Redis connection, the database
connection, lazy imports) and was the maximum of every app run
(docs/performance.md, round 7).

Prints one JSON line: ``{"events": [[id, order_id, commit_ts], ...], ...}``.
"""

from __future__ import annotations

import gc
import json
import os
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

STEPS = ["paid", "packed", "shipped", "delivered"]
PREVIOUS = {"paid": "placed", "packed": "paid", "shipped": "packed", "delivered": "shipped"}


def schedule(plan: dict[str, Any]) -> list[tuple[int, int, str]]:
    """(order id, customer id, new status) for each of the E events, in order."""
    orders = plan["orders"]
    total = plan["events"]
    if total > len(orders) * len(STEPS):
        raise SystemExit(f"{total} events need at least {-(-total // len(STEPS))} orders")
    return [
        (orders[k % len(orders)][0], orders[k % len(orders)][1], STEPS[k // len(orders)])
        for k in range(total)
    ]


def paced(
    steps: list[tuple[int, int, str]], rate: float, commit: Callable[[int, int, str], Any]
) -> tuple[list[Any], float]:
    """Run ``commit`` for each step at ``rate`` per second on an absolute schedule.

    Returns the results and the worst lag behind schedule (s).
    """
    results = []
    start = time.monotonic()
    worst_lag = 0.0
    for k, step in enumerate(steps):
        due = start + k / rate
        now = time.monotonic()
        if due > now:
            time.sleep(due - now)  # pacing the offered load, not waiting for a result
        else:
            worst_lag = max(worst_lag, now - due)
        results.append(commit(*step))
    return results, worst_lag


def run_app(plan: dict[str, Any]) -> dict[str, Any]:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "booktime.settings")
    import django

    django.setup()
    from django.db import transaction
    from django.db.models.signals import post_save

    from orders.actions import transition_order
    from orders.models import OrderEvent

    # The id of the event each change writes, as it is saved: a query for it
    # after the change was the bench's own cost, 6 % of the app driver's CPU
    # per change (docs/performance.md, round 11), which the baseline's driver
    # does not pay.
    saved: list[int] = []

    def note_event(sender: type, instance: OrderEvent, created: bool, **kwargs: Any) -> None:
        if created:
            saved.append(instance.id)

    post_save.connect(note_event, sender=OrderEvent, weak=False)
    warm_up_app()
    gc.freeze()  # as booktime.asgi (module docstring)

    def commit(order_id: int, _customer_id: int, status: str) -> list[Any]:
        stamp: list[float] = []
        saved.clear()
        with transaction.atomic():
            transaction.on_commit(lambda: stamp.append(time.time()))
            transition_order(order_id, status, actor=None, note="bench")
        (event_id,) = saved  # one change, one event
        return [event_id, order_id, stamp[0]]

    started = time.time()
    events, lag = paced(schedule(plan), plan["rate"], commit)
    return {"events": events, "seconds": time.time() - started, "worst_lag_s": lag}


def warm_up_app() -> None:
    """What a process's first publish sets up, set up now: the database
    connection, and the publisher loop with its channel layer and Redis
    connection (a message to a group nobody joins)."""
    from channels.layers import get_channel_layer

    from notifications.publish import run_on_publisher_loop
    from orders.models import OrderEvent

    async def publish_nothing() -> None:
        await get_channel_layer().group_send("bench.warm-up", {"type": "bench.warm_up"})

    OrderEvent.objects.exists()
    run_on_publisher_loop(publish_nothing)


def envelope(event_id: int, order_id: int, status: str) -> dict[str, Any]:
    """The design's envelope, with made-up order figures."""
    return {
        "id": event_id,
        "type": "order.status_changed",
        "at": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
        "order": {
            "id": order_id,
            "reference": f"BT-{order_id:06d}",
            "status": status,
            "previous_status": PREVIOUS[status],
            "total": "59.90",
            "items": 3,
        },
    }


def run_baseline(plan: dict[str, Any]) -> dict[str, Any]:
    import redis

    from bench.baseline import channel_prefix

    client = redis.Redis.from_url(os.environ["REDIS_URL"])
    client.ping()  # connected before the first timed event, as the app's driver
    prefix = channel_prefix()
    next_id = iter(range(plan["first_id"], plan["first_id"] + plan["events"]))

    def commit(order_id: int, customer_id: int, status: str) -> list[Any]:
        event_id = next(next_id)
        payload = json.dumps(envelope(event_id, order_id, status))
        at = time.time()
        pipe = client.pipeline(transaction=False)
        for group in (f"order.{order_id}", f"customer.{customer_id}", "staff.orders"):
            pipe.publish(f"{prefix}:{group}", payload)
        pipe.execute()
        return [event_id, order_id, at]

    started = time.time()
    events, lag = paced(schedule(plan), plan["rate"], commit)
    return {"events": events, "seconds": time.time() - started, "worst_lag_s": lag}


def main(plan_path: str) -> None:
    with open(plan_path) as handle:
        plan = json.load(handle)
    result = run_app(plan) if plan["mode"] == "app" else run_baseline(plan)
    sys.stdout.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main(sys.argv[1])
