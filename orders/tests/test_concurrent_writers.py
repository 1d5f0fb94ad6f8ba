"""Commit order = id order: a reader paging through the event log by id while
many threads commit status changes ends with every event exactly once, in order.
(The same through the REST feed's cursor: notifications/tests/test_api_feed_concurrency.py.)

Runs on SQLite (writers serialize) and, in the PostgreSQL pass, proves the
advisory lock: without it a later id can commit before an earlier one and a
reader that already moved past it would never see it.
"""

from __future__ import annotations

import random
import threading
import time

import pytest
from django.db import connection
from django.db.models.signals import post_save

from orders.actions import transition_order
from orders.models import OrderEvent

WRITERS = 6
ORDERS_PER_WRITER = 4


def widen_the_race(sender, instance, created, **kwargs):
    """Hold the transaction open a moment after the insert, before commit,
    so that out-of-order commits would happen if ids did not follow them."""
    time.sleep(random.uniform(0, 0.004))


@pytest.mark.django_db(transaction=True)
def test_a_reader_paging_by_cursor_sees_every_event_once_in_order(alice, make_order, settings):
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    orders = [make_order(alice) for _ in range(WRITERS * ORDERS_PER_WRITER)]
    start_cursor = OrderEvent.objects.order_by("-id").values_list("id", flat=True).first()
    post_save.connect(widen_the_race, sender=OrderEvent, dispatch_uid="race")
    errors: list[BaseException] = []
    done = threading.Event()
    # Commits so far: the reader reads again when one lands (a reader spinning
    # on SQLite starves the writers of its lock: 50 s instead of 1).
    progress = threading.Condition()
    commits = [0]

    def committed() -> None:
        with progress:
            commits[0] += 1
            progress.notify_all()

    def writer(chunk):
        try:
            for order in chunk:
                for status in ("paid", "packed", "shipped", "delivered"):
                    transition_order(order.pk, status)
                    committed()
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)
        finally:
            connection.close()

    def watch() -> None:
        for thread in threads:
            thread.join()
        done.set()
        committed()

    threads = [threading.Thread(target=writer, args=(orders[i::WRITERS],)) for i in range(WRITERS)]
    seen: list[int] = []
    try:
        for thread in threads:
            thread.start()
        cursor = start_cursor
        watcher = threading.Thread(target=watch)
        watcher.start()
        while True:
            finished = done.is_set()
            with progress:
                observed = commits[0]
            page = list(
                OrderEvent.objects.filter(id__gt=cursor)
                .order_by("id")
                .values_list("id", flat=True)[:7]
            )
            seen += page
            cursor = page[-1] if page else cursor
            if finished and not page:
                break
            if not page:
                with progress:
                    assert progress.wait_for(lambda o=observed: commits[0] != o, timeout=30)
        watcher.join()
    finally:
        post_save.disconnect(dispatch_uid="race", sender=OrderEvent)
    assert not errors, errors
    expected = list(
        OrderEvent.objects.filter(id__gt=start_cursor).order_by("id").values_list("id", flat=True)
    )
    assert len(expected) == WRITERS * ORDERS_PER_WRITER * 4
    assert seen == expected
