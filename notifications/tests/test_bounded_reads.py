"""Every read of the event log is one bounded page (issue 12, section 6).

A 20,000-event backlog (bulk-created), read from cursor 0 through each
transport of the real ASGI app. Every statement that reads event rows is
recorded with the rows it may return (its ``LIMIT``), next to what the
consumer sent, in the order it happened:

- no statement may return more than ``BACKFILL_PAGE_SIZE`` rows, and none
  reads rows without a ``LIMIT``;
- a long-poll answers with one page and reads no other (it used to read the
  remaining 19,500 rows after answering);
- WebSocket and SSE send each page before they read the next, and in the end
  send all 20,000 events once, in order;
- the REST feed reads one page, even when asked for more than a page.

Statements are seen through ``connection.execute_wrapper`` on the one
database thread the consumers' ``database_hop`` calls run on here.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from orders.models import OrderEvent
from tests.support.asgi import application, http_headers, http_scope

pytestmark = [
    pytest.mark.asyncio,
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("memory_layer"),
]

BACKLOG = 20_000
EVENT_TABLE = re.compile(r'FROM\s+"?orders_orderevent"?', re.IGNORECASE)
LIMIT = re.compile(r"\bLIMIT\s+(\d+)", re.IGNORECASE)


def rows_bound(sql: str) -> int | None:
    """How many event rows a statement may return: its LIMIT; None if it has none."""
    if not EVENT_TABLE.search(sql) or sql.lstrip().upper().startswith(("INSERT", "DELETE")):
        return 0
    found = LIMIT.search(sql)
    if found:
        return int(found.group(1))
    # Aggregates (COUNT/MAX) return one row.
    return 1 if re.search(r"\b(COUNT|MAX|MIN)\s*\(", sql, re.IGNORECASE) else None


class Trace:
    """What happened, in order: ``("read", rows)`` per event-table statement and
    ``("sent", events)`` per message the consumer sent."""

    def __init__(self) -> None:
        self.steps: list[tuple[str, int]] = []
        self.unbounded: list[str] = []

    def __call__(self, execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        bound = rows_bound(sql)
        if bound is None:
            self.unbounded.append(sql)
        elif bound:
            self.steps.append(("read", bound))
        return execute(sql, params, many, context)

    def sent(self, events: int) -> None:
        self.steps.append(("sent", events))

    @property
    def reads(self) -> list[int]:
        return [n for kind, n in self.steps if kind == "read"]

    @property
    def page_reads(self) -> list[int]:
        """Reads that fetch a page (not the one-row newest-id/EXISTS look-ups)."""
        return [n for n in self.reads if n > 1]

    def assert_each_page_sent_before_the_next_read(self) -> None:
        read = sent = 0
        for kind, n in self.steps:
            if kind == "read" and n > 1:
                assert read <= sent, f"read page {n} with {read - sent} rows not yet sent"
                read += n
            elif kind == "sent":
                sent += n


@pytest.fixture
def backlog(alice: Any, make_order: Any) -> Any:
    """Alice's order with 20,000 published events (its own events first)."""
    order = make_order(alice, "paid")
    template = OrderEvent.objects.filter(order=order).order_by("-id").first()
    now = timezone.now()
    OrderEvent.objects.bulk_create(
        (
            OrderEvent(order=order, type=template.type, data=template.data, published_at=now)
            for _ in range(BACKLOG - OrderEvent.objects.filter(order=order).count())
        ),
        batch_size=2000,
    )
    OrderEvent.objects.filter(published_at__isnull=True).update(published_at=now)
    assert OrderEvent.objects.filter(order=order).count() == BACKLOG
    return order


@pytest_asyncio.fixture
async def trace() -> AsyncIterator[Trace]:
    """A ``Trace`` installed on the database thread's connection."""
    found = Trace()

    def install() -> None:
        connection.execute_wrappers.append(found)

    def remove() -> None:
        connection.execute_wrappers.remove(found)

    await sync_to_async(install)()
    yield found
    await sync_to_async(remove)()


async def run_http(path: str, query: str, headers: Any, trace: Trace, *, until: Any) -> bytes:
    """Drive one HTTP request through the app, recording each body chunk in
    ``trace`` (by event count); disconnect once ``until(body)`` holds or the
    response is complete, then let the app finish."""
    inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    inbox.put_nowait({"type": "http.request", "body": b""})
    body = bytearray()
    finished = asyncio.Event()

    async def send(message: dict[str, Any]) -> None:
        if message["type"] != "http.response.body":
            return
        chunk = message.get("body", b"")
        body.extend(chunk)
        trace.sent(count_events(chunk, path))
        if not message.get("more_body", False) or until(bytes(body)):
            finished.set()

    app = asyncio.ensure_future(
        application()(http_scope(path, query.encode(), headers), inbox.get, send)
    )
    await asyncio.wait_for(finished.wait(), 60)
    inbox.put_nowait({"type": "http.disconnect"})
    await asyncio.wait_for(app, 10)
    return bytes(body)


def count_events(chunk: bytes, path: str) -> int:
    if path == "/events/stream/":
        return chunk.count(b"\nevent: order.")
    if not chunk:
        return 0
    return len(json.loads(chunk).get("events", []))


def sse_ids(body: bytes) -> list[int]:
    return [int(line[4:]) for line in body.decode().splitlines() if line.startswith("id: ")]


async def test_a_long_poll_reads_one_page_and_nothing_after_answering(
    alice: Any, backlog: Any, trace: Trace
) -> None:
    headers = await sync_to_async(http_headers)(alice)
    body = await run_http(
        "/events/poll/", f"stream=order:{backlog.pk}&after=0", headers, trace, until=bool
    )
    answer = json.loads(body)
    page = settings.BACKFILL_PAGE_SIZE
    assert len(answer["events"]) == page
    assert answer["cursor"] == answer["events"][-1]["id"]
    assert not trace.unbounded, trace.unbounded
    assert max(trace.reads) <= page
    assert trace.page_reads == [page], trace.steps  # one page, then nothing more
    assert sum(trace.reads) <= page + 3  # + newest id, horizon, EXISTS


async def test_sse_sends_each_page_before_reading_the_next(
    alice: Any, backlog: Any, trace: Trace
) -> None:
    headers = await sync_to_async(http_headers)(alice)
    body = await run_http(
        "/events/stream/",
        f"stream=order:{backlog.pk}&after=0",
        headers,
        trace,
        until=lambda body: body.count(b"\nevent: order.") >= BACKLOG,
    )
    ids = sse_ids(body)
    assert len(ids) == BACKLOG and ids == sorted(set(ids))
    assert not trace.unbounded, trace.unbounded
    assert max(trace.reads) <= settings.BACKFILL_PAGE_SIZE
    assert len(trace.page_reads) == BACKLOG // settings.BACKFILL_PAGE_SIZE
    trace.assert_each_page_sent_before_the_next_read()


async def test_a_websocket_sends_each_page_before_reading_the_next(
    alice: Any, backlog: Any, trace: Trace
) -> None:
    from channels.testing import WebsocketCommunicator

    headers = await sync_to_async(http_headers)(alice, origin="http://127.0.0.1")
    app = application()

    async def recording_app(scope: Any, receive: Any, send: Any) -> Any:
        async def recording_send(message: dict[str, Any]) -> None:
            if '"type":"event"' in (message.get("text") or ""):
                trace.sent(1)
            await send(message)

        return await app(scope, receive, recording_send)

    socket = WebsocketCommunicator(recording_app, "/ws/live/", headers=headers)
    assert (await socket.connect(timeout=5))[0]
    try:
        await socket.send_json_to(
            {"action": "subscribe", "stream": f"order:{backlog.pk}", "after": 0}
        )
        assert (await socket.receive_json_from(timeout=10))["type"] == "subscribed"
        ids = [(await socket.receive_json_from(timeout=10))["event"]["id"] for _ in range(BACKLOG)]
    finally:
        await socket.disconnect()
    assert ids == sorted(set(ids))
    assert not trace.unbounded, trace.unbounded
    assert max(trace.reads) <= settings.BACKFILL_PAGE_SIZE
    assert len(trace.page_reads) == BACKLOG // settings.BACKFILL_PAGE_SIZE
    trace.assert_each_page_sent_before_the_next_read()


@pytest.mark.parametrize("limit", [100, 500])
async def test_the_rest_feed_reads_one_bounded_page(
    api_as: Any, backlog: Any, limit: int, settings: Any
) -> None:
    settings.BACKFILL_PAGE_SIZE = 200  # the feed's own cap (500) is above it
    client = await sync_to_async(api_as)("alice_token")

    def read() -> tuple[Any, list[dict[str, Any]]]:
        with CaptureQueriesContext(connection) as queries:
            answer = client.get(f"/api/events/?after=0&limit={limit}&order={backlog.pk}")
        return answer, queries.captured_queries

    answer, queries = await sync_to_async(read)()
    assert answer.status_code == 200
    body = answer.json()
    assert len(body["events"]) == min(limit, 200) and body["more"] is True
    bounds = [rows_bound(q["sql"]) for q in queries]
    assert None not in bounds, [q["sql"] for q in queries]
    assert max(bounds) == min(limit, 200)
