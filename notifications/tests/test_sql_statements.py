"""``notifications.sql.run`` goes straight to the driver only where that
changes nothing a user can see: Django's query log and execute wrappers
still see every statement, errors are still Django's, a broken transaction
and a call from an event loop are still refused. And the user row the
access rule reads carries only what it reads (``notifications.access``).
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from django.contrib.auth.backends import ModelBackend
from django.core.exceptions import SynchronousOnlyOperation
from django.db import DatabaseError, connection, transaction
from django.db.backends.utils import CursorWrapper
from django.db.transaction import TransactionManagementError
from django.test.utils import CaptureQueriesContext

from notifications import sql
from notifications.access import USER_FIELDS, user_by_id

pytestmark = pytest.mark.django_db


@pytest.fixture
def wrapper_statements(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Statements that went through Django's cursor wrapper."""
    seen: list[str] = []
    execute = CursorWrapper.execute

    def counted(self: Any, statement: str, params: Any = None) -> Any:
        seen.append(statement)
        return execute(self, statement, params)

    monkeypatch.setattr(CursorWrapper, "execute", counted)
    return seen


def test_a_statement_nobody_watches_goes_straight_to_the_driver(
    wrapper_statements: list[str],
) -> None:
    assert sql.run("SELECT %s + 1", [41]) == [(42,)]
    assert wrapper_statements == []


def test_the_query_log_and_execute_wrappers_still_see_every_statement(
    wrapper_statements: list[str],
) -> None:
    with CaptureQueriesContext(connection) as logged:
        assert sql.run("SELECT %s + 2", [40]) == [(42,)]
    assert [q["sql"] for q in logged.captured_queries] == ["SELECT 40 + 2"]
    wrapped: list[str] = []

    def note(execute: Any, statement: str, params: Any, many: bool, context: Any) -> Any:
        wrapped.append(statement)
        return execute(statement, params, many, context)

    with connection.execute_wrapper(note):
        assert sql.run("SELECT %s + 3", [39]) == [(42,)]
    assert wrapped == ["SELECT %s + 3"]
    assert len(wrapper_statements) == 2


def test_a_failed_statement_raises_djangos_error() -> None:
    """...and marks the connection as Django does, so the next trip's
    ``close_old_connections`` replaces one that died (a PostgreSQL backend
    terminated under the hop is replaced, as through Django's cursor)."""
    connection.errors_occurred = False
    with pytest.raises(DatabaseError) as failed:
        sql.run("SELECT * FROM no_such_table_here WHERE id = %s", [1])
    assert type(failed.value).__module__ == "django.db.utils"
    assert connection.errors_occurred


def test_a_percent_sign_reaches_the_database_as_one() -> None:
    assert sql.run("SELECT %s || '%%'", ["100"]) == [("100%",)]


def test_a_broken_transaction_is_still_refused() -> None:
    with transaction.atomic():
        transaction.set_rollback(True)
        with pytest.raises(TransactionManagementError):
            sql.run("SELECT 1", [])


def test_a_statement_from_an_event_loop_is_still_refused() -> None:
    async def on_the_loop() -> None:
        sql.run("SELECT 1", [])

    with pytest.raises(SynchronousOnlyOperation):
        asyncio.run(on_the_loop())


def test_the_access_rules_user_row_carries_only_what_the_rule_reads(alice: Any) -> None:
    user = user_by_id(ModelBackend(), alice.pk)
    assert user.pk == alice.pk
    deferred = user.get_deferred_fields()
    assert {"last_login", "date_joined", "email", "username"} <= deferred
    assert not deferred & {"is_active", "is_staff", *USER_FIELDS}
    assert user.username == alice.username  # any other field still loads when read
