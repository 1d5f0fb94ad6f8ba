"""The WebSocket transport at ``ws/live/``.

Client actions (JSON text frames)::

    {"action": "subscribe", "stream": "order:42", "after": 1200, "token": "..."}
    {"action": "unsubscribe", "stream": "order:42"}
    {"action": "ping"}

Server frames: ``subscribed``, ``event``, ``reset``, ``unsubscribed``, ``pong``
and ``error`` (``ClientError.frame``: a ``code`` from ``booktime.errors``, the
same codes the HTTP transports and the REST API use). Bad input never closes
the socket. When access to a followed stream ends, its subscription ends with
an ``error`` frame; when the socket's sign-in itself ends (logout, password
change, deactivation, a deleted API token) it is closed with **4401**
(``notifications.access``).

This is channels' *async* JSON consumer, not the sync
``JsonWebsocketConsumer``: the sync one runs every handler on one shared
thread per process, so each delivery to each socket queues behind all others
(docs/architecture.md, docs/performance.md).
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qs

from channels.exceptions import StopConsumer
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.conf import settings

from booktime.errors import ClientError
from booktime.limits import InputError, load_json
from notifications import metrics
from notifications.access import SIGNED_OUT_CLOSE_CODE, PrincipalEnded
from notifications.auth import tracking_token_for
from notifications.log import parse_cursor
from notifications.resume import FollowingMixin, Outgoing
from notifications.streams import StreamError, Subscription

# Close code for a client that stopped reading (see notifications.backpressure).
SLOW_CLIENT_CLOSE_CODE = 4008


class LiveConsumer(FollowingMixin, AsyncJsonWebsocketConsumer):
    """Streams order events to browsers; one socket may follow many streams."""

    async def connect(self) -> None:
        """Accept everyone: each subscribe is authorized on its own."""
        await self.accept()
        metrics.HANDSHAKES.inc()
        query = parse_qs(self.scope.get("query_string", b"").decode("latin-1"))
        if "token" in query:  # access logs keep URLs: never a credential there
            error = ClientError(
                "bad_token",
                "send a tracking token in the subscribe frame, not in the URL",
                field="token",
            )
            await self.send_json(error.frame())

    async def websocket_disconnect(self, message: dict[str, Any]) -> None:
        """channels' version without its ``aclose_old_connections()`` hop to the
        database thread (one per closed socket; see ``FollowingMixin.dispatch``)."""
        await self.disconnect(message.get("code", 1000))
        raise StopConsumer()

    async def disconnect(self, code: int) -> None:
        """Leave every group so no membership outlives the socket."""
        await self.unfollow_all()

    # -- incoming frames -------------------------------------------------------

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        """Parse and dispatch one client frame; answer bad input with an error frame."""
        try:
            content = self.parse_frame(text_data, bytes_data)
            action = content.get("action")
            handler = (
                {
                    "subscribe": self.action_subscribe,
                    "unsubscribe": self.action_unsubscribe,
                    "ping": self.action_ping,
                }.get(action)
                if isinstance(action, str)
                else None
            )
            if handler is None:
                raise ClientError(
                    "unknown_action", "action must be one of subscribe, unsubscribe, ping"
                )
            await handler(content)
        except ClientError as exc:
            await self.send_json(exc.frame())

    @staticmethod
    def parse_frame(text_data: str | None, bytes_data: bytes | None) -> dict[str, Any]:
        if text_data is None:
            raise ClientError("bad_frame", "send JSON in text frames, not binary")
        limit = settings.MAX_WEBSOCKET_FRAME_BYTES
        if len(text_data) > limit or len(text_data.encode("utf-8", "surrogatepass")) > limit:
            raise ClientError("too_large", f"frames are limited to {limit} bytes")
        try:
            # Bounded nesting, numbers and strings (booktime.limits): a frame
            # nested 1,000 deep is an error frame, not a RecursionError.
            content = load_json(text_data)
        except InputError as exc:
            raise ClientError("bad_json", f"frame is not acceptable JSON: {exc}") from None
        if not isinstance(content, dict):
            raise ClientError("bad_json", "frame must be a JSON object")
        return content

    async def action_subscribe(self, content: dict[str, Any]) -> None:
        """Follow a stream; a refusal's error frame names the stream."""
        stream = content.get("stream")
        try:
            await self.subscribe(stream, content)
        except ClientError as exc:
            await self.send_json(exc.frame(stream=_safe(stream)))
            if isinstance(exc, PrincipalEnded):
                await self.end_principal()  # the socket's sign-in is gone: 4401

    async def subscribe(self, stream: Any, content: dict[str, Any]) -> None:
        after = parse_cursor(content.get("after"), "after", allow_text=False)
        token = tracking_token_for(self.scope, stream, content.get("token"))
        if token is not None and not isinstance(token, str):
            raise ClientError("bad_token", "token must be a string", field="token")
        group = self.group_known(stream)
        if (
            group is not None
            and group not in self.followed
            and len(self.followed) < settings.MAX_SUBSCRIPTIONS_PER_SOCKET
        ):
            await self.open_stream(stream, token, after)  # one database hop
            return
        subscription = await self.authorize_now(stream, token)
        if subscription.group in self.followed:
            await self.send_json({"type": "subscribed", "stream": subscription.stream})
            return
        if len(self.followed) >= settings.MAX_SUBSCRIPTIONS_PER_SOCKET:
            raise ClientError(
                "too_many_subscriptions",
                f"at most {settings.MAX_SUBSCRIPTIONS_PER_SOCKET} streams per connection",
            )
        await self.follow(subscription, after)

    async def action_unsubscribe(self, content: dict[str, Any]) -> None:
        stream = content.get("stream")
        group = next((g for g, f in self.followed.items() if f.subscription.stream == stream), None)
        if group is None:
            error = ClientError("not_subscribed", "not subscribed to that stream")
            await self.send_json(error.frame(stream=_safe(stream)))
            return
        await self.unfollow(group)
        await self.send_json({"type": "unsubscribed", "stream": stream})

    async def action_ping(self, content: dict[str, Any]) -> None:
        await self.send_json({"type": "pong"})

    # -- FollowingMixin hooks -----------------------------------------------

    async def send_events(self, subscription: Subscription, events: list[Outgoing]) -> None:
        # The envelope arrives JSON-encoded once by the publisher; wrap, don't re-encode.
        prefix = '{"type":"event","stream":' + json.dumps(subscription.stream) + ',"event":'
        for event in events:
            await self.send(text_data=prefix + event.text + "}")

    async def joined(self, subscription: Subscription) -> None:
        """``subscribed`` is sent only once the group is joined, so a change
        the client makes right after seeing it cannot be missed."""
        await self.send_json({"type": "subscribed", "stream": subscription.stream})

    async def cut_off(self) -> None:
        """4008: too far behind; reconnect and subscribe with your last event id."""
        await self.close(code=SLOW_CLIENT_CLOSE_CODE)

    async def send_reset(self, subscription: Subscription, cursor: int) -> None:
        await self.send_json({"type": "reset", "stream": subscription.stream, "cursor": cursor})

    async def revoke(self, subscription: Subscription, error: StreamError) -> None:
        """Access ended (notifications.access): leave the group, then say so."""
        await self.unfollow(subscription.group)
        await self.send_json(error.frame(stream=subscription.stream))

    async def principal_ended(self) -> None:
        """4401: the session, API token or user is gone; sign in again."""
        await self.close(code=SIGNED_OUT_CLOSE_CODE)


def _safe(stream: Any) -> str | None:
    """Echo a stream name back only if it is a short string."""
    return stream if isinstance(stream, str) and len(stream) <= 64 else None
