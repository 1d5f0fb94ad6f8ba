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
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from django.db import connection
from django.db.models import Model


def table(model: type[Model]) -> str:
    return connection.ops.quote_name(model._meta.db_table)


def column(model: type[Model], name: str) -> str:
    return connection.ops.quote_name(model._meta.get_field(name).column)


@functools.cache
def _converter(model: type[Model], name: str, vendor: str) -> Callable[[Any], Any]:
    """What the ORM applies to a column's raw value when it reads ``model.name``."""
    field = model._meta.get_field(name)
    col = field.get_col(model._meta.db_table)
    steps = [*connection.ops.get_db_converters(col), *col.get_db_converters(connection)]

    def convert(value: Any) -> Any:
        for step in steps:
            value = step(value, col, connection)
        return value

    return convert


def convert(model: type[Model], name: str, value: Any) -> Any:
    """A raw column value as the ORM would read it into ``model.name``."""
    return _converter(model, name, connection.vendor)(value)


def prep(model: type[Model], name: str, value: Any) -> Any:
    """``value`` as the ORM would write it to ``model.name``."""
    return model._meta.get_field(name).get_db_prep_save(value, connection)


def when(value: datetime) -> Any:
    """A datetime as a query parameter compared with a DateTimeField column."""
    return connection.ops.adapt_datetimefield_value(value)


def run(sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
    """Rows of one statement (none for a statement that returns no rows)."""
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall() if cursor.description else []


def marks(values: Sequence[Any]) -> str:
    return ", ".join(["%s"] * len(values))


def load(model: type[Model], names: Sequence[str], row: Sequence[Any]) -> Model:
    """An instance from the raw values of the fields ``names`` (the rest deferred),
    as a queryset would make it."""
    values = {name: convert(model, name, value) for name, value in zip(names, row, strict=True)}
    # ``from_db`` takes the loaded fields in the model's own field order.
    loaded = [f.attname for f in model._meta.concrete_fields if f.attname in values]
    return model.from_db(connection.alias, loaded, [values[name] for name in loaded])
