"""Calls made while a database trip is under way share the next one
(``notifications.hops``), each with its own context, result or exception."""

from __future__ import annotations

import asyncio
import contextvars
import threading
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async
from prometheus_client import REGISTRY

from notifications import hops
from notifications.hops import database_hop

TIMEOUT = 5
caller_name: contextvars.ContextVar[str] = contextvars.ContextVar("caller_name", default="")


@pytest.fixture
def shared_trips(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Sizes of the shared trips made (a call's trip of its own is not one)."""
    sizes: list[int] = []
    run_batch = hops._run_batch

    def counting(loop: Any, batch: list[Any]) -> list[tuple[bool, Any]]:
        sizes.append(len(batch))
        return run_batch(loop, batch)

    monkeypatch.setattr(hops, "_run_batch", counting)
    return sizes


def answer(value: str) -> tuple[str, str, int]:
    if value == "boom":
        raise ValueError("boom")
    return value, caller_name.get(), threading.get_ident()


def counted(name: str) -> float:
    return REGISTRY.get_sample_value(name) or 0.0


@pytest.mark.asyncio
async def test_calls_made_during_a_trip_share_the_next_ones(
    shared_trips: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(hops, "BATCH_SIZE", 2)
    started, release = threading.Event(), threading.Event()

    def first() -> int:
        started.set()
        assert release.wait(TIMEOUT)
        return threading.get_ident()

    trips_before = counted("booktime_database_trips_total")
    calls_before = counted("booktime_database_trip_calls_total")
    holding = asyncio.ensure_future(database_hop(first))
    assert await asyncio.to_thread(started.wait, TIMEOUT)

    async def call(value: str) -> tuple[str, str, int]:
        caller_name.set(f"caller {value}")
        return await database_hop(answer, value)

    waiting = [asyncio.ensure_future(call(value)) for value in ("a", "boom", "c")]
    await asyncio.sleep(0)  # one turn of the loop: each waiting call queues itself
    assert len(hops._lines[asyncio.get_running_loop()].waiting) == 3
    release.set()
    database_thread = await asyncio.wait_for(holding, TIMEOUT)
    results = await asyncio.wait_for(asyncio.gather(*waiting, return_exceptions=True), TIMEOUT)

    assert results[0] == ("a", "caller a", database_thread)
    assert isinstance(results[1], ValueError) and str(results[1]) == "boom"
    assert results[2] == ("c", "caller c", database_thread)
    assert shared_trips == [2, 1]  # three calls, at most two per trip
    assert counted("booktime_database_trips_total") - trips_before == 3
    assert counted("booktime_database_trip_calls_total") - calls_before == 4
    # The thread channels' own hops run on: the same connection, the same rules.
    assert await database_sync_to_async(threading.get_ident)() == database_thread


@pytest.mark.asyncio
async def test_an_idle_line_runs_a_call_at_once_in_a_trip_of_its_own(
    shared_trips: list[int],
) -> None:
    caller_name.set("alone")
    value, name, _ = await database_hop(answer, "x")
    assert (value, name) == ("x", "alone")
    assert shared_trips == []


def test_calls_under_an_async_to_sync_parent_keep_asgirefs_routing(
    shared_trips: list[int],
) -> None:
    async def many() -> list[int]:
        return await asyncio.gather(*(database_hop(threading.get_ident) for _ in range(5)))

    # asgiref runs these in the thread waiting in async_to_sync (this one).
    assert set(async_to_sync(many)()) == {threading.get_ident()}
    assert shared_trips == []
