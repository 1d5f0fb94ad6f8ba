"""The ordering and resume rules. Every transport and the REST feed defer to it.

- A cursor is the id of the last event a reader has seen (``after``).
- ``read_backlog`` returns stored events after a cursor, in id order, filtered
  to what a ``Subscription`` may see. Event ids follow commit order (see
  ``orders.models.lock_event_log``), so paging by cursor never skips one.
- A cursor the log can no longer serve (pruned by retention, or from the
  future) is answered with ``reset=True`` instead of a silent skip; the client
  reloads current state and follows on from the returned cursor.
- A subscription joins its group *first*, then reads the backlog, then sends
  live events, dropping any whose id is not above the last one sent
  (``LiveCursor``).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings

from booktime.errors import ClientError
from notifications import sql
from notifications.models import LogHorizon
from notifications.streams import Subscription
from orders.models import Order, OrderEvent

logger = logging.getLogger(__name__)

MAX_CURSOR = 2**63 - 1


class CursorError(ClientError):
    """A cursor that is not a non-negative integer: code ``bad_cursor`` (HTTP 400).

    ``field`` names the input (``after``, ``Last-Event-ID``).
    """

    def __init__(self, param: str, message: str) -> None:
        super().__init__("bad_cursor", message, field=param)


def parse_cursor(raw: Any, param: str = "after", *, allow_text: bool = True) -> int | None:
    """``None`` for absent/empty, else a non-negative int; raises ``CursorError``.

    Query strings and headers carry text (``allow_text``); a JSON frame must
    carry a JSON integer.
    """
    if raw is None or (allow_text and raw == ""):
        return None
    if isinstance(raw, bool):
        raise CursorError(param, f"{param} must be a non-negative integer")
    if isinstance(raw, int):
        value = raw
    elif allow_text and isinstance(raw, str) and raw.isascii() and raw.isdigit() and len(raw) <= 19:
        value = int(raw)
    else:
        raise CursorError(param, f"{param} must be a non-negative integer")
    if value < 0 or value > MAX_CURSOR:
        raise CursorError(param, f"{param} must be a non-negative integer")
    return value


@dataclass
class Backlog:
    """Stored events after a cursor, one page of them."""

    events: list[dict[str, Any]] = field(default_factory=list)  # envelopes, id order
    cursor: int = 0  # the id to pass as ``after`` next time
    reset: bool = False  # the cursor could not be served; reload state
    more: bool = False  # another page is waiting


def latest_event_id() -> int:
    """The newest committed event id; for an empty log the pruned horizon (0
    if never pruned), so a cursor handed out after pruning everything is
    still one the log can serve."""
    last = newest_stored_id()
    return last if last is not None else LogHorizon.pruned_through_id()


def newest_stored_id() -> int | None:
    """The highest id in the log table (None when it is empty). In SQL: read by
    every subscribe, open and poll, and the webhook worker (notifications.sql)."""
    return sql.run(_newest_select(sql.vendor()), [])[0][0]


@functools.cache
def _newest_select(vendor: str) -> str:
    return f"SELECT MAX({sql.column(OrderEvent, 'id')}) FROM {sql.table(OrderEvent)}"


def filter_events(subscription: Subscription | None, queryset: Any = None) -> Any:
    """Restrict an OrderEvent queryset to what ``subscription`` may see."""
    qs = OrderEvent.objects.all() if queryset is None else queryset
    if subscription is None:
        return qs
    if subscription.order_id is not None:
        qs = qs.filter(order_id=subscription.order_id)
    if subscription.customer_id is not None:
        qs = qs.filter(order__customer_id=subscription.customer_id)
    return qs


ENVELOPE_FIELDS = ("id", "type", "created_at", "data")  # what ``OrderEvent.envelope`` reads


def _events_sql(subscription: Subscription | None, after: int) -> tuple[str, list[Any]]:
    """FROM/WHERE of the events after ``after`` that ``subscription`` may see, in SQL."""
    params: list[Any] = [after]
    by_order = subscription is not None and subscription.order_id is not None
    by_customer = subscription is not None and subscription.customer_id is not None
    if by_order:
        params.append(subscription.order_id)
    if by_customer:
        params.append(subscription.customer_id)
    return _events_where(sql.vendor(), by_order, by_customer), params


@functools.cache
def _events_where(vendor: str, by_order: bool, by_customer: bool) -> str:
    events, orders = sql.table(OrderEvent), sql.table(Order)
    order_column = f"{events}.{sql.column(OrderEvent, 'order')}"
    clauses, join = [f"{events}.{sql.column(OrderEvent, 'id')} > %s"], ""
    if by_order:
        clauses.append(f"{order_column} = %s")
    if by_customer:
        join = f" INNER JOIN {orders} ON {orders}.{sql.column(Order, 'id')} = {order_column}"
        clauses.append(f"{orders}.{sql.column(Order, 'customer')} = %s")
    return f"FROM {events}{join} WHERE {' AND '.join(clauses)}"


def event_page(
    subscription: Subscription | None, queryset: Any, after: int, limit: int
) -> list[OrderEvent]:
    """Up to ``limit`` events after ``after`` in id order (with only the
    envelope's fields loaded). The stream transports' reads are one SQL
    statement (notifications.sql); the REST feed's extra filters
    (``queryset``) go through the ORM."""
    if queryset is not None:
        return list(
            filter_events(subscription, queryset).filter(id__gt=after).order_by("id")[:limit]
        )
    where, params = _events_sql(subscription, after)
    columns, order_by = _envelope_columns(sql.vendor())
    rows = sql.run(f"SELECT {columns} {where} ORDER BY {order_by} LIMIT {int(limit)}", params)
    return [sql.load(OrderEvent, ENVELOPE_FIELDS, row) for row in rows]


@functools.cache
def _envelope_columns(vendor: str) -> tuple[str, str]:
    """The envelope's columns, and the column a page is ordered by."""
    table = sql.table(OrderEvent)
    columns = ", ".join(f"{table}.{sql.column(OrderEvent, name)}" for name in ENVELOPE_FIELDS)
    return columns, f"{table}.{sql.column(OrderEvent, 'id')}"


def events_after(subscription: Subscription | None, queryset: Any, after: int) -> bool:
    """Whether any event after ``after`` is one ``subscription`` may see (fetches no row)."""
    if queryset is not None:
        return filter_events(subscription, queryset).filter(id__gt=after).exists()
    where, params = _events_sql(subscription, after)
    return bool(sql.run(f"SELECT 1 {where} LIMIT 1", params))


def read_backlog(
    subscription: Subscription | None,
    after: int | None,
    limit: int | None = None,
    *,
    queryset: Any = None,
) -> Backlog:
    """Events after ``after`` that ``subscription`` may see (None: all events).

    ``after=None`` means "from now": no stored events, cursor = newest id.
    ``queryset`` narrows further (REST ``order=``/``type=`` filters).
    One bounded read: at most ``limit`` rows, never more than
    ``BACKFILL_PAGE_SIZE``; whether more wait is asked with ``EXISTS``, which
    fetches no row. Synchronous; async callers use ``notifications.hops.database_hop``.
    """
    page_size = settings.BACKFILL_PAGE_SIZE
    limit = min(limit or page_size, page_size)
    logger.debug("reading the event log after %s (%s)", after, subscription or "all events")
    newest = latest_event_id()
    if after is None:
        return Backlog(cursor=newest)
    if after > newest:
        return Backlog(cursor=newest, reset=True)
    if after == newest:
        # Nothing stored after it, and the horizon never passes the newest id
        # (notifications.retention prunes through existing ids): two queries
        # fewer for the commonest resume (a client that missed nothing).
        # Whatever commits from here on reaches a subscriber live: it joined
        # its group before this read (notifications.resume).
        return Backlog(cursor=newest)
    rows = event_page(subscription, queryset, after, limit)
    # The horizon is read after the rows: ``prune_events`` commits a new
    # horizon before it deletes anything, so rows read across a gap it made
    # are never returned as if complete (notifications.retention).
    horizon = LogHorizon.pruned_through_id()
    if after < horizon:
        return Backlog(cursor=max(newest, horizon), reset=True)
    more = len(rows) == limit and events_after(subscription, queryset, rows[-1].id)
    events = [row.envelope() for row in rows]
    # With no more rows the reader has seen everything up to ``newest`` as far
    # as its filter goes, so the cursor may jump there; it stays on the last
    # row returned when a page was cut short. Rows committed between reading
    # ``newest`` and the rows can come back with higher ids (PostgreSQL reads
    # each statement afresh): the cursor never falls behind what was returned.
    last_returned = events[-1]["id"] if events else 0
    cursor = last_returned if more else max(newest, after, last_returned)
    return Backlog(events=events, cursor=cursor, more=more)


class LiveCursor:
    """Per-subscription dedupe: accept an event only if newer than the last sent."""

    def __init__(self, last_sent: int = 0) -> None:
        self.last_sent = last_sent

    def accept(self, envelope: dict[str, Any]) -> bool:
        event_id = envelope.get("id")
        if not isinstance(event_id, int) or event_id <= self.last_sent:
            return False
        self.last_sent = event_id
        return True

    def accept_many(self, envelopes: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
        return [env for env in envelopes if self.accept(env)]

    def advance(self, cursor: int) -> None:
        """Move past ids the reader no longer needs (after a backlog or reset)."""
        self.last_sent = max(self.last_sent, cursor)
