"""Trips to the database thread from the streaming consumers, shared under load.

Every subscribe, SSE open, long-poll, access re-check and catch-up reads the
database on the thread Django's sync code runs in. channels'
``database_sync_to_async`` costs ~190 µs of CPU per trip before any SQL runs
(asgiref's context copy and restore, an executor future, two thread wake-ups,
``close_old_connections`` twice; ``python -m bench.hop --overhead``), about
as much as the trip's own queries. At the edges (a reconnect storm, a burst
of re-polls, every consumer of a process catching up after an outage) many
trips wait for that one thread at once.

``database_hop(fn, *args)`` runs ``fn(*args)`` there and returns its result
or raises its exception, like ``database_sync_to_async(fn)(*args)``. When
the thread is idle the call goes at once, in a trip of its own. Calls made
while a trip is under way wait and then go together, up to ``BATCH_SIZE``,
in one trip: each runs in its caller's context (``contextvars``), in the
order called, and gets its own result or exception. Nothing is skipped: a
caller that went away still has its call run (a failed-token count must
stand). ``/metrics`` counts trips and the calls they carried
(``booktime_database_trips``, ``booktime_database_trip_calls``).

A trip goes straight to the executor asgiref would pick, so it runs on the
same thread, where Django's connections live. It leaves out asgiref's
per-call wrapper and closes stale connections once, before the calls run;
channels closes them before and after (``_start_trip``).

Calls made under an ``async_to_sync`` parent or a ``ThreadSensitiveContext``
(tests, Django views) keep asgiref's own routing: each is a trip of its own.
"""

from __future__ import annotations

import asyncio
import contextvars
import os
import weakref
from collections.abc import Callable
from concurrent.futures import Executor
from typing import Any, TypeVar

from asgiref.sync import AsyncToSync, SyncToAsync
from channels.db import database_sync_to_async
from django.db import close_old_connections

from notifications import metrics

T = TypeVar("T")

# Calls per shared trip: enough to spread a trip's fixed cost thin, few enough
# that the first call's answer does not wait long for the last one's queries.
BATCH_SIZE = 32

# (caller's context, function, its arguments, the caller's future)
_Call = tuple[contextvars.Context, Callable[..., Any], tuple[Any, ...], asyncio.Future]


class _Line:
    """One event loop's calls waiting for the database thread."""

    def __init__(self) -> None:
        self.busy = False
        self.waiting: list[_Call] = []
        self.drainer: asyncio.Task | None = None  # a strong reference


_lines: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Line] = weakref.WeakKeyDictionary()


def _own_routing() -> bool:
    """True where asgiref would send this call somewhere other than its one
    database thread: keep its routing (see the module docstring)."""
    return (
        getattr(AsyncToSync.executors, "current", None) is not None
        or SyncToAsync.thread_sensitive_context.get(None) is not None
    )


async def database_hop(fn: Callable[..., T], *args: Any) -> T:
    """``fn(*args)`` on the database thread; shares a trip with calls made
    meanwhile (see the module docstring)."""
    if _own_routing():
        return await database_sync_to_async(fn)(*args)
    loop = asyncio.get_running_loop()
    line = _lines.get(loop)
    if line is None:
        line = _lines[loop] = _Line()
    if line.busy:
        future: asyncio.Future = loop.create_future()
        line.waiting.append((contextvars.copy_context(), fn, args, future))
        return await future
    line.busy = True
    try:
        metrics.database_trip(1)
        return await loop.run_in_executor(
            _executor(loop), _run_one, loop, contextvars.copy_context(), fn, args
        )
    finally:
        if line.waiting:
            line.drainer = loop.create_task(_drain(line))
        else:
            line.busy = False


async def _drain(line: _Line) -> None:
    """Run the waiting calls, ``BATCH_SIZE`` per trip, until none wait."""
    loop = asyncio.get_running_loop()
    try:
        while line.waiting:
            batch, line.waiting = line.waiting[:BATCH_SIZE], line.waiting[BATCH_SIZE:]
            metrics.database_trip(len(batch))
            try:
                outcomes = await loop.run_in_executor(_executor(loop), _run_batch, loop, batch)
            except BaseException as exc:  # the trip itself failed: every call hears it
                for *_, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                if not isinstance(exc, Exception):
                    raise
                continue
            for (*_, future), (ok, value) in zip(batch, outcomes, strict=True):
                if future.done():  # its caller went away
                    continue
                if ok:
                    future.set_result(value)
                else:
                    future.set_exception(value)
    finally:
        # Only a cancelled drainer (the loop closing) leaves calls waiting.
        for *_, future in line.waiting:
            future.cancel()
        line.waiting = []
        line.busy = False
        line.drainer = None


def _executor(loop: asyncio.AbstractEventLoop) -> Executor:
    """The thread asgiref runs thread-sensitive calls from ``loop`` in (outside
    an ``async_to_sync`` parent or a ``ThreadSensitiveContext``, which keep
    asgiref's own routing): the one Django's connections live in."""
    return AsyncToSync.loop_thread_executors.get(loop) or SyncToAsync.single_thread_executor


def _start_trip(loop: asyncio.AbstractEventLoop) -> None:
    """On the database thread, what channels' hop does first: tell asgiref the
    caller's loop, close connections past ``CONN_MAX_AGE`` or broken.
    channels also closes them once more after each hop; the next trip's
    check does the same work before anything uses the connection."""
    SyncToAsync.threadlocal.main_event_loop = loop
    SyncToAsync.threadlocal.main_event_loop_pid = os.getpid()
    close_old_connections()


def _run_one(
    loop: asyncio.AbstractEventLoop,
    context: contextvars.Context,
    fn: Callable[..., T],
    args: tuple[Any, ...],
) -> T:
    _start_trip(loop)
    return context.run(fn, *args)


def _run_batch(loop: asyncio.AbstractEventLoop, batch: list[_Call]) -> list[tuple[bool, Any]]:
    """On the database thread: each call in its caller's context, in order."""
    _start_trip(loop)
    outcomes: list[tuple[bool, Any]] = []
    for context, fn, args, _ in batch:
        try:
            outcomes.append((True, context.run(fn, *args)))
        except Exception as exc:  # noqa: BLE001 - handed to its caller
            outcomes.append((False, exc))
    return outcomes
