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

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings

from booktime.errors import ClientError
from notifications.models import LogHorizon
from notifications.streams import Subscription
from orders.models import OrderEvent

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
    last = OrderEvent.objects.order_by("-id").values_list("id", flat=True).first()
    return last if last is not None else LogHorizon.pruned_through_id()


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
    fetches no row. Synchronous; async callers use ``database_sync_to_async``.
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
    qs = filter_events(subscription, queryset).filter(id__gt=after).order_by("id")
    rows = list(qs[:limit])
    # The horizon is read after the rows: ``prune_events`` commits a new
    # horizon before it deletes anything, so rows read across a gap it made
    # are never returned as if complete (notifications.retention).
    horizon = LogHorizon.pruned_through_id()
    if after < horizon:
        return Backlog(cursor=max(newest, horizon), reset=True)
    more = len(rows) == limit and qs.filter(id__gt=rows[-1].id).exists()
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
