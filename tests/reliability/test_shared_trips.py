"""Subscribes that reach a server at once share its database trips, and each
still gets its own verdict and backlog (``notifications.hops``).

A real daphne holds forty signed-in WebSockets; it is stopped (SIGSTOP)
while every socket sends its subscribe, so that all forty arrive together
when it runs again, as in a reconnect storm. Thirty ask for their user's
order from the start, ten for another user's. Each of the thirty gets
``subscribed`` and the order's events; each of the ten gets ``forbidden``.
``/metrics`` shows the forty calls made fewer trips.
"""

from __future__ import annotations

import asyncio
import os
import signal
from typing import Any

import httpx
import pytest
from asgiref.sync import sync_to_async

from tests.support.live import ws_connect, ws_recv_until, ws_send

pytestmark = [pytest.mark.asyncio, pytest.mark.live, pytest.mark.django_db(transaction=True)]

MINE, OTHERS = 30, 10


def trip_counts(server: Any) -> tuple[float, float]:
    """(trips, calls) from the server's ``/metrics``."""
    values = {}
    for line in httpx.get(server.url + "/metrics", timeout=5).text.splitlines():
        name, _, value = line.partition(" ")
        values[name] = value
    return (
        float(values["booktime_database_trips_total"]),
        float(values["booktime_database_trip_calls_total"]),
    )


async def test_subscribes_arriving_together_share_trips_and_each_gets_its_answer(
    start_daphne: Any, alice: Any, bob: Any, make_order: Any, login_cookies: Any
) -> None:
    server = start_daphne("shared-trips")
    mine = await sync_to_async(make_order)(alice)
    others = await sync_to_async(make_order)(bob)
    cookies = await sync_to_async(login_cookies)(alice)
    sockets = [await ws_connect(server, cookies=cookies) for _ in range(MINE + OTHERS)]
    try:
        trips_before, calls_before = await sync_to_async(trip_counts)(server)
        assert server.process is not None
        os.kill(server.process.pid, signal.SIGSTOP)
        try:
            for index, ws in enumerate(sockets):
                order = mine if index < MINE else others
                await ws_send(
                    ws, {"action": "subscribe", "stream": f"order:{order.pk}", "after": 0}
                )
        finally:
            os.kill(server.process.pid, signal.SIGCONT)

        async def answer(ws: Any) -> list[dict[str, Any]]:
            first, _ = await ws_recv_until(ws, lambda f: f["type"] in ("subscribed", "error"))
            if first["type"] == "error":
                return [first]
            event, _ = await ws_recv_until(ws, lambda f: f["type"] == "event")
            return [first, event]

        answers = await asyncio.gather(*(answer(ws) for ws in sockets))
        for frames in answers[:MINE]:
            assert [f["type"] for f in frames] == ["subscribed", "event"], frames
            assert frames[1]["event"]["type"] == "order.created"
            assert frames[1]["event"]["order"]["id"] == mine.pk
        for frames in answers[MINE:]:
            assert frames[0]["code"] == "forbidden", frames

        trips_after, calls_after = await sync_to_async(trip_counts)(server)
        calls, trips = calls_after - calls_before, trips_after - trips_before
        assert calls >= MINE + OTHERS
        assert trips < calls, (trips, calls)
    finally:
        for ws in sockets:
            await ws.close()
