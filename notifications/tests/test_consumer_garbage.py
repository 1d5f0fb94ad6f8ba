"""A connection that ended leaves nothing for Python's cycle collector.

Under a reconnect storm the collector was a sixth of a WebSocket connect's
CPU (docs/performance.md, round 7): every ended consumer stayed in a
reference cycle (``self.channel_receive`` held a bound method of itself)
until a collection found it, and took its whole state with it. Here the
collector is off while a consumer runs and ends, so only reference counting
can free it. Through the real ASGI app on the default (Redis pub/sub) layer.
"""

from __future__ import annotations

import gc
import os
import subprocess
import sys
import weakref
from collections.abc import Iterator
from typing import Any

import pytest
from asgiref.sync import sync_to_async

from notifications.resume import FollowingMixin
from tests.support.asgi import HttpStream, http_headers, open_socket, ws_answer, ws_headers


@pytest.fixture
def consumers(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[weakref.ref]]:
    """Weak references to every consumer started during the test, which runs
    with the cycle collector disabled."""
    refs: list[weakref.ref] = []
    setup_state = FollowingMixin.setup_state

    def noting(self: Any, send: Any) -> None:
        refs.append(weakref.ref(self))
        setup_state(self, send)

    monkeypatch.setattr(FollowingMixin, "setup_state", noting)
    gc.collect()
    gc.disable()
    try:
        yield refs
    finally:
        gc.enable()


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
async def test_an_ended_websocket_consumer_is_freed_at_once(alice, alices_order, consumers):
    ws = await open_socket(await sync_to_async(ws_headers)(alice))
    frame = await ws_answer(ws, {"action": "subscribe", "stream": f"order:{alices_order.pk}"})
    assert frame["type"] == "subscribed", frame
    await ws.disconnect()
    del ws

    assert len(consumers) == 1
    assert consumers[0]() is None, "the ended consumer is only freed by the cycle collector"


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
async def test_an_ended_event_stream_consumer_is_freed_at_once(alice, alices_order, consumers):
    headers = await sync_to_async(http_headers)(alice)
    stream = await HttpStream("/events/stream/", f"stream=order:{alices_order.pk}", headers).start()
    assert stream.status == 200
    await stream.close()
    del stream

    assert len(consumers) == 1
    assert consumers[0]() is None, "the ended consumer is only freed by the cycle collector"


def test_the_asgi_application_freezes_what_startup_made() -> None:
    """``booktime.asgi`` moves the startup heap out of the collector's view."""
    probe = "import gc, booktime.asgi; print(gc.get_freeze_count())"
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True
    )
    assert int(result.stdout.strip()) > 10_000, result.stdout + result.stderr


def _gc_thresholds(imports: str, **environ: str) -> tuple[int, ...]:
    """The collector's thresholds in a new process after ``import gc, <imports>``."""
    probe = f"import gc{imports}; print(*gc.get_threshold())"
    result = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        env={**os.environ, **environ},
    )
    return tuple(int(part) for part in result.stdout.split())


def test_the_asgi_application_collects_young_objects_every_ten_thousand_allocations() -> None:
    """``booktime.asgi`` sets ``GC_YOUNG_THRESHOLD`` (default 10,000; Python's
    700 was 8 % of an SSE open's CPU) and keeps the older generations' ratios."""
    python = _gc_thresholds("")
    asgi = ", booktime.asgi"
    assert _gc_thresholds(asgi, GC_YOUNG_THRESHOLD="") == (10_000, *python[1:])
    assert _gc_thresholds(asgi, GC_YOUNG_THRESHOLD="2500") == (2_500, *python[1:])
    assert _gc_thresholds(asgi, GC_YOUNG_THRESHOLD="0") == python


def test_a_bad_gc_young_threshold_stops_the_server_with_its_name() -> None:
    probe = "import booktime.asgi"
    result = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "GC_YOUNG_THRESHOLD": "lots"},
    )
    assert result.returncode != 0
    assert "GC_YOUNG_THRESHOLD must be an integer" in result.stderr
