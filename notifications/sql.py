"""Plain SQL on the models' own tables, for the paths where building an ORM
query costs more than running it.

Profiled twice: the ``deliver`` worker at a thousand deliveries a second
(docs/webhooks.md) and the subscribe hop of every WebSocket subscribe, SSE
open and long-poll (docs/performance.md), where Django built each of its
five or six queries in about 0.25 ms and SQLite ran it in a tenth of that.
Statements stay on what SQLite and PostgreSQL both run. Values go in through
each field's ``get_db_prep_save`` (``prep``) or the backend's datetime adapter
(``when``) and come back through the field's converters (``convert``), so they
read and write exactly what the ORM would. Each statement lives beside the
rule it serves (``notifications.log``, ``.access``, ``.streams``,
``.webhooks.queries``); this module only has the shared pieces.

Each function looks the thread's connection up once (``db``): every
attribute read through Django's ``connection`` proxy is a lookup in an
asgiref ``Local``, and the subscribe hop made 27 of them (profiled: 16 % of
the hop, docs/performance.md, round 4). ``vendor`` needs no lookup at all.
Quoted names and row loaders are computed once per model and backend.

``run`` hands a statement straight to the driver's cursor when nothing
watches Django's cursors (no query logging, as under ``DEBUG`` or
``assertNumQueries``; no ``connection.execute_wrapper``): Django's cursor
wrapper, its checks and SQLite's per-statement rewrite of ``%s`` into ``?``
were two thirds of a statement's cost (profiled: a third of the subscribe
hop's instructions, docs/performance.md, round 12). Errors still come out
as Django's (``wrap_database_errors``), a broken transaction is still
refused, and the driver cursor is the one the backend would make. Tools
that patch Django's ``CursorWrapper`` class itself do not see these
statements; Django's own query log and ``execute_wrapper`` do.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from django.db import DEFAULT_DB_ALIAS, connections
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.backends.sqlite3.base import FORMAT_QMARK_REGEX
from django.db.models import Model
from django.db.utils import load_backend


def db() -> BaseDatabaseWrapper:
    """This thread's connection to the default database."""
    return connections[DEFAULT_DB_ALIAS]


def vendor() -> str:
    """The default database's vendor, from its settings (no connection lookup)."""
    return _vendor(connections.settings[DEFAULT_DB_ALIAS]["ENGINE"])


@functools.cache
def _vendor(engine: str) -> str:
    return load_backend(engine).DatabaseWrapper.vendor


def table(model: type[Model]) -> str:
    return _table(model, vendor())


def column(model: type[Model], name: str) -> str:
    return _column(model, name, vendor())


@functools.cache
def _table(model: type[Model], vendor: str) -> str:
    return db().ops.quote_name(model._meta.db_table)


@functools.cache
def _column(model: type[Model], name: str, vendor: str) -> str:
    return db().ops.quote_name(model._meta.get_field(name).column)


@functools.cache
def _converter(model: type[Model], name: str, vendor: str) -> Callable[[Any], Any]:
    """What the ORM applies to a column's raw value when it reads ``model.name``."""
    connection = db()
    field = model._meta.get_field(name)
    col = field.get_col(model._meta.db_table)
    steps = [*connection.ops.get_db_converters(col), *col.get_db_converters(connection)]
    if not steps:
        return _same

    def convert(value: Any) -> Any:
        for step in steps:
            value = step(value, col, connection)
        return value

    return convert


def _same(value: Any) -> Any:
    return value


def convert(model: type[Model], name: str, value: Any) -> Any:
    """A raw column value as the ORM would read it into ``model.name``."""
    return _converter(model, name, vendor())(value)


def prep(model: type[Model], name: str, value: Any) -> Any:
    """``value`` as the ORM would write it to ``model.name``."""
    return model._meta.get_field(name).get_db_prep_save(value, db())


def when(value: datetime) -> Any:
    """A datetime as a query parameter compared with a DateTimeField column."""
    return db().ops.adapt_datetimefield_value(value)


def run(sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
    """Rows of one statement (none for a statement that returns no rows)."""
    connection = db()
    cursor = _driver_cursor(connection)
    if cursor is None:
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            return cursor.fetchall() if cursor.description else []
    with connection.wrap_database_errors:
        try:
            cursor.execute(_in_driver_style(sql, connection.vendor), params)
            return cursor.fetchall() if cursor.description else []
        finally:
            cursor.close()


def _driver_cursor(connection: BaseDatabaseWrapper) -> Any:
    """The driver's own cursor, as the backend makes it, checked as Django
    checks before a statement; None where Django's cursor must run it: a
    query log or an execute wrapper watches, there is no open connection yet
    (Django opens it), or the call comes from an event loop (Django refuses
    it there)."""
    if (
        connection.queries_logged
        or connection.execute_wrappers
        or asyncio._get_running_loop() is not None
    ):
        return None
    connection.close_if_health_check_failed()
    if connection.connection is None:
        return None
    connection.validate_thread_sharing()
    connection.validate_no_broken_transaction()
    with connection.wrap_database_errors:
        if connection.vendor == "sqlite":
            # Django's SQLite cursor only rewrites each statement's ``%s``.
            return connection.connection.cursor()
        return connection.create_cursor()


@functools.lru_cache(maxsize=512)
def _in_driver_style(statement: str, vendor: str) -> str:
    """``statement`` with its placeholders as the driver takes them: SQLite's
    ``?``, rewritten once per statement as Django's SQLite cursor would."""
    if vendor != "sqlite":
        return statement
    return FORMAT_QMARK_REGEX.sub("?", statement).replace("%%", "%")


def marks(values: Sequence[Any]) -> str:
    return ", ".join(["%s"] * len(values))


def load(model: type[Model], names: Sequence[str], row: Sequence[Any]) -> Model:
    """An instance from the raw values of the fields ``names`` (the rest deferred),
    as a queryset would make it."""
    return _loader(model, tuple(names), vendor())(row)


@functools.cache
def _loader(
    model: type[Model], names: tuple[str, ...], vendor: str
) -> Callable[[Sequence[Any]], Model]:
    converters = [_converter(model, name, vendor) for name in names]
    # ``from_db`` takes the loaded fields in the model's own field order.
    loaded = [f.attname for f in model._meta.concrete_fields if f.attname in names]
    positions = [names.index(name) for name in loaded]
    alias = DEFAULT_DB_ALIAS

    def load(row: Sequence[Any]) -> Model:
        values = [convert(value) for convert, value in zip(converters, row, strict=True)]
        return model.from_db(alias, loaded, [values[i] for i in positions])

    return load
