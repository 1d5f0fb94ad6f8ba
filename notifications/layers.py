"""The channel layers, tuned for many consumers per process.

``BlockingPoolRedisChannelLayer`` (``CHANNEL_LAYER=redis``, at the end) is
channels-redis's ``RedisChannelLayer`` whose calls wait for a free Redis
connection instead of failing, and whose group messages dropped for a full
process are marked so that process catches up; the rest of this module is
the pub/sub layer.

``InboxPubSubChannelLayer`` is channels-redis's ``RedisPubSubChannelLayer``
(``CHANNEL_LAYER=pubsub``, the default) with three changes, each found with
the bench's profiler (docs/performance.md):

- **Decode once per process, not once per member.** The stock layer puts the
  raw bytes of a group message into every member's queue and each consumer
  runs msgpack on its own copy: 1,000 members of ``staff.orders`` decode the
  same event 1,000 times. Here the shard's reader decodes it once and every
  member gets the same dict. Consumers must treat layer messages as
  read-only (ours do).
- **A consumer's channel can be its inbox** (``new_inbox_channel``): the layer
  puts messages straight into the consumer's own queue, the one the consumer
  dispatches from (``notifications.recovery.RecoveryMixin``), so no task waits
  on a second queue per consumer and per message.
- **No Redis subscription for an inbox channel.** ``new_channel`` SUBSCRIBEs
  to the consumer's own channel name (and UNSUBSCRIBEs when it ends) so that
  another process could ``send`` to it; our consumers only hear their groups
  and their own process, so an inbox channel lives in this process only:
  two Redis round trips fewer per connection and no Redis-side subscription per
  open socket. A ``send`` to an inbox channel from this process is delivered
  locally. ``new_channel`` itself is unchanged (the webhook wake-up uses it).

- **A group's Redis subscription outlives its last member briefly**
  (``UNSUBSCRIBE_GRACE_SECONDS``). The stock layer UNSUBSCRIBEs when a
  group's last local member leaves and SUBSCRIBEs again when one joins: a
  long-poll loop does both for its stream and its access group on every
  request, and a reconnecting client does both per stream. Profiled: Redis
  socket writes were 10-13 % of a connect's busy samples (churn, SSE and WS).
  A group left empty is unsubscribed by a sweep after the grace period unless
  someone joined it again; messages for it meanwhile are dropped here (no
  member), as before.

- **Per-user access groups through one pattern subscription**
  (``PATTERN_GROUP_PREFIXES``: ``notifications.access.user_group``'s
  ``access.user.<uid>``). Every connection of a signed-in user joins its
  user's group, so each new user cost a SUBSCRIBE and, after the grace, an
  UNSUBSCRIBE: two of a WebSocket connect's four Redis commands (profiled,
  docs/performance.md, round 3). These groups are joined in this process
  only, and the process hears all of them through one PSUBSCRIBE per shard,
  taken when the first member joins. They carry only access announcements
  (a few per user change), so hearing other users' is cheap; members are
  matched here as for any group.

- **Publishes do not queue behind subscriptions.** The stock shard connection
  holds one lock for PUBLISH, SUBSCRIBE and UNSUBSCRIBE alike, so an event's
  three groups went out one round trip after the other; here a PUBLISH takes
  no lock, ``group_send_many`` sends several groups' messages in one
  pipelined round trip per shard, and a join of a group already subscribed
  takes the lock only while an (un)subscribe is under way
  (docs/performance.md, round 6).

Everything else (groups, reconnects) is the stock layer's.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import secrets
import time
from collections.abc import Callable
from typing import Any

from channels_redis.core import RedisChannelLayer
from channels_redis.pubsub import (
    RedisPubSubChannelLayer,
    RedisPubSubLoopLayer,
    RedisSingleShardConnection,
)
from redis.asyncio import BlockingConnectionPool, Sentinel
from redis.asyncio.client import PubSub
from redis.asyncio.sentinel import SentinelConnectionPool

logger = logging.getLogger(__name__)

# How long a group with no local member stays subscribed in Redis (swept
# every half of it, so at most 1.5x this).
UNSUBSCRIBE_GRACE_SECONDS = 2.0
# Groups heard through one pattern subscription per shard (see the module docstring).
PATTERN_GROUP_PREFIXES = ("access.user.",)


def _glob_escape(text: str) -> str:
    """``text`` matched literally in a Redis glob pattern."""
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


# Inbox channel names: this process's random name and a counter.
_PROCESS_NAME = secrets.token_hex(8)
_inbox_numbers = itertools.count(1)

# BlockingPoolRedisChannelLayer: how long a call waits for a free connection
# before it fails like an outage (the callers retry).
POOL_WAIT_SECONDS = 10
# Appended to a process's Redis key for the mark of a dropped group message.
OVERFLOW_SUFFIX = ":overflowed"


class ReconnectNoticingPubSub(PubSub):
    """redis-py's ``PubSub``, noting each time its connection is made again.

    redis-py re-subscribes a subscriber connection that was dropped (Redis
    closed it: ``client-output-buffer-limit`` on a process far behind at a
    fan-out peak, ``CLIENT KILL``, a proxy or a network reset) the next time
    it reads, and says nothing: what was published meanwhile never reaches
    the process, and the new connection's first messages are newer than
    what was lost. ``on_reconnect`` is told at once, before this connection
    reads anything: the layer watchdog then has every consumer catch up
    from the event log before it takes any live event the new connection
    brings (``InboxPubSubChannelLayer.on_reconnect``). Told when the
    watchdog's next probe asked instead, a consumer could first send a
    newer live event, move its cursor past what was lost, and catch up
    from there. With nobody listening, ``reconnected`` waits for the probe
    (``InboxPubSubChannelLayer.take_missed``).
    """

    reconnected = False
    on_reconnect: Callable[[], bool] | None = None  # True when somebody was told

    async def on_connect(self, connection: Any) -> None:
        # Called on every connect after the first one (registered after it).
        await super().on_connect(connection)  # subscriptions are sent again first
        if self.on_reconnect is None or not self.on_reconnect():
            self.reconnected = True


class InboxShardConnection(RedisSingleShardConnection):
    """One Redis connection of the layer; decodes each message once."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._patterns: set[str] = set()

    def _ensure_redis(self) -> None:
        if self._redis is None:
            super()._ensure_redis()
            self._pubsub = ReconnectNoticingPubSub(self._redis.connection_pool)
            self._pubsub.on_reconnect = self.channel_layer.tell_reconnected

    def take_reconnected(self) -> bool:
        """Whether the subscriber connection was made again since the last call."""
        pubsub = self._pubsub
        if pubsub is None or not pubsub.reconnected:
            return False
        pubsub.reconnected = False
        return True

    def _receive_message(self, message: Any) -> None:
        if message is None:
            return
        name = message["channel"]
        if isinstance(name, bytes):
            name = name.decode()
        layer = self.channel_layer  # the loop layer
        channels = layer.channels
        if name in channels:
            targets: Any = (name,)
        elif name in layer.groups:
            targets = layer.groups[name]
        else:
            return
        try:
            decoded = layer.channel_layer.deserialize(message["data"])
        except Exception:  # noqa: BLE001 - a foreign or corrupt message: drop it, keep reading
            logger.warning("dropping an undecodable message on %s", name, exc_info=True)
            return
        for channel_name in targets:
            queue = channels.get(channel_name)
            if queue is not None:
                queue.put_nowait(decoded)

    async def subscribe(self, channel: str) -> None:
        """The stock SUBSCRIBE, without queueing for the shard's lock when the
        channel is subscribed already and nothing is changing (every join of a
        group some member already holds here: most joins; profiled, 1.5 % of a
        long-poll, docs/performance.md, round 6). A held lock may be an
        UNSUBSCRIBE of this very channel under way: then wait for it as before."""
        if channel in self._subscribed_to and not self._lock.locked():
            return
        await super().subscribe(channel)

    async def publish(self, channel: str, message: bytes) -> None:
        """PUBLISH without the shard's lock, so that an event's groups go out
        at once (``notifications.publish.send_to_groups``) instead of one round
        trip after the other: the stock layer serializes every publish of a
        shard with its (un)subscribes. Events keep their order per group: the
        publisher sends the next event only once each group accepted this one."""
        self._ensure_redis()
        await self._redis.publish(channel, message)

    async def publish_many(self, items: list[tuple[str, bytes]]) -> None:
        """PUBLISH each ``(channel, message)`` in one pipelined round trip, in order."""
        self._ensure_redis()
        pipe = self._redis.pipeline(transaction=False)
        for channel, message in items:
            pipe.publish(channel, message)
        await pipe.execute()

    async def psubscribe(self, pattern: str) -> None:
        """PSUBSCRIBE ``pattern`` once (``_patterns``; re-sent after a Redis
        restart by ``notifications.recovery.resubscribe_pubsub``)."""
        if pattern in self._patterns:
            return
        async with self._lock:
            if pattern not in self._patterns:
                self._ensure_redis()
                self._ensure_receiver()
                await self._pubsub.psubscribe(pattern)
                self._patterns.add(pattern)

    async def flush(self) -> None:
        await super().flush()
        self._patterns.clear()

    async def unsubscribe_unless(self, channel: str, wanted: Any) -> None:
        """UNSUBSCRIBE ``channel`` unless ``wanted()``, asked under the shard's
        lock (a ``group_add`` that raced the sweep keeps its subscription)."""
        async with self._lock:
            if channel in self._subscribed_to and not wanted():
                self._ensure_redis()
                self._ensure_receiver()
                await self._pubsub.unsubscribe(channel)
                self._subscribed_to.remove(channel)


class InboxPubSubLoopLayer(RedisPubSubLoopLayer):
    """The per-event-loop half of the layer (channels-redis keeps one per loop)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._shards = [InboxShardConnection(shard.host, self) for shard in self._shards]
        self.inbox_channels: set[str] = set()  # channels never subscribed in Redis
        self.emptied: dict[str, float] = {}  # group channel -> when its last member left
        self.sweeper: asyncio.TimerHandle | None = None
        self.reconnect_listeners: list[Callable[[], None]] = []

    def tell_reconnected(self) -> bool:
        """A subscriber connection was made again: tell every listener
        (``InboxPubSubChannelLayer.on_reconnect``); False when there is none."""
        for listener in self.reconnect_listeners:
            listener()
        return bool(self.reconnect_listeners)

    async def group_add(self, group: str, channel: str) -> None:
        if group.startswith(PATTERN_GROUP_PREFIXES):
            await self._pattern_group_add(group, channel)
            return
        self.emptied.pop(self._get_group_channel_name(group), None)
        await super().group_add(group, channel)

    async def group_send_many(self, sends: list[tuple[str, dict[str, Any]]]) -> None:
        """``group_send`` to several groups at once: one pipelined round trip
        per shard instead of a PUBLISH each (the on-commit publish sends every
        event to three groups; docs/performance.md, round 6)."""
        by_shard: dict[InboxShardConnection, list[tuple[str, bytes]]] = {}
        for group, message in sends:
            group_channel = self._get_group_channel_name(group)
            by_shard.setdefault(self._get_shard(group_channel), []).append(
                (group_channel, self.channel_layer.serialize(message))
            )
        await asyncio.gather(*(shard.publish_many(items) for shard, items in by_shard.items()))

    async def _pattern_group_add(self, group: str, channel: str) -> None:
        """Join ``group`` here only; its messages arrive through the pattern."""
        if channel not in self.channels:
            raise RuntimeError("group_add() takes channels that exist in this process")
        self.groups.setdefault(self._get_group_channel_name(group), set()).add(channel)
        prefix = next(p for p in PATTERN_GROUP_PREFIXES if group.startswith(p))
        pattern = _glob_escape(self._get_group_channel_name(prefix)) + "*"
        for shard in self._shards:
            await shard.psubscribe(pattern)

    async def group_discard(self, group: str, channel: str) -> None:
        """The stock discard, but the Redis UNSUBSCRIBE waits for the sweep."""
        group_channel = self._get_group_channel_name(group)
        members = self.groups.get(group_channel)
        if not members or channel not in members:
            return
        members.remove(channel)
        if members:
            return
        del self.groups[group_channel]
        if group.startswith(PATTERN_GROUP_PREFIXES):
            return  # heard through the pattern: nothing to unsubscribe
        loop = asyncio.get_running_loop()
        self.emptied[group_channel] = loop.time()
        if self.sweeper is None:
            self.sweeper = loop.call_later(UNSUBSCRIBE_GRACE_SECONDS / 2, self._sweep)

    def _sweep(self) -> None:
        """Unsubscribe the groups empty for the whole grace period."""
        self.sweeper = None
        loop = asyncio.get_running_loop()
        due = loop.time() - UNSUBSCRIBE_GRACE_SECONDS
        stale = [g for g, t in self.emptied.items() if t <= due and g not in self.groups]
        for group_channel in stale:
            del self.emptied[group_channel]
        if stale:
            loop.create_task(self._unsubscribe(stale))
        if self.emptied:
            self.sweeper = loop.call_later(UNSUBSCRIBE_GRACE_SECONDS / 2, self._sweep)

    async def _unsubscribe(self, group_channels: list[str]) -> None:
        for group_channel in group_channels:
            if group_channel in self.groups:  # joined again meanwhile
                continue
            try:
                await self._get_shard(group_channel).unsubscribe_unless(
                    group_channel, lambda g=group_channel: g in self.groups
                )
            except Exception:  # noqa: BLE001 - Redis down: the subscription dies with it
                logger.debug("could not unsubscribe %s", group_channel, exc_info=True)

    async def flush(self) -> None:
        if self.sweeper is not None:
            self.sweeper.cancel()
            self.sweeper = None
        self.emptied.clear()
        await super().flush()

    def new_inbox_channel(self, inbox: asyncio.Queue, prefix: str = "inbox.") -> str:
        """A channel name whose messages (its groups') go straight into ``inbox``.

        Unique in this process (an inbox lives nowhere else): a random name per
        process and a counter, not a UUID per connection (``uuid4`` was 2.6 %
        of an SSE open's server samples; docs/performance.md, round 6)."""
        channel = f"{self.prefix}{prefix}{_PROCESS_NAME}.{next(_inbox_numbers)}"
        self.channels[channel] = inbox
        self.inbox_channels.add(channel)
        return channel

    def release_inbox_channel(self, channel: str) -> None:
        """Forget an inbox channel; its owner calls this when it ends (after its
        ``group_discard``s: the group sets still name it until then)."""
        self.inbox_channels.discard(channel)
        self.channels.pop(channel, None)

    async def send(self, channel: str, message: dict[str, Any]) -> None:
        if channel in self.inbox_channels:
            self.channels[channel].put_nowait(message)
            return
        await super().send(channel, message)

    async def receive(self, channel: str) -> dict[str, Any]:
        """The stock ``receive``, but messages arrive decoded (see the shard)."""
        if channel not in self.channels:
            await self._subscribe_to_channel(channel)
        queue = self.channels[channel]
        try:
            return await queue.get()
        except (asyncio.CancelledError, TimeoutError, GeneratorExit):
            # As the stock layer: a cancelled receive means the consumer is
            # leaving; drop its channel and the Redis subscription.
            if channel in self.channels and channel not in self.inbox_channels:
                del self.channels[channel]
                try:
                    await self._get_shard(channel).unsubscribe(channel)
                except BaseException:  # noqa: BLE001 - keep the cancellation the one raised
                    logger.exception("Unexpected exception while cleaning-up channel:")
            raise


class InboxPubSubChannelLayer(RedisPubSubChannelLayer):
    """``RedisPubSubChannelLayer`` with ``InboxPubSubLoopLayer`` per event loop."""

    def __getattr__(self, name: str) -> Any:
        if name in ("new_inbox_channel", "release_inbox_channel"):
            return getattr(self._get_layer(), name)
        return super().__getattr__(name)

    _last: tuple[asyncio.AbstractEventLoop, InboxPubSubLoopLayer] | None = None

    def _get_layer(self) -> InboxPubSubLoopLayer:
        """The running loop's layer; the last one asked for is kept at hand
        (every layer call of a consumer passes here; 1.7 % of a long-poll)."""
        loop = asyncio.get_running_loop()
        last = self._last
        if last is not None and last[0] is loop:
            return last[1]
        layer = self._layers.get(loop)
        if layer is None:
            layer = InboxPubSubLoopLayer(*self._args, **self._kwargs, channel_layer=self)
            self._layers[loop] = layer
            from channels_redis.utils import _wrap_close

            _wrap_close(self, loop)
        self._last = (loop, layer)
        return layer

    def on_reconnect(self, listener: Callable[[], None]) -> None:
        """Call ``listener`` on the running loop each time a subscriber
        connection of its layer is made again, before that connection's
        first message reaches an inbox (``ReconnectNoticingPubSub``)."""
        self._get_layer().reconnect_listeners.append(listener)

    async def take_missed(self) -> bool:
        """Whether this process may have missed group messages since the last
        call: a subscriber connection of the running loop's layer was made
        again while no ``on_reconnect`` listener heard it
        (``ReconnectNoticingPubSub``). ``LayerWatchdog`` asks each probe."""
        # A list, not a generator: every shard's flag is taken, not only the first set.
        return any([shard.take_reconnected() for shard in self._get_layer()._shards])


class BlockingSentinelConnectionPool(SentinelConnectionPool, BlockingConnectionPool):
    """A Sentinel-managed pool that waits for a free connection (redis-py has none)."""


class BlockingPoolRedisChannelLayer(RedisChannelLayer):
    """``RedisChannelLayer`` whose connection pools wait for a free connection.

    The stock layer's pools are redis-py's asyncio ``ConnectionPool``, which
    holds at most ``max_connections`` (100 unless set) and raises
    ``MaxConnectionsError`` at once when all are in use. Every consumer of a
    process shares them, and a reconnect storm makes a thousand layer calls at
    once (``group_discard`` for the sockets that went, ``group_add`` for those
    that came back): most failed, each taken for a Redis outage. Here a call
    queues for one of ``max_connections`` (``CHANNEL_LAYER_MAX_CONNECTIONS``)
    for up to ``POOL_WAIT_SECONDS``. Host entries are read as channels-redis
    reads them (an ``address``, or Sentinel ``master_name`` and ``sentinels``).
    """

    # channels-redis 4.3's group-send script, with the expiry of old messages
    # moved in (one round trip fewer) and a mark beside a process key that
    # drops messages: full (the message is not added) or holding expired ones.
    GROUP_SEND_LUA = """
        local behind = 0
        local mark_suffix = ARGV[#ARGV - 3]
        local mark_ttl = ARGV[#ARGV - 2]
        local current_time = ARGV[#ARGV - 1]
        local expiry = ARGV[#ARGV]
        local oldest = tonumber(current_time) - tonumber(expiry)
        for i=1,#KEYS do
            local expired = redis.call('ZREMRANGEBYSCORE', KEYS[i], 0, oldest)
            local full = redis.call('ZCARD', KEYS[i]) >= tonumber(ARGV[i + #KEYS])
            if not full then
                redis.call('ZADD', KEYS[i], current_time, ARGV[i])
                redis.call('EXPIRE', KEYS[i], expiry)
            end
            if full or expired > 0 then
                redis.call('SET', KEYS[i] .. mark_suffix, current_time, 'EX', mark_ttl)
                behind = behind + 1
            end
        end
        return behind
    """

    async def group_send(self, group: str, message: dict[str, Any]) -> None:
        """channels-redis's ``group_send``, but a process that loses messages
        is told. The stock layer drops a message for a process whose key holds
        ``capacity`` messages (that process is behind: a fan-out peak past
        what it can take) and discards messages older than ``expiry`` unread;
        it only logs a count, in the sender. Here either leaves a mark beside
        that key (``OVERFLOW_SUFFIX``, kept ``group_expiry``); the process's
        watchdog takes it within a second (``take_missed``) and its consumers
        catch up from the event log, as after an outage: late, nothing lost."""
        assert self.require_valid_group_name(group), "Group name not valid"
        key = self._group_key(group)
        connection = self.connection(self.consistent_hash(group))
        await connection.zremrangebyscore(key, min=0, max=int(time.time()) - self.group_expiry)
        channel_names = [name.decode("utf8") for name in await connection.zrange(key, 0, -1)]
        by_connection, messages, capacities = self._map_channel_keys_to_connection(
            channel_names, message
        )
        for index, channel_keys in by_connection.items():
            args = [
                *(messages[channel_key] for channel_key in channel_keys),
                *(capacities[channel_key] for channel_key in channel_keys),
                OVERFLOW_SUFFIX,
                self.group_expiry,
                time.time(),
                self.expiry,
            ]
            behind = await self.connection(index).eval(
                self.GROUP_SEND_LUA, len(channel_keys), *channel_keys, *args
            )
            if behind:
                # Info, as the stock layer: a process that died stays in its
                # groups until they expire, and is "behind" on every send.
                logger.info(
                    "%s of %s processes behind on group %s: marked to catch up from the event log",
                    behind,
                    len(channel_keys),
                    group,
                )

    async def take_missed(self) -> bool:
        """Whether a group message for this process was dropped since the last
        call (``group_send``); clears the mark. One Redis command, from the
        ``LayerWatchdog`` each probe."""
        name = f"specific.{self.client_prefix}!"
        connection = self.connection(self.consistent_hash(name))
        return bool(await connection.delete(self.prefix + name + OVERFLOW_SUFFIX))

    def create_pool(self, index: int) -> Any:
        options = {"timeout": POOL_WAIT_SECONDS, **self.hosts[index]}
        if "address" in options:
            return BlockingConnectionPool.from_url(options.pop("address"), **options)
        if "master_name" in options:
            sentinel = Sentinel(
                options.pop("sentinels"), sentinel_kwargs=options.pop("sentinel_kwargs", None)
            )
            return BlockingSentinelConnectionPool(options.pop("master_name"), sentinel, **options)
        return BlockingConnectionPool(**options)
