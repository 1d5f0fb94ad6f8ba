"""The ``deliver`` worker's hot-path statements, written in SQL rather than built by the ORM.

At a thousand deliveries a second, building ORM queries cost the worker
several times more than running them (the profile is in docs/webhooks.md).
These are plain SQL statements that SQLite and PostgreSQL both run, on the
models' own tables and columns. Values go in through each field's
``get_db_prep_save`` (or the backend's datetime adapter) and come back
through the field's converters, so they read and write exactly what the ORM
would. The rules they serve (what is sendable, what an outcome records) are
``deliveries``'; nothing else should call these.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from django.db import DEFAULT_DB_ALIAS, connection, connections
from django.db.models.constants import OnConflict

from notifications.log import newest_stored_id
from notifications.sql import column as _column
from notifications.sql import convert, prep, when
from notifications.sql import marks as _marks
from notifications.sql import run as _run
from notifications.sql import table as _table
from notifications.webhooks.models import DeliveryState, WebhookDelivery, WebhookEndpoint
from orders.models import OrderEvent

PENDING = DeliveryState.PENDING.value


# -- rows and catch-up ----------------------------------------------------------------


def endpoints_wanting(event_id: int) -> list[tuple[int, list[str]]]:
    """(id, event types) of the enabled endpoints that began before ``event_id``."""
    sql = (
        f"SELECT id, {_column(WebhookEndpoint, 'event_types')} FROM {_table(WebhookEndpoint)} "
        f"WHERE {_column(WebhookEndpoint, 'enabled')} = %s "
        f"AND {_column(WebhookEndpoint, 'start_after')} < %s ORDER BY id"
    )
    return [
        (endpoint_id, convert(WebhookEndpoint, "event_types", types))
        for endpoint_id, types in _run(sql, [True, event_id])
    ]


def insert_rows(rows: Sequence[tuple[int, int, str]]) -> None:
    """Pending delivery rows for (endpoint id, event id, event type); one that
    exists already is left as it is (the on-commit hook and catch-up may race).

    Both give their rows in (event id, endpoint id) order, so that two of them
    inserting the same rows at once never wait on each other in a cycle.
    """
    if not rows:
        return
    db = connections[DEFAULT_DB_ALIAS]
    fields = [f for f in WebhookDelivery._meta.concrete_fields if not f.primary_key]
    # Every other column starts with its default, the same for every row.
    blank = WebhookDelivery(endpoint_id=0, event_id=0, event_type="")
    template = [f.get_db_prep_save(f.pre_save(blank, True), db) for f in fields]
    names = [f.attname for f in fields]
    slots = [names.index(name) for name in ("endpoint_id", "event_id", "event_type")]
    params = []
    for row in rows:
        values = list(template)
        for slot, value in zip(slots, row, strict=True):
            values[slot] = value
        params.append(values)
    columns = ", ".join(db.ops.quote_name(f.column) for f in fields)
    sql = (
        f"{db.ops.insert_statement(on_conflict=OnConflict.IGNORE)} {_table(WebhookDelivery)} "
        f"({columns}) VALUES ({_marks(fields)}) "
        f"{db.ops.on_conflict_suffix_sql(fields, OnConflict.IGNORE, None, None)}"
    )
    with db.cursor() as cursor:
        cursor.executemany(sql, params)


def newest_event_id() -> int:
    return newest_stored_id() or 0


def nth_event_id_after(start: int, latest: int, count: int) -> int:
    """The id of the ``count``-th event after ``start`` (at most ``latest``): a
    catch-up batch is so many events, however sparse their ids (gaps from
    rolled-back inserts, pruning, a sequence that jumped)."""
    rows = _run(
        f"SELECT id FROM {_table(OrderEvent)} WHERE id > %s AND id <= %s ORDER BY id "
        "LIMIT 1 OFFSET %s",
        [start, latest, count - 1],
    )
    return rows[0][0] if rows else latest


def endpoints_behind(latest: int) -> list[tuple[int, int, list[str]]]:
    """(id, the id its rows are checked through, event types) of each enabled
    endpoint whose rows are not checked through ``latest``."""
    rows_through = _column(WebhookEndpoint, "rows_through")
    sql = (
        f"SELECT id, {rows_through}, {_column(WebhookEndpoint, 'start_after')}, "
        f"{_column(WebhookEndpoint, 'event_types')} FROM {_table(WebhookEndpoint)} "
        f"WHERE {_column(WebhookEndpoint, 'enabled')} = %s AND {rows_through} < %s"
    )
    return [
        (endpoint_id, max(through, after), convert(WebhookEndpoint, "event_types", types))
        for endpoint_id, through, after, types in _run(sql, [True, latest])
    ]


def missing_rows(endpoint_ids: Sequence[int], after: int, through: int) -> list[tuple[Any, ...]]:
    """(endpoint id, event id, event type) for events in (after, through] without a row."""
    delivery = _table(WebhookDelivery)
    sql = (
        f"SELECT ep.id, e.id, e.type FROM {_table(WebhookEndpoint)} ep, {_table(OrderEvent)} e "
        f"WHERE ep.id IN ({_marks(endpoint_ids)}) AND e.id > %s AND e.id <= %s AND NOT EXISTS ("
        f"SELECT 1 FROM {delivery} d WHERE d.endpoint_id = ep.id AND d.event_id = e.id) "
        f"ORDER BY e.id, ep.id"
    )
    return _run(sql, [*endpoint_ids, after, through])


def advance_rows_through(endpoint_ids: Sequence[int], through: int) -> None:
    """Set ``rows_through`` on those of ``endpoint_ids`` still below ``through``.

    Where rows can be locked, they are locked in id order first: workers
    recording batches update endpoints in that order too, so two workers
    never wait on each other in a cycle (a deadlock).
    """
    table = _table(WebhookEndpoint)
    rows_through = _column(WebhookEndpoint, "rows_through")
    chosen = f"id IN ({_marks(endpoint_ids)}) AND {rows_through} < %s"
    if connection.features.has_select_for_update:
        chosen = f"id IN (SELECT id FROM {table} WHERE {chosen} ORDER BY id {_row_lock()})"
    _run(
        f"UPDATE {table} SET {rows_through} = %s WHERE {chosen}", [through, *endpoint_ids, through]
    )


def _row_lock() -> str:
    """The row lock for an update that leaves keys alone (a delivery row being
    inserted for the endpoint, which locks the key, need not wait for it)."""
    if connection.features.has_select_for_no_key_update:
        return "FOR NO KEY UPDATE"
    return "FOR UPDATE"


# -- claiming -------------------------------------------------------------------------


def due_endpoint_ids(now: datetime, limit: int, lock: bool) -> list[int]:
    """Enabled, not leased, not backing off, with a sendable pending row; least
    recently served first. ``lock``: ``FOR UPDATE SKIP LOCKED`` where supported."""
    lease_until = _column(WebhookEndpoint, "lease_until")
    retry_at = _column(WebhookEndpoint, "retry_at")
    sql = (
        f"SELECT ep.id FROM {_table(WebhookEndpoint)} ep "
        f"WHERE ep.{_column(WebhookEndpoint, 'enabled')} = %s "
        f"AND (ep.{lease_until} IS NULL OR ep.{lease_until} < %s) "
        f"AND (ep.{retry_at} IS NULL OR ep.{retry_at} <= %s) "
        f"AND EXISTS (SELECT 1 FROM {_table(WebhookDelivery)} d WHERE d.endpoint_id = ep.id "
        f"AND d.state = '{PENDING}' "
        f"AND d.event_id <= ep.{_column(WebhookEndpoint, 'rows_through')}) "
        f"ORDER BY CASE WHEN ep.{lease_until} IS NULL THEN 0 ELSE 1 END, ep.{lease_until}, ep.id "
        f"LIMIT %s"
    )
    if lock and connection.features.has_select_for_update_skip_locked:
        sql += f" {_row_lock()} SKIP LOCKED"
    return [row[0] for row in _run(sql, [True, when(now), when(now), limit])]


def set_lease(endpoint_ids: Sequence[int], until: datetime) -> None:
    _run(
        f"UPDATE {_table(WebhookEndpoint)} SET {_column(WebhookEndpoint, 'lease_until')} = %s "
        f"WHERE id IN ({_marks(endpoint_ids)})",
        [when(until), *endpoint_ids],
    )


# -- sending and recording ----------------------------------------------------------------


def sendable_rows(endpoint_id: int, limit: int) -> list[tuple[Any, ...]]:
    """The endpoint's oldest pending rows up to ``rows_through``, with their events:
    (delivery id, event id, attempts, first attempt at, history, and the event's
    type, created at and data, all None if it was pruned)."""
    delivery = WebhookDelivery
    sql = (
        f"SELECT d.id, d.event_id, d.{_column(delivery, 'attempts')}, "
        f"d.{_column(delivery, 'first_attempt_at')}, d.{_column(delivery, 'history')}, "
        f"e.type, e.{_column(OrderEvent, 'created_at')}, e.{_column(OrderEvent, 'data')} "
        f"FROM {_table(delivery)} d "
        f"JOIN {_table(WebhookEndpoint)} ep ON ep.id = d.endpoint_id "
        f"LEFT JOIN {_table(OrderEvent)} e ON e.id = d.event_id "
        f"WHERE d.endpoint_id = %s AND ep.{_column(WebhookEndpoint, 'enabled')} = %s "
        f"AND d.state = '{PENDING}' "
        f"AND d.event_id <= ep.{_column(WebhookEndpoint, 'rows_through')} "
        f"ORDER BY d.event_id LIMIT %s"
    )
    return [
        (
            delivery_id,
            event_id,
            attempts,
            convert(delivery, "first_attempt_at", first_attempt_at),
            convert(delivery, "history", history),
            event_type,
            convert(OrderEvent, "created_at", created_at) if event_type is not None else None,
            convert(OrderEvent, "data", data) if event_type is not None else None,
        )
        for (
            delivery_id,
            event_id,
            attempts,
            first_attempt_at,
            history,
            event_type,
            created_at,
            data,
        ) in _run(sql, [endpoint_id, True, limit])
    ]


def update_rows(fields: Sequence[str], rows: Sequence[tuple[int, dict[str, Any]]]) -> None:
    """Write ``fields`` of each (delivery id, values) row: one statement, run for each row."""
    if not rows:
        return
    db = connections[DEFAULT_DB_ALIAS]
    model_fields = [WebhookDelivery._meta.get_field(name) for name in fields]
    assignments = ", ".join(f"{db.ops.quote_name(f.column)} = %s" for f in model_fields)
    params = [
        [*(f.get_db_prep_save(values[f.name], db) for f in model_fields), delivery_id]
        for delivery_id, values in rows
    ]
    with db.cursor() as cursor:
        cursor.executemany(
            f"UPDATE {_table(WebhookDelivery)} SET {assignments} WHERE id = %s", params
        )


def update_endpoint(endpoint_id: int, values: dict[str, Any]) -> None:
    """Set ``values`` (field name -> value) on one endpoint."""
    names = list(values)
    assignments = ", ".join(f"{_column(WebhookEndpoint, name)} = %s" for name in names)
    _run(
        f"UPDATE {_table(WebhookEndpoint)} SET {assignments} WHERE id = %s",
        [*(prep(WebhookEndpoint, name, values[name]) for name in names), endpoint_id],
    )
