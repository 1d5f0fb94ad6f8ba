"""Concurrent writers on PostgreSQL: a poller following ``next`` sees every event once, in order.

On PostgreSQL ids come from a sequence at insert time, so without the event
log's advisory lock a later id could commit first and a reader following
``next`` would skip the earlier one for good. SQLite serialises writers, so
this test only means something on PostgreSQL: it is marked ``postgres`` and
runs in the PostgreSQL pass (``DATABASE_URL=postgres://...``); the shared
fixtures deselect it on SQLite.
"""

from __future__ import annotations

import random
import threading
import time
from typing import Any

import pytest
from django.db import connection

from notifications.log import latest_event_id
from orders.actions import transition_order
from orders.models import OrderEvent
from tests.support.api import token_client

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

WRITERS = 6
STEPS = ["paid", "packed", "shipped", "delivered", "returned"]
DEADLINE_SECONDS = 60


def slow_commit_after_event_insert(
    execute: Any, sql: str, params: Any, many: bool, ctx: Any
) -> Any:
    """Hold the transaction open a moment after its event got an id.

    Widens the window in which, without the event log's lock, a later id
    could commit first; the delay is fault injection, not a wait for anything.
    """
    result = execute(sql, params, many, ctx)
    if sql.lstrip().upper().startswith('INSERT INTO "ORDERS_ORDEREVENT"'):
        time.sleep(random.uniform(0, 0.005))
    return result


def test_a_poller_following_next_sees_every_event_exactly_once_in_order(
    staff_user: Any, alice: Any, bob: Any, make_order: Any
) -> None:
    orders = [make_order(alice if i % 2 else bob) for i in range(WRITERS)]
    start = latest_event_id()
    client = token_client(staff_user)
    failures: list[BaseException] = []
    go = threading.Barrier(WRITERS)

    def writer(order_id: int) -> None:
        try:
            go.wait(timeout=10)
            with connection.execute_wrapper(slow_commit_after_event_insert):
                for status in STEPS:
                    transition_order(order_id, status)
        except BaseException as exc:  # reported by the main thread
            failures.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=writer, args=(o.pk,)) for o in orders]
    for thread in threads:
        thread.start()

    seen: list[int] = []
    cursor = start
    polls = 0
    deadline = time.monotonic() + DEADLINE_SECONDS
    while True:
        writers_done = not any(thread.is_alive() for thread in threads)
        response = client.get(f"/api/events/?after={cursor}&limit=4")
        assert response.status_code == 200, response.content
        page = response.json()
        polls += 1
        assert page["reset"] is False
        seen += [event["id"] for event in page["events"]]
        assert page["next"] >= cursor
        cursor = page["next"]
        if writers_done and not page["more"]:
            break
        assert time.monotonic() < deadline, f"poller still behind after {polls} polls"

    for thread in threads:
        thread.join(timeout=10)
    assert not failures, failures
    expected = list(
        OrderEvent.objects.filter(id__gt=start).order_by("id").values_list("id", flat=True)
    )
    assert len(expected) == WRITERS * len(STEPS)
    assert seen == expected, f"{seen} != {expected}"  # every event, once, in id order
    assert polls > 1
