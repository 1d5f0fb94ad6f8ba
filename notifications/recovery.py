"""Outage recovery: a streaming consumer keeps its client through a Redis outage.

- Its layer receive retries with back-off instead of ending the connection
  (channels' own ``__call__`` lets a failing receive kill it); once the layer
  answers again the consumer re-joins its groups.
- A ``group_add`` that fails at subscribe is retried in the background
  (``rejoin_later``); the stream is served from the log meanwhile.
- ``LayerWatchdog`` (one per event loop) notices a Redis restart that broke
  no connection — group memberships forgotten (``redis`` layer), the pubsub
  layer's subscriber connection dead — and tells every consumer of the process.
- Either way the consumer then gets a ``layer.recovered`` message: it re-joins
  every group and catches up from each stream's cursor (``catch_up``, the
  resume rule's backfill in ``notifications.resume``), in dispatch order.

Messages from this process (the watchdog, the re-join task) arrive through a
local inbox, ``local_messages``, not through Redis, which may be the thing
that failed.

Memberships are also kept fresh while nothing fails: a layer with a
``group_expiry`` (``RedisChannelLayer``, the in-memory layer) drops a member
that joined longer ago than that, so every consumer re-joins its groups about
every half of it (``layer.refresh``, in dispatch order; no log re-read).
Idle otherwise costs nothing: the layer's blocking receive must not time out
on the client side (``CHANNEL_LAYER_SOCKET_TIMEOUT``, checked by
``notifications.checks``), or every idle process would take an outage for one.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import random
import weakref
from typing import Any, NamedTuple

from channels.exceptions import StopConsumer
from channels.layers import get_channel_layer
from channels_redis.core import RedisChannelLayer
from django.conf import settings

from booktime import redis_topology
from notifications import metrics

logger = logging.getLogger(__name__)

RECOVERED = "layer.recovered"  # message type a consumer gets after an outage
REFRESH = "layer.refresh"  # message type: time to re-join groups before they expire
# How often the watchdog asks Redis whether it restarted. One probe per
# process, so cheap; it bounds how long a consumer stays deaf after a restart.
WATCHDOG_INTERVAL_SECONDS = 1.0
# Back-off between layer receive retries while Redis is down.
RETRY_DELAYS = (0.1, 0.25, 0.5, 1.0)


def retry_delay(attempt: int) -> float:
    return RETRY_DELAYS[min(attempt, len(RETRY_DELAYS) - 1)]


class RecoveryMixin:
    """The outage half of ``notifications.resume.FollowingMixin``, which mixes it in.

    The consumer state it uses (``followed``, ``local_messages``,
    ``rejoin_task``) is set up by ``FollowingMixin.setup_state``; ``catch_up``
    and ``unfollow_all`` are the resume rule's.
    """

    channel_layer: Any
    channel_layer_alias: str
    channel_name: str
    followed: dict[str, Any]  # group -> the stream followed through it
    local_messages: asyncio.Queue[dict[str, Any]]
    rejoin_task: asyncio.Task | None
    refresh_handle: asyncio.TimerHandle | None = None
    layer_closed = False  # set by end_layer_receive

    def setup_state(self, send: Any) -> None:
        raise NotImplementedError

    async def catch_up(self) -> None:
        """Send every followed stream's events after its cursor."""
        raise NotImplementedError

    async def unfollow_all(self) -> None:
        raise NotImplementedError

    # -- a layer receive that survives outages --------------------------------

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        # Same as channels.consumer.AsyncConsumer.__call__, but the layer
        # receive retries through Redis outages instead of killing the
        # connection, and the local inbox is a third message source.
        #
        # [perf, issue 13] One inbox per consumer instead of channels'
        # await_many_dispatch, which creates a task per source per message and
        # an asyncio.wait over all of them (profiled: most of a consumer's cost
        # per delivery under fan-out, and two extra tasks held per idle
        # connection). Every source puts into ``local_messages``; the loop below
        # takes them in arrival order. With the default pubsub layer
        # (notifications.layers) the layer writes into that queue itself, so only
        # the client's ASGI receive needs a pump task; other layers get a pump
        # for their receive too.
        #
        # [perf, issue 13] Nothing here keeps a bound method of the consumer on
        # the consumer (channels' ``channel_receive`` is not set: nothing reads
        # it): such a cycle left every ended consumer, with all its state, to
        # the cycle collector (round 7 in docs/performance.md).
        #
        # [perf, issue 13] Under daphne (and channels' test communicator) the
        # ASGI receive is ``asyncio.Queue.get`` of the server's own queue for
        # this connection: that queue is the inbox, and no pump task, no second
        # queue is held per connection (``server_queue``; round 8).
        self.scope = scope
        self.channel_layer = get_channel_layer(self.channel_layer_alias)
        self.base_send = send
        self.setup_state(send)
        queue = server_queue(receive)
        if queue is not None:
            self.local_messages = queue
        metrics.connection_opened(self)
        inbox = self.local_messages
        new_inbox_channel = getattr(self.channel_layer, "new_inbox_channel", None)
        pumps: list[asyncio.Task] = []
        layer_pump: asyncio.Task | None = None
        if new_inbox_channel is not None:
            self.channel_name = new_inbox_channel(inbox)
        else:
            self.channel_name = await self.channel_layer.new_channel()
            layer_pump = asyncio.create_task(pump(self.receive_from_layer, inbox))
        if queue is None:
            pumps.append(asyncio.create_task(pump(receive, inbox)))
        try:
            while True:
                message = await inbox.get()
                if isinstance(message, SourceFailed):
                    raise message.error
                await self.dispatch(message)
        except StopConsumer:
            pass
        finally:
            if layer_pump is not None:
                await self.end_layer_receive(layer_pump)
            for task in pumps:
                task.cancel()
            for task in pumps:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            # However the consumer ended, it leaves its groups (the pubsub
            # layer keeps memberships in this process until told).
            with contextlib.suppress(Exception):
                await self.unfollow_all()
            metrics.connection_closed(self)
            if new_inbox_channel is not None:
                self.channel_layer.release_inbox_channel(self.channel_name)

    async def end_layer_receive(self, task: asyncio.Task) -> None:
        """End the layer receive without cancelling it and, as a rule, without Redis.

        RedisChannelLayer shares one BZPOPMIN per process among its consumers;
        cancelling the receive waiting in it can drop a message already popped
        for *another* consumer (channels_redis #366, channels #1683). A last
        message to itself through Redis is safe, but goes through the one Redis
        key of the whole process, bounded by the layer's capacity: a reconnect
        storm sent a thousand at once, and a group message arriving while the
        key is full is dropped for every consumer of the process. So
        ``layer.closed`` goes into the layer's local buffer for this channel,
        which a waiting receive takes at once; only the receive leading the
        BZPOPMIN looks at its buffer after its next pop, so if it is still
        running after ``LAYER_CLOSE_LOCAL_SECONDS`` the message is sent through
        Redis as well. (The in-memory layer's receive is safe to cancel.)
        """
        self.layer_closed = True  # receive_from_layer: stop retrying
        layer = self.channel_layer
        if not isinstance(layer, RedisChannelLayer):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
            return
        task.add_done_callback(
            # What the receive did not take: the copy also sent through Redis.
            lambda _: layer.receive_buffer.pop(self.channel_name, None)
        )
        layer.receive_buffer[self.channel_name].put_nowait({"type": LAYER_CLOSED})
        done, _ = await asyncio.wait({task}, timeout=LAYER_CLOSE_LOCAL_SECONDS)
        if done:
            return
        # Still running: the receive leading the BZPOPMIN. This is its next pop
        # (failing that, any later pop ends it, or a failing receive).
        with contextlib.suppress(Exception):
            await asyncio.wait_for(
                layer.send(self.channel_name, {"type": LAYER_CLOSED}), LAYER_CLOSE_TIMEOUT_SECONDS
            )

    async def receive_from_layer(self) -> dict[str, Any]:
        """The next layer message; while Redis is down, retry, then report recovery."""
        attempt = 0
        while True:
            try:
                return await self.channel_layer.receive(self.channel_name)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - Redis down or restarting
                if self.layer_closed:  # a failed receive drops its buffer, layer.closed too
                    return {"type": LAYER_CLOSED}
                if attempt == 0:
                    logger.info("channel layer receive failed (%s); retrying", exc)
                await asyncio.sleep(retry_delay(attempt))
                attempt += 1
                if self.followed and await self.rejoin_groups():
                    return {"type": RECOVERED}

    # -- group membership through outages ------------------------------------

    async def join_group(self, group: str) -> None:
        """Join ``group``; if the layer does not answer, keep retrying in the background."""
        try:
            await self.channel_layer.group_add(group, self.channel_name)
        except Exception as exc:  # noqa: BLE001 - Redis down: serve the log, join later
            logger.info("group_add failed (%s); will re-join when the layer answers", exc)
            self.rejoin_later()
        LayerWatchdog.for_running_loop().register(self.channel_name, self.local_messages)
        self.schedule_refresh()

    def stop_recovery(self) -> None:
        """The consumer follows nothing any more: no re-join, no refresh, no watchdog."""
        self.cancel_rejoin()
        if self.refresh_handle is not None:
            self.refresh_handle.cancel()
            self.refresh_handle = None
        LayerWatchdog.for_running_loop().unregister(self.channel_name)

    def refresh_interval(self) -> float | None:
        """Seconds between re-joins: 40-50 % of the layer's ``group_expiry``
        (spread, so sockets opened together do not refresh together); None
        for a layer whose memberships do not expire (pubsub)."""
        # The instance's own attribute: the pubsub layer proxies lookups.
        expiry = vars(self.channel_layer).get("group_expiry")
        if not isinstance(expiry, int | float) or expiry <= 0:
            return None
        return expiry * random.uniform(0.4, 0.5)

    def schedule_refresh(self) -> None:
        """Arrange the next ``layer.refresh`` (one timer per consumer, not a task)."""
        if self.refresh_handle is not None:
            return
        interval = self.refresh_interval()
        if interval is not None:
            self.refresh_handle = asyncio.get_running_loop().call_later(
                interval, self.local_messages.put_nowait, {"type": REFRESH}
            )

    def member_groups(self) -> list[str]:
        """Every group this consumer belongs to: its streams', and the access
        groups ``notifications.access`` joins for the principal."""
        return [*self.followed, *getattr(self, "access_groups", ())]

    async def rejoin_groups(self) -> bool:
        """Join every group again; False while the layer does not answer."""
        try:
            for group in self.member_groups():
                await self.channel_layer.group_add(group, self.channel_name)
        except Exception:  # noqa: BLE001
            return False
        return True

    def rejoin_later(self) -> None:
        """Retry joining every group in the background; once the layer answers,
        a ``layer.recovered`` message runs the catch-up in dispatch order."""
        if self.rejoin_task is None or self.rejoin_task.done():
            self.rejoin_task = asyncio.get_running_loop().create_task(self._rejoin())

    async def _rejoin(self) -> None:
        # Retries while nothing is followed too: a stream opened with a cursor
        # joins its group before it is authorized (``open_stream``), and is
        # followed only then; the ``layer.recovered`` this puts in the inbox
        # is handled after that and joins it. Ends with the consumer
        # (``stop_recovery``).
        for attempt in itertools.count():
            await asyncio.sleep(retry_delay(attempt))
            if await self.rejoin_groups():
                self.local_messages.put_nowait({"type": RECOVERED})
                return

    def cancel_rejoin(self) -> None:
        task = self.rejoin_task
        if task is not None and task is not asyncio.current_task():
            task.cancel()

    # -- channel-layer handlers ------------------------------------------------

    async def layer_refresh(self, message: dict[str, Any]) -> None:
        """Re-join every group before its membership expires; nothing is re-read."""
        self.refresh_handle = None
        if not self.followed:
            return
        if await self.rejoin_groups():
            self.schedule_refresh()
        else:
            self.rejoin_later()  # the layer is down: the outage path takes over

    async def layer_recovered(self, message: dict[str, Any]) -> None:
        """Redis came back: re-join every group, then catch up from each cursor."""
        if not await self.rejoin_groups():
            self.rejoin_later()  # the layer is not back after all
            return
        self.schedule_refresh()
        try:
            await self.catch_up()
        except Exception as exc:  # noqa: BLE001 - the database is not back yet: retry
            logger.info("catch-up after an outage failed (%s); retrying", exc)
            self.rejoin_later()


class SourceFailed(NamedTuple):
    """A message source of a consumer raised: the consumer's loop re-raises it."""

    error: BaseException


# The last message the ASGI server sends a consumer; nothing follows it.
# Put by a closing consumer into its own channel's buffer (sent through Redis
# to a receive still waiting in the BZPOPMIN after LAYER_CLOSE_LOCAL_SECONDS)
# to end its layer receive (RecoveryMixin.end_layer_receive); never dispatched.
LAYER_CLOSED = "layer.closed"
LAYER_CLOSE_LOCAL_SECONDS = 0.5
LAYER_CLOSE_TIMEOUT_SECONDS = 2.0
FINAL_MESSAGES = frozenset({"websocket.disconnect", "http.disconnect", LAYER_CLOSED})


def server_queue(receive: Any) -> asyncio.Queue | None:
    """The queue behind an ASGI ``receive`` that is a plain ``asyncio.Queue.get``
    (daphne's per-connection queue; channels' ``ApplicationCommunicator``), else
    None. The server only ever ``put_nowait``s into it, so the consumer can
    read it as its inbox and let its other sources put there too: messages
    still come out in arrival order."""
    queue = getattr(receive, "__self__", None)
    if type(queue) is asyncio.Queue and getattr(receive, "__func__", None) is asyncio.Queue.get:
        return queue
    return None


async def pump(source: Any, inbox: asyncio.Queue) -> None:
    """Move messages from ``source()`` into ``inbox`` until the final one."""
    try:
        while True:
            message = await source()
            inbox.put_nowait(message)
            if message.get("type") in FINAL_MESSAGES:
                return
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # noqa: BLE001 - handed to the consumer's loop
        inbox.put_nowait(SourceFailed(exc))


class LayerWatchdog:
    """Per event loop: probe Redis, and after a restart or outage tell consumers.

    A Redis restart forgets every group membership while consumers stay
    connected; without this they would stay deaf. Messages lost while Redis
    stayed up are told the same way, and every consumer catches up from its
    cursor: the pubsub layer's subscriber connection made again (Redis
    dropped it), the redis layer's mark of a message it dropped for this
    process (behind by its capacity). Disabled for the in-memory layer.
    """

    _by_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, LayerWatchdog] = (
        weakref.WeakKeyDictionary()
    )

    def __init__(self) -> None:
        self.channels: dict[str, asyncio.Queue[dict[str, Any]]] = {}
        self.task: asyncio.Task | None = None
        self.run_id: str | None = None
        self.was_down = False
        self.last_probe: float | None = None  # loop time
        self.hears_reconnects = False  # told by the layer itself (``register``)

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
        if self.enabled() and not self.hears_reconnects:
            listen = getattr(get_channel_layer(), "on_reconnect", None)  # the pubsub layer
            if listen is not None:
                listen(self.subscriber_reconnected)
            self.hears_reconnects = True
        if self.enabled() and (self.task is None or self.task.done()):
            self.last_probe = None  # not watching meanwhile is not standing still
            self.task = asyncio.get_running_loop().create_task(self._watch())

    def unregister(self, channel_name: str) -> None:
        self.channels.pop(channel_name, None)
        if not self.channels and self.task is not None:
            self.task.cancel()
            self.task = None

    async def _watch(self) -> None:
        client = redis_topology.watch_client()  # follows a Sentinel failover; every shard
        try:
            while self.channels:
                # Probe first: the run id seen when the first stream opens is
                # the one a later restart is told apart from.
                await self.probe(client)
                await asyncio.sleep(WATCHDOG_INTERVAL_SECONDS)
        finally:
            await client.aclose()

    async def probe(self, client: Any) -> None:
        now = asyncio.get_running_loop().time()
        stood_still = self.stood_still_past_expiry(now)
        self.last_probe = now
        try:
            info = await client.info("server")
        except Exception:  # noqa: BLE001
            if not self.was_down:
                logger.warning("Redis unreachable; consumers will re-join when it is back")
            self.was_down = True
            return
        run_id = info.get("run_id")
        restarted = self.run_id is not None and run_id != self.run_id
        missed = await self.layer_missed_messages()
        if restarted or self.was_down:
            logger.warning("Redis is back (restarted=%s); re-joining groups", restarted)
            await self.announce_recovery()
        elif stood_still:
            logger.warning(
                "the channel layer missed messages for this process (it stood still "
                "%.1f s, past CHANNEL_LAYER_EXPIRY); consumers catch up from the event log",
                stood_still,
            )
            await self.announce_recovery()
        elif missed:
            logger.warning(
                "the channel layer missed messages for this process (its subscriber "
                "connection was made again, or it fell behind by CHANNEL_LAYER_CAPACITY); "
                "consumers catch up from the event log"
            )
            await self.announce_recovery()
        self.run_id = run_id
        self.was_down = False

    def stood_still_past_expiry(self, now: float) -> float:
        """Seconds since the last probe when more than the layer's message
        expiry (the redis layer: messages left unread that long are gone,
        key and all, with no mark when nothing was sent after them), else 0."""
        expiry = getattr(get_channel_layer(), "expiry", None)
        if self.last_probe is None or not expiry:
            return 0.0
        gap = now - self.last_probe
        return gap if gap > expiry else 0.0

    @staticmethod
    async def layer_missed_messages() -> bool:
        """Whether the layer lost group messages for this process since the
        last probe while Redis stayed up: the pubsub layer's subscriber
        connection was dropped and made again, the redis layer dropped one for
        a process behind (``take_missed`` of either layer)."""
        take = getattr(get_channel_layer(), "take_missed", None)
        if take is None:
            return False
        try:
            return await take()
        except Exception:  # noqa: BLE001 - Redis trouble: the next probe sees it
            return False

    def subscriber_reconnected(self) -> None:
        """The pubsub layer made a subscriber connection again (Redis dropped
        it, or restarted): every consumer catches up from its cursor before
        any message the new connection brings, which sits behind this in
        its inbox. Not at the next probe: a newer live event taken first
        would move the cursor past what was lost."""
        if not self.channels:
            return
        logger.warning(
            "the channel layer missed messages for this process (its subscriber "
            "connection was made again); consumers catch up from the event log"
        )
        self.tell_consumers()

    async def announce_recovery(self) -> None:
        try:
            await resubscribe_pubsub(get_channel_layer())
        except Exception:  # noqa: BLE001 - the consumers' own re-join retries
            logger.warning("could not re-subscribe the pubsub layer", exc_info=True)
        self.tell_consumers()

    def tell_consumers(self) -> None:
        """A ``layer.recovered`` into every registered consumer's inbox."""
        metrics.LAYER_RECOVERIES.inc()
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
            patterns = getattr(shard, "_patterns", None)
            if shard._pubsub is not None and patterns:
                await shard._pubsub.psubscribe(*patterns)
