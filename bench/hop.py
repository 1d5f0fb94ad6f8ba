"""The subscribe hop, timed in one process: ``python -m bench.hop [--hops N]``.

What a WebSocket subscribe, an SSE open and a long-poll each do on the
database thread — resolve the session cookie, authorize the stream, read the
first backlog page (``notifications.access._authorize_then`` with
``notifications.resume._first_page``) — timed N times on a fresh SQLite
database, for ``order:<id>`` and ``mine``, at the newest id and one event
behind. No server, no network, no thread hop: the figure isolates the hop's
own cost from daphne's (docs/performance.md, rounds 3 and 4).

Prints one line per case, microseconds per hop (the median of five rounds);
the last case empties the process's caches of resolving sessions before each
hop (``notifications.access.forget_resolutions``), as for a session a new
process has not seen.

``--overhead`` times the trip itself instead: a call that does nothing, made
from an event loop by 1 and by 100 callers at once, through channels'
``database_sync_to_async`` and through ``notifications.hops.database_hop``
(CPU µs per call; calls made during a trip share the next one).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from typing import Any

from bench.fresh import migrated_database, placed_orders


def _setup(directory: str) -> tuple[str, int, int]:
    """A migrated database with one customer, one order and a signed-in session:
    (session key, order id, newest event id)."""
    migrated_database(f"{directory}/hop.sqlite3", CHANNEL_LAYER="memory")
    from django.conf import settings

    from notifications.log import latest_event_id
    from orders.actions import transition_order
    from tests.support.asgi import session_cookies

    (order,) = placed_orders(["hop-customer"])
    transition_order(order.pk, "paid")
    key = session_cookies(order.customer)[settings.SESSION_COOKIE_NAME]
    return key, order.pk, latest_event_id()


def _time_hops(hops: int, key: str, stream: str, after: int, cold: bool = False) -> float:
    """Median µs per hop over five rounds of ``hops``; ``cold``: the process's
    caches of resolving sessions emptied before each hop (not timed)."""
    from notifications.access import Principal, _authorize_then, forget_resolutions
    from notifications.resume import _first_page

    def first_page(subscription: Any) -> Any:
        return _first_page(subscription, after)

    rounds = []
    for _ in range(5):
        spent = 0.0
        for _ in range(hops):
            if cold:
                forget_resolutions()
            began = time.perf_counter()
            _authorize_then(Principal(session_key=key, pending=True), stream, None, first_page)
            spent += time.perf_counter() - began
        rounds.append(spent / hops * 1e6)
    return statistics.median(rounds)


def _nothing() -> None:
    return None


async def _time_trips(trip: Any, callers: int, calls: int) -> float:
    """CPU µs per call of ``trip(_nothing)`` with ``callers`` calling at once."""

    async def caller(count: int) -> None:
        for _ in range(count):
            await trip(_nothing)

    began = time.process_time()
    await asyncio.gather(*(caller(calls // callers) for _ in range(callers)))
    return (time.process_time() - began) / calls * 1e6


def _overhead(calls: int) -> None:
    from channels.db import database_sync_to_async

    from notifications.hops import database_hop

    def channels_trip(fn: Any) -> Any:
        return database_sync_to_async(fn)()

    async def run() -> None:
        for callers in (1, 100):
            for label, trip in (
                ("database_sync_to_async", channels_trip),
                ("database_hop", database_hop),
            ):
                micros = await _time_trips(trip, callers, calls)
                print(f"trip {label:22} {callers:3} caller(s): {micros:6.0f} us CPU per call")

    asyncio.run(run())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hops", type=int, default=300, help="hops per round (five rounds)")
    parser.add_argument("--overhead", action="store_true", help="time the trip, not the hop")
    args = parser.parse_args()
    if args.overhead:
        with tempfile.TemporaryDirectory(prefix="booktime-hop-") as directory:
            migrated_database(f"{directory}/hop.sqlite3", CHANNEL_LAYER="memory")
            _overhead(args.hops * 20)
        return
    with tempfile.TemporaryDirectory(prefix="booktime-hop-") as directory:
        key, order_id, newest = _setup(directory)
        for stream in (f"order:{order_id}", "mine"):
            for label, after in (("at the newest id", newest), ("one event behind", newest - 1)):
                micros = _time_hops(args.hops, key, stream, after)
                print(f"hop {stream.split(':')[0]:5} {label:16}: {micros:6.0f} us")
        # A session this process has not resolved before (a deploy's storm).
        micros = _time_hops(args.hops, key, f"order:{order_id}", newest, cold=True)
        print(f"hop order at the newest id, session new to the process: {micros:6.0f} us")


if __name__ == "__main__":
    main()
