"""What the three streaming consumers share: following streams without loss.

``FollowingMixin`` implements the design's resume rule once — join the group
first, then send stored events after the cursor (``notifications.log``), then
live events, dropping any whose id is not above the last one sent — and the
recovery rule for Redis outages: a consumer whose layer receive fails keeps
its client connection, retries, re-joins its groups when the layer answers
again and backfills from its cursor. ``LayerWatchdog`` notices a Redis
restart that dropped no connection (group memberships forgotten) and tells
every consumer of the process to do the same.

Transports implement the hooks ``send_events``, ``send_reset`` and
(optionally) ``joined``.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import weakref
from dataclasses import dataclass
from typing import Any, NamedTuple

from channels.consumer import get_handler_name
from channels.db import database_sync_to_async
from channels.exceptions import StopConsumer
from channels.layers import get_channel_layer
from channels.utils import await_many_dispatch
from django.conf import settings
from django.db import DatabaseError

from notifications.backpressure import buffered_bytes, drained, is_backed_up, transport_of
from notifications.log import LiveCursor, latest_event_id, read_backlog
from notifications.streams import StreamError, Subscription, authorize

logger = logging.getLogger(__name__)

RECOVERED = "layer.recovered"  # message type a consumer gets after an outage
# How often the watchdog asks Redis whether it restarted. One probe per
# process, so cheap; it bounds how long a consumer stays deaf after a restart.
WATCHDOG_INTERVAL_SECONDS = 1.0
# Back-off between layer receive retries while Redis is down.
RETRY_DELAYS = (0.1, 0.25, 0.5, 1.0)


class Outgoing(NamedTuple):
    """An event ready to write: its id, its type and the envelope as JSON text."""

    id: int
    type: str
    text: str


@dataclass
class Followed:
    """One stream a connection follows, with its dedupe cursor."""

    subscription: Subscription
    cursor: LiveCursor


def event_json(message: dict[str, Any]) -> str:
    """The envelope as JSON text, encoded once by the publisher for all subscribers."""
    text = message.get("json")
    return text if isinstance(text, str) else json.dumps(message["event"])


class StreamUnavailable(Exception):
    """The database could not be read: the client should retry shortly."""

    message = "the event log is unavailable for a moment; retry shortly"


async def authorize_async(user: Any, stream: Any, token: str | None) -> Subscription:
    try:
        return await database_sync_to_async(authorize)(user, stream, token)
    except DatabaseError as exc:
        raise StreamUnavailable() from exc


class FollowingMixin:
    """Mixed into an async consumer; see the module docstring."""

    channel_layer: Any
    channel_name: str
    channel_layer_alias: str

    # -- hooks for transports ------------------------------------------------

    async def send_events(self, subscription: Subscription, events: list[Outgoing]) -> None:
        """Send events of one stream, in order."""
        raise NotImplementedError

    async def send_reset(self, subscription: Subscription, cursor: int) -> None:
        raise NotImplementedError

    async def joined(self, subscription: Subscription) -> None:
        """Called once the group is joined, before the backfill: from here on
        no event of the stream can be missed."""

    async def cut_off(self) -> None:
        """End the connection of a client that stopped reading (it resumes by cursor)."""

    # -- writing, bounded ----------------------------------------------------

    async def deliver(self, subscription: Subscription, events: list[Outgoing]) -> None:
        """``send_events`` unless the client has stopped reading; then cut it off."""
        if getattr(self, "was_cut_off", False):
            return
        transport = getattr(self, "transport", None)
        if is_backed_up(transport) and not await drained(transport):
            self.was_cut_off = True
            logger.warning(
                "cutting off a client that stopped reading (%d bytes waiting)",
                buffered_bytes(transport),
            )
            await self.cut_off()
            return
        await self.send_events(subscription, events)

    # -- following -----------------------------------------------------------

    @property
    def followed(self) -> dict[str, Followed]:
        if not hasattr(self, "_followed"):
            self._followed: dict[str, Followed] = {}
        return self._followed

    async def follow(self, subscription: Subscription, after: int | None) -> Followed:
        """Join the group, then backfill from ``after``; live events follow."""
        try:
            if after is None:
                # "From now" means from the newest event *before* joining: events
                # committed while we join are then backfilled, not lost.
                after = await database_sync_to_async(latest_event_id)()
        except DatabaseError as exc:
            raise StreamUnavailable() from exc
        followed = Followed(subscription, LiveCursor(0))
        self.followed[subscription.group] = followed
        try:
            await self.channel_layer.group_add(subscription.group, self.channel_name)
        except Exception as exc:  # noqa: BLE001 - Redis down: serve the log, join later
            logger.info("group_add failed (%s); will re-join when the layer answers", exc)
            self.rejoin_later()
        LayerWatchdog.for_running_loop().register(self.channel_name, self.local_messages)
        await self.joined(subscription)
        try:
            await self.backfill(followed, after)
        except DatabaseError as exc:
            await self.unfollow(subscription.group)
            raise StreamUnavailable() from exc
        return followed

    async def unfollow(self, group: str) -> None:
        self.followed.pop(group, None)
        try:
            await self.channel_layer.group_discard(group, self.channel_name)
        except Exception:  # noqa: BLE001 - layer down; the group entry expires
            logger.debug("group_discard failed for %s", group, exc_info=True)

    async def unfollow_all(self) -> None:
        self.cancel_rejoin()
        for group in list(self.followed):
            await self.unfollow(group)
        LayerWatchdog.for_running_loop().unregister(self.channel_name)

    async def backfill(self, followed: Followed, after: int | None) -> None:
        """Send stored events after ``after`` (page by page), or a reset."""
        while True:
            page = await database_sync_to_async(read_backlog)(followed.subscription, after)
            if page.reset:
                followed.cursor.advance(page.cursor)
                await self.send_reset(followed.subscription, page.cursor)
                return
            fresh = followed.cursor.accept_many(page.events)
            if fresh:
                await self.deliver(
                    followed.subscription,
                    [Outgoing(env["id"], env["type"], json.dumps(env)) for env in fresh],
                )
            if not page.more:
                followed.cursor.advance(page.cursor)
                return
            after = page.cursor

    # -- channel-layer handlers ----------------------------------------------

    async def dispatch(self, message: dict[str, Any]) -> None:
        """channels' dispatch without its ``aclose_old_connections()`` hop.

        channels runs that hop to the database thread before *every* handler.
        These consumers touch the database only through
        ``database_sync_to_async``, which closes stale connections around each
        call itself, so the hop is redundant; under fan-out it cost more
        server CPU than delivering the event (bench, docs/performance.md).
        """
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"No handler for message type {message['type']}")
        await handler(message)

    async def order_event(self, message: dict[str, Any]) -> None:
        """A live event from one of our groups: send it unless already sent."""
        followed = self.followed.get(message.get("group", ""))
        if followed is None:
            return
        envelope = message["event"]
        if followed.cursor.accept(envelope):
            await self.deliver(
                followed.subscription,
                [Outgoing(envelope["id"], envelope["type"], event_json(message))],
            )

    async def layer_recovered(self, message: dict[str, Any]) -> None:
        """Redis came back: re-join every group, then catch up from each cursor."""
        if not await self._rejoin_groups():
            self.rejoin_later()  # the layer is not back after all
            return
        try:
            for followed in list(self.followed.values()):
                await self.backfill(followed, followed.cursor.last_sent)
        except Exception as exc:  # noqa: BLE001 - the database is not back yet: retry
            logger.info("catch-up after an outage failed (%s); retrying", exc)
            self.rejoin_later()

    def rejoin_later(self) -> None:
        """Retry joining every group in the background; once the layer answers,
        a ``layer.recovered`` message runs the catch-up in dispatch order."""
        task = getattr(self, "_rejoin_task", None)
        if task is None or task.done():
            self._rejoin_task = asyncio.get_running_loop().create_task(self._rejoin())

    async def _rejoin(self) -> None:
        for attempt in itertools.count():
            await asyncio.sleep(RETRY_DELAYS[min(attempt, len(RETRY_DELAYS) - 1)])
            if not self.followed:
                return
            if await self._rejoin_groups():
                self.local_messages.put_nowait({"type": RECOVERED})
                return

    def cancel_rejoin(self) -> None:
        task = getattr(self, "_rejoin_task", None)
        if task is not None and task is not asyncio.current_task():
            task.cancel()

    # -- a layer receive that survives outages --------------------------------

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        # Same as channels.consumer.AsyncConsumer.__call__, but the layer
        # receive retries through Redis outages instead of killing the
        # connection (see _receive_from_layer).
        self.scope = scope
        self.channel_layer = get_channel_layer(self.channel_layer_alias)
        self.channel_name = await self.channel_layer.new_channel()
        self.channel_receive = self._receive_from_layer
        self.base_send = send
        self.transport = transport_of(send)  # daphne's, for the slow-client bound
        # Messages from this process (the watchdog, the re-join task) arrive
        # here rather than through Redis, which may be the thing that failed.
        self.local_messages: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        try:
            await await_many_dispatch(
                [receive, self.channel_receive, self.local_messages.get], self.dispatch
            )
        except StopConsumer:
            pass
        finally:
            # However the consumer ended, it leaves its groups (the pubsub
            # layer keeps memberships in this process until told).
            with contextlib.suppress(Exception):
                await self.unfollow_all()

    async def _receive_from_layer(self) -> dict[str, Any]:
        attempt = 0
        while True:
            try:
                return await self.channel_layer.receive(self.channel_name)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - Redis down or restarting
                if attempt == 0:
                    logger.info("channel layer receive failed (%s); retrying", exc)
                await asyncio.sleep(RETRY_DELAYS[min(attempt, len(RETRY_DELAYS) - 1)])
                attempt += 1
                if self.followed and await self._rejoin_groups():
                    return {"type": RECOVERED}

    async def _rejoin_groups(self) -> bool:
        """Join every followed group again; False while the layer does not answer."""
        try:
            for group in list(self.followed):
                await self.channel_layer.group_add(group, self.channel_name)
        except Exception:  # noqa: BLE001
            return False
        return True


class LayerWatchdog:
    """Per event loop: probe Redis, and after a restart or outage tell consumers.

    A Redis restart forgets every group membership while consumers stay
    connected; without this they would stay deaf. Disabled for the in-memory
    layer.
    """

    _by_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, LayerWatchdog] = (
        weakref.WeakKeyDictionary()
    )

    def __init__(self) -> None:
        self.channels: dict[str, asyncio.Queue[dict[str, Any]]] = {}
        self.task: asyncio.Task | None = None
        self.run_id: str | None = None
        self.was_down = False

    @classmethod
    def for_running_loop(cls) -> LayerWatchdog:
        loop = asyncio.get_running_loop()
        watchdog = cls._by_loop.get(loop)
        if watchdog is None:
            watchdog = cls._by_loop[loop] = cls()
        return watchdog

    @staticmethod
    def enabled() -> bool:
        return settings.CHANNEL_LAYER in ("redis", "pubsub")

    def register(self, channel_name: str, inbox: asyncio.Queue[dict[str, Any]]) -> None:
        self.channels[channel_name] = inbox
        if self.enabled() and (self.task is None or self.task.done()):
            self.task = asyncio.get_running_loop().create_task(self._watch())

    def unregister(self, channel_name: str) -> None:
        self.channels.pop(channel_name, None)
        if not self.channels and self.task is not None:
            self.task.cancel()
            self.task = None

    async def _watch(self) -> None:
        import redis.asyncio as aioredis

        client = aioredis.from_url(settings.REDIS_URL, socket_connect_timeout=1, socket_timeout=2)
        try:
            while self.channels:
                # Probe first: the run id seen when the first stream opens is
                # the one a later restart is told apart from.
                await self.probe(client)
                await asyncio.sleep(WATCHDOG_INTERVAL_SECONDS)
        finally:
            await client.aclose()

    async def probe(self, client: Any) -> None:
        try:
            info = await client.info("server")
        except Exception:  # noqa: BLE001
            if not self.was_down:
                logger.warning("Redis unreachable; consumers will re-join when it is back")
            self.was_down = True
            return
        run_id = info.get("run_id")
        restarted = self.run_id is not None and run_id != self.run_id
        if restarted or self.was_down:
            logger.warning("Redis is back (restarted=%s); re-joining groups", restarted)
            await self.announce_recovery()
        self.run_id = run_id
        self.was_down = False

    async def announce_recovery(self) -> None:
        try:
            await resubscribe_pubsub(get_channel_layer())
        except Exception:  # noqa: BLE001 - the consumers' own re-join retries
            logger.warning("could not re-subscribe the pubsub layer", exc_info=True)
        for inbox in list(self.channels.values()):
            inbox.put_nowait({"type": RECOVERED})


async def resubscribe_pubsub(layer: Any) -> None:
    """Make sure a RedisPubSubChannelLayer's subscriptions exist after a restart.

    That layer keeps group memberships in the process and one subscribing
    connection per shard; redis-py re-subscribes when that connection notices
    it was dropped, but not before. Sending SUBSCRIBE for everything again
    (idempotent in Redis) reconnects it at once. No-op for other layers.
    """
    loop_layer = layer._get_layer() if hasattr(layer, "_get_layer") else None
    for shard in getattr(loop_layer, "_shards", ()):
        async with shard._lock:
            if shard._pubsub is not None and shard._subscribed_to:
                await shard._pubsub.subscribe(*shard._subscribed_to)


__all__ = [
    "FollowingMixin",
    "LayerWatchdog",
    "Outgoing",
    "StreamError",
    "StreamUnavailable",
    "authorize_async",
]
