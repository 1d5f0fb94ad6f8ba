"""Wake ``deliver`` workers right after a commit, through the channel layer.

Only a speed-up: workers also scan every ``WEBHOOKS_POLL_MS``, so nothing
depends on Redis. The signal is sent fire-and-forget on the publisher's
event loop, so a save never waits for (or fails because of) Redis; a process
that exits right after committing (a management command, a script) waits
briefly at exit for the signals it has not sent yet.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import contextlib
import logging
import threading
from collections.abc import Callable

from asgiref.sync import async_to_sync
from channels.layers import InMemoryChannelLayer, get_channel_layer

logger = logging.getLogger(__name__)

WAKE_GROUP = "outbound-wake"
WAKE_MESSAGE = {"type": "outbound.wake"}
REJOIN_SECONDS = 60  # group memberships expire in RedisChannelLayer (group_expiry 300 s)
EXIT_WAIT_SECONDS = 1.0  # how long an exiting process waits for its unsent wake-ups

_unsent: set[concurrent.futures.Future[None]] = set()
_unsent_lock = threading.Lock()  # added here, removed on the publisher's thread


@atexit.register
def _send_before_exit() -> None:
    """Give wake-ups still on their way the publisher loop's last moments (it is a
    daemon thread: it stops with the process)."""
    with _unsent_lock:
        unsent = set(_unsent)
    if unsent:
        concurrent.futures.wait(unsent, timeout=EXIT_WAIT_SECONDS)


def notify_workers() -> None:
    """Tell every listening worker there is new work (best effort, non-blocking)."""
    from notifications.publish import _publisher_loop

    try:
        layer = get_channel_layer()
        if layer is None:
            return
        if isinstance(layer, InMemoryChannelLayer):
            async_to_sync(layer.group_send)(WAKE_GROUP, WAKE_MESSAGE)
            return
        future = asyncio.run_coroutine_threadsafe(
            layer.group_send(WAKE_GROUP, WAKE_MESSAGE), _publisher_loop.loop()
        )
        with _unsent_lock:
            _unsent.add(future)
        future.add_done_callback(_sent)
    except Exception:  # noqa: BLE001 - a lost wake-up only costs one poll interval
        logger.debug("could not send the worker wake-up", exc_info=True)


def _sent(future: concurrent.futures.Future[None]) -> None:
    with _unsent_lock:
        _unsent.discard(future)
    if not future.cancelled():
        future.exception()  # retrieved: a lost wake-up only costs one poll interval


async def listen(on_wake: Callable[[], None], stop: asyncio.Event) -> None:
    """Call ``on_wake`` for every wake-up until ``stop``; survive layer outages."""
    layer = get_channel_layer()
    if layer is None:
        return
    while not stop.is_set():
        channel = None
        try:
            channel = await layer.new_channel()
            await layer.group_add(WAKE_GROUP, channel)
            loop = asyncio.get_running_loop()
            rejoin_at = loop.time() + REJOIN_SECONDS
            while not stop.is_set():
                try:
                    async with asyncio.timeout(max(rejoin_at - loop.time(), 0.1)):
                        await layer.receive(channel)
                    on_wake()
                except TimeoutError:
                    await layer.group_add(WAKE_GROUP, channel)
                    rejoin_at = loop.time() + REJOIN_SECONDS
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - Redis down: polling covers it; retry later
            logger.info("wake-up listener lost the channel layer (%s); retrying", exc)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(2):
                    await stop.wait()
        finally:
            if channel is not None:
                with contextlib.suppress(Exception):
                    await layer.group_discard(WAKE_GROUP, channel)
