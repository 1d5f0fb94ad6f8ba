"""``manage.py prune_events``: a bounded log, a moving horizon, reset beyond it (section 8).

- Old events go, in batches, as one contiguous run of ids; the horizon moves
  to the last one; ``--keep-days 0`` keeps none; the default comes from
  ``EVENT_RETENTION_DAYS``.
- Never deleted: unpublished events, events a pending webhook delivery of an
  enabled endpoint still needs, or events after the point through which an
  enabled endpoint's delivery rows exist. A disabled endpoint holds nothing.
- After a real prune every transport of a real daphne (WebSocket, SSE,
  long-poll) and the REST feed answer a cursor below the horizon with
  ``reset``, and serve one at the horizon normally.
- A reader racing a prune gets a reset, not a silent gap.

Runs on SQLite and, in the PostgreSQL pass, on PostgreSQL.
"""

from __future__ import annotations

import threading
from datetime import timedelta
from io import StringIO
from typing import Any

import httpx
import pytest
from asgiref.sync import sync_to_async
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from notifications.log import latest_event_id, read_backlog
from notifications.models import LogHorizon
from notifications.retention import prune_events
from notifications.webhooks.models import DeliveryState, WebhookDelivery, WebhookEndpoint
from orders.actions import transition_order
from orders.models import OrderEvent
from tests.support.live import ws_connect, ws_recv, ws_send
from tests.support.sse import sse_frames


def age(ids: list[int], days: int) -> None:
    """Make events ``days`` old (and published, as after a normal commit)."""
    then = timezone.now() - timedelta(days=days)
    OrderEvent.objects.filter(id__in=ids).update(created_at=then, published_at=then)


def all_ids() -> list[int]:
    return list(OrderEvent.objects.order_by("id").values_list("id", flat=True))


@pytest.fixture
def old_and_new(alice: Any, bob: Any, make_order: Any) -> tuple[list[int], list[int]]:
    """Seven events 100 days old, then three of today (all published)."""
    make_order(alice, "shipped")  # 4 events
    make_order(bob, "packed")  # 3 events
    old = all_ids()
    age(old, 100)
    make_order(alice, "paid")  # 2 events
    order = make_order(bob, "placed")  # 1 event
    new = [i for i in all_ids() if i not in old]
    OrderEvent.objects.filter(id__in=new).update(published_at=timezone.now())
    assert len(old) == 7 and len(new) == 3 and order
    return old, new


def prune(*args: str) -> str:
    out = StringIO()
    call_command("prune_events", *args, stdout=out)
    return out.getvalue()


@pytest.mark.django_db
def test_old_events_go_and_the_horizon_moves(old_and_new: Any) -> None:
    old, new = old_and_new
    output = prune("--keep-days", "30")
    assert all_ids() == new
    assert LogHorizon.pruned_through_id() == old[-1]
    assert f"Deleted 7 events; the log now starts after event #{old[-1]}" in output
    # Idempotent: nothing more to do.
    assert "Deleted 0 events" in prune("--keep-days", "30")
    assert LogHorizon.pruned_through_id() == old[-1]


@pytest.mark.django_db
def test_the_default_retention_is_the_setting(old_and_new: Any, settings: Any) -> None:
    old, new = old_and_new
    settings.EVENT_RETENTION_DAYS = 101
    prune()
    assert all_ids() == old + new  # nothing is 101 days old
    settings.EVENT_RETENTION_DAYS = 99
    prune()
    assert all_ids() == new


@pytest.mark.django_db
def test_keep_days_zero_keeps_none_and_the_log_goes_on_from_the_horizon(
    old_and_new: Any, alice: Any, make_order: Any
) -> None:
    old, new = old_and_new
    prune("--keep-days", "0")
    assert all_ids() == []
    assert LogHorizon.pruned_through_id() == new[-1]
    # An empty log still hands out a cursor the log can serve...
    assert latest_event_id() == new[-1]
    backlog = read_backlog(None, new[-1])
    assert not backlog.reset and backlog.cursor == new[-1]
    assert read_backlog(None, new[-1] - 1).reset
    # ...and the next event comes after it.
    make_order(alice)
    assert all_ids()[0] > new[-1]


@pytest.mark.django_db
def test_deletes_in_batches_of_bounded_size(old_and_new: Any) -> None:
    old, new = old_and_new
    with CaptureQueriesContext(connection) as queries:
        result = prune_events(keep_days=30, batch_size=3)
    deletes = [q["sql"] for q in queries.captured_queries if q["sql"].startswith("DELETE")]
    assert len(deletes) == 3  # 3 + 3 + 1 rows
    assert result.deleted == 7 and all_ids() == new


@pytest.mark.django_db
def test_unpublished_events_are_never_deleted(old_and_new: Any) -> None:
    old, new = old_and_new
    OrderEvent.objects.filter(id=old[3]).update(published_at=None)
    output = prune("--keep-days", "0")
    assert all_ids() == old[3:] + new  # the log stays contiguous above the horizon
    assert LogHorizon.pruned_through_id() == old[2]
    assert "unpublished events" in output


@pytest.mark.django_db
def test_events_an_enabled_webhook_still_needs_are_kept(old_and_new: Any) -> None:
    old, new = old_and_new
    endpoint = WebhookEndpoint.objects.create(
        url="https://hooks.example/in", start_after=0, rows_through=new[-1]
    )
    WebhookDelivery.objects.create(endpoint=endpoint, event_id=old[4], event_type="order.created")
    WebhookDelivery.objects.create(
        endpoint=endpoint,
        event_id=old[2],
        event_type="order.created",
        state=DeliveryState.DELIVERED,
    )
    output = prune("--keep-days", "0")
    assert all_ids() == old[4:] + new
    assert "webhook deliveries" in output

    # Rows not created yet: events after rows_through are needed too.
    WebhookDelivery.objects.filter(endpoint=endpoint).update(state=DeliveryState.DELIVERED)
    WebhookEndpoint.objects.filter(pk=endpoint.pk).update(rows_through=new[0])
    prune("--keep-days", "0")
    assert all_ids() == new[1:]

    # A disabled endpoint holds nothing back.
    WebhookEndpoint.objects.filter(pk=endpoint.pk).update(enabled=False)
    prune("--keep-days", "0")
    assert all_ids() == []


@pytest.mark.django_db
def test_a_retention_longer_than_the_calendar_keeps_everything(old_and_new: Any) -> None:
    old, new = old_and_new
    assert "Deleted 0 events" in prune("--keep-days", str(10**12))
    assert all_ids() == old + new


@pytest.mark.django_db
def test_bad_arguments_are_refused() -> None:
    from django.core.management import CommandError

    with pytest.raises(CommandError, match="keep-days"):
        prune("--keep-days", "-1")
    with pytest.raises(CommandError, match="batch-size"):
        prune("--batch-size", "0")


@pytest.mark.django_db(transaction=True)
def test_a_reader_racing_a_prune_gets_a_reset_not_a_gap(old_and_new: Any) -> None:
    """The prune commits its horizon and deletes between the reader's newest-id
    read and its rows read: the reader must not return the rows after the gap
    as if they followed its cursor."""
    old, new = old_and_new
    pruned = threading.Event()

    def prune_elsewhere() -> None:
        try:
            prune_events(keep_days=30)
        finally:
            connection.close()

    def prune_before_rows(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        if not pruned.is_set() and "orders_orderevent" in sql and '"id" >' in sql.replace("`", '"'):
            pruned.set()
            worker = threading.Thread(target=prune_elsewhere)
            worker.start()
            worker.join(30)
        return execute(sql, params, many, context)

    with connection.execute_wrapper(prune_before_rows):
        backlog = read_backlog(None, old[1])
    assert pruned.is_set(), "the rows query was not seen"
    assert all_ids() == new
    assert backlog.reset, backlog
    assert backlog.events == [] and backlog.cursor == new[-1]


# -- through every transport of a real daphne -------------------------------------------


@pytest.fixture
def pruned_order(alice: Any, make_order: Any) -> tuple[Any, int, int]:
    """Alice's order: its first three events pruned, one left. Returns
    (order, horizon, the id of the event left)."""
    order = make_order(alice, "packed")
    old = all_ids()
    age(old, 100)
    transition_order(order.pk, "shipped")
    OrderEvent.objects.update(published_at=timezone.now())
    prune("--keep-days", "30")
    left = all_ids()
    assert LogHorizon.pruned_through_id() == old[-1] and len(left) == 1
    return order, old[-1], left[0]


@pytest.mark.live
@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
async def test_every_transport_answers_a_cursor_below_the_horizon_with_reset(
    daphne_server: Any, alice: Any, login_cookies: Any, pruned_order: Any
) -> None:
    order, horizon, left = pruned_order
    stream = f"order:{order.pk}"
    cookies = await sync_to_async(login_cookies)(alice)
    below = horizon - 1

    # WebSocket: a reset frame below the horizon; the event at it is served.
    async with await ws_connect(daphne_server, cookies=cookies) as ws:
        await ws_send(ws, {"action": "subscribe", "stream": stream, "after": below})
        assert (await ws_recv(ws))["type"] == "subscribed"
        assert await ws_recv(ws) == {"type": "reset", "stream": stream, "cursor": left}
        await ws_send(ws, {"action": "unsubscribe", "stream": stream})
        assert (await ws_recv(ws))["type"] == "unsubscribed"
        await ws_send(ws, {"action": "subscribe", "stream": stream, "after": horizon})
        assert (await ws_recv(ws))["type"] == "subscribed"
        frame = await ws_recv(ws)
        assert frame["type"] == "event" and frame["event"]["id"] == left

    async with httpx.AsyncClient(base_url=daphne_server.url, cookies=cookies, timeout=10) as client:
        # SSE: event: reset (its id is the cursor to follow on from).
        async with client.stream("GET", f"/events/stream/?stream={stream}&after={below}") as sse:
            async for frame in sse_frames(sse.aiter_lines()):
                if frame.event != "message":
                    break
        assert frame.event == "reset" and frame.id == str(left)
        assert frame.json() == {"stream": stream, "cursor": left}

        # Long-poll: {"reset": true} at once; at the horizon, the event.
        answer = await client.get(f"/events/poll/?stream={stream}&after={below}&timeout=0")
        assert answer.json() == {"stream": stream, "events": [], "cursor": left, "reset": True}
        answer = await client.get(f"/events/poll/?stream={stream}&after={horizon}&timeout=0")
        assert [e["id"] for e in answer.json()["events"]] == [left]

        # REST feed.
        feed = (await client.get(f"/api/events/?after={below}")).json()
        assert feed["reset"] is True and feed["events"] == [] and feed["next"] == left
        feed = (await client.get(f"/api/events/?after={horizon}")).json()
        assert feed["reset"] is False and [e["id"] for e in feed["events"]] == [left]
