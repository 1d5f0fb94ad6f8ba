"""The pub/sub channel layer, tuned for many consumers per process.

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

Everything else (groups, publishing, reconnects) is the stock layer's.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import Any

from channels_redis.pubsub import (
    RedisPubSubChannelLayer,
    RedisPubSubLoopLayer,
    RedisSingleShardConnection,
)

logger = logging.getLogger(__name__)


class InboxShardConnection(RedisSingleShardConnection):
    """One Redis connection of the layer; decodes each message once."""

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


class InboxPubSubLoopLayer(RedisPubSubLoopLayer):
    """The per-event-loop half of the layer (channels-redis keeps one per loop)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._shards = [InboxShardConnection(shard.host, self) for shard in self._shards]
        self.inbox_channels: set[str] = set()  # channels never subscribed in Redis

    def new_inbox_channel(self, inbox: asyncio.Queue, prefix: str = "inbox.") -> str:
        """A channel name whose messages (its groups') go straight into ``inbox``."""
        channel = f"{self.prefix}{prefix}{uuid.uuid4().hex}"
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

    def _get_layer(self) -> InboxPubSubLoopLayer:
        loop = asyncio.get_running_loop()
        layer = self._layers.get(loop)
        if layer is None:
            layer = InboxPubSubLoopLayer(*self._args, **self._kwargs, channel_layer=self)
            self._layers[loop] = layer
            from channels_redis.utils import _wrap_close

            _wrap_close(self, loop)
        return layer
