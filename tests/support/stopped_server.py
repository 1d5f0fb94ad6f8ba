"""A server process that loses messages while it stands still, and its client.

For the tests that a process behind, or whose Redis subscriber connection
was dropped, loses nothing: a WebSocket client follows an order on a real
daphne; the daphne is stopped (SIGSTOP) while ``lose`` makes its messages
go missing and the order changes; once it runs again, the client must get
every change, in order, once each, and the daphne's log must say why.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Awaitable, Callable
from typing import Any

from asgiref.sync import sync_to_async

from orders.actions import transition_order
from orders.models import OrderEvent
from tests.support.live import async_wait_until, ws_connect, ws_recv_until, ws_send

MISSED_LOG_LINE = "missed messages for this process"


def unpublished(order_id: int) -> int:
    return OrderEvent.objects.filter(order_id=order_id, published_at__isnull=True).count()


async def changes_reach_a_client_of_a_stopped_server(
    server: Any,
    cookies: dict[str, str],
    order_id: int,
    steps: list[str],
    lose: Callable[[], None] = lambda: None,
    after_sent: Callable[[], Awaitable[None]] | None = None,
) -> None:
    """Stop ``server``, call ``lose``, make ``steps`` and publish them, await
    ``after_sent``, run it again; assert its client got them all once, in
    order, by a catch-up."""
    async with await ws_connect(server, cookies=cookies) as ws:
        await ws_send(ws, {"action": "subscribe", "stream": f"order:{order_id}"})
        await ws_recv_until(ws, lambda f: f["type"] == "subscribed")
        # The pong comes once the subscribe is done, its first backlog read
        # included: what arrives later came live or by a catch-up.
        await ws_send(ws, {"action": "ping"})
        await ws_recv_until(ws, lambda f: f["type"] == "pong")

        assert server.process is not None
        os.kill(server.process.pid, signal.SIGSTOP)
        try:
            await sync_to_async(lose)()
            for status in steps:
                await sync_to_async(transition_order)(order_id, status)

            async def all_sent() -> bool:
                return await sync_to_async(unpublished)(order_id) == 0

            await async_wait_until(all_sent, message="every change published")
            if after_sent is not None:
                await after_sent()
        finally:
            os.kill(server.process.pid, signal.SIGCONT)

        seen = []
        while len(seen) < len(steps):
            frame, _ = await ws_recv_until(ws, lambda f: f["type"] == "event", timeout=15)
            seen.append(frame["event"]["order"]["status"])
        assert seen == steps
        # Nothing twice: what did arrive live and the catch-up overlap.
        await ws_send(ws, {"action": "ping"})
        _, before_pong = await ws_recv_until(ws, lambda f: f["type"] == "pong")
        assert not [f for f in before_pong if f["type"] == "event"], before_pong
    assert MISSED_LOG_LINE in server.log_path.read_text(errors="replace")
