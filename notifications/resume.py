"""How a streaming consumer follows a stream without loss: the resume rule.

``FollowingMixin`` implements it once for the three transports (WebSocket,
SSE, long-poll): join the stream's group first, then send the stored events
after the client's cursor (``notifications.log``), then live events, dropping
any whose id is not above the last one sent (``LiveCursor``). Writes go
through ``deliver``, which cuts off a client that stopped reading
(``notifications.backpressure``). Outages are ``notifications.recovery``'s;
re-checking access on open streams is ``notifications.access``'s.

Transports implement the hooks ``send_events``, ``send_reset``, ``revoke``
and (optionally) ``joined``, ``cut_off`` and ``principal_ended``.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from typing import Any, NamedTuple

from channels.consumer import get_handler_name

from booktime.errors import OUTAGE_ERRORS, Unavailable
from notifications import metrics
from notifications.access import AccessMixin
from notifications.backpressure import buffered_bytes, drained, is_backed_up, transport_of
from notifications.hops import database_hop
from notifications.log import Backlog, LiveCursor, latest_event_id, read_backlog
from notifications.recovery import RecoveryMixin
from notifications.streams import Subscription, group_for

logger = logging.getLogger(__name__)


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


def _newest(subscription: Subscription) -> int:
    return latest_event_id()


def _first_page(subscription: Subscription, after: int | None) -> Backlog:
    # ``read_backlog`` looked up at call time (tests wrap it).
    return read_backlog(subscription, after)


class FollowingMixin(RecoveryMixin, AccessMixin):
    """Mixed into an async consumer; see the module docstring."""

    def setup_state(self, send: Any) -> None:
        """Every piece of per-connection state, set once before the first message
        (called from ``RecoveryMixin.__call__``)."""
        # The resume rule.
        self.followed: dict[str, Followed] = {}  # group -> stream followed through it
        # The slow-client bound: daphne's transport (None under other servers).
        self.transport = transport_of(send)
        self.was_cut_off = False
        # Outage recovery: messages from this process, and the background re-join.
        self.local_messages: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.rejoin_task: asyncio.Task | None = None
        # Access re-checks on open streams (notifications.access).
        self.setup_access()

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

    def answered_by(self, page: Backlog) -> bool:
        """True when the first backlog page ends the stream at once (a long-poll
        with events to answer): nothing is held open, so access is not watched
        (it was checked in the same hop as the read)."""
        return False

    # -- writing, bounded ----------------------------------------------------

    async def deliver(self, subscription: Subscription, events: list[Outgoing]) -> None:
        """``send_events`` unless the client has stopped reading; then cut it off."""
        if self.was_cut_off:
            return
        if is_backed_up(self.transport) and not await drained(self.transport):
            self.was_cut_off = True
            logger.warning(
                "cutting off a client that stopped reading (%d bytes waiting)",
                buffered_bytes(self.transport),
            )
            await self.cut_off()
            metrics.cut_off(self)
            return
        await self.send_events(subscription, events)
        metrics.delivered(self, len(events))

    # -- following -----------------------------------------------------------

    def group_known(self, stream: Any) -> str | None:
        """The group of ``stream`` if it can be joined before authorizing (see
        ``open_stream``), else None."""
        principal = self.principal
        return group_for(stream, None if principal.pending else principal.user_id)

    async def open_stream(
        self,
        stream: Any,
        token: str | None,
        after: int | None,
        admit: Callable[[Subscription], Awaitable[None]] | None = None,
    ) -> Followed:
        """Authorize ``stream`` and follow it from ``after``, in as few database
        hops as the resume rule allows. ``admit`` (a cap, a slot) runs after
        authorizing and before anything is sent.

        With a cursor and a group known by name (``group_known``): ONE hop. The
        group is joined first; then one hop resolves the principal, authorizes
        and reads the first backlog page. Nothing is sent before the verdict:
        live events wait in the inbox (handlers run in order) and a refusal
        leaves the group. "From now" (no cursor) means the newest event
        *before* the join, so it is read in the authorizing hop, then the group
        is joined and the backlog after it read: two hops. Profiled: three
        thread hops per subscribe were 27-37 % of a handshake
        (docs/performance.md)."""
        group = self.group_known(stream)
        if after is None or group is None or group in self.followed:
            subscription, newest = await self.authorize_then(
                stream, token, _newest if after is None else None
            )
            if admit is not None:
                await admit(subscription)
            return await self.follow(subscription, newest if after is None else after)
        await self.join_group(group)
        try:
            subscription, page = await self.authorize_then(
                stream, token, partial(_first_page, after=after)
            )
            if subscription.group != group:  # group_for and authorize disagree: a bug
                raise RuntimeError(f"{stream!r} was granted {subscription.group}, not {group}")
            if admit is not None:
                await admit(subscription)
        except BaseException:
            if group not in self.followed:
                await self.unfollow(group)
            raise
        followed = Followed(subscription, LiveCursor(0))
        self.followed[group] = followed
        if not self.answered_by(page):
            await self.watch_access()
        metrics.subscribed(subscription)
        await self.joined(subscription)
        try:
            await self.backfill(followed, after, page)
        except OUTAGE_ERRORS as exc:
            await self.unfollow(group)
            raise Unavailable() from exc
        return followed

    async def follow(self, subscription: Subscription, after: int | None) -> Followed:
        """Join the group, then backfill from ``after``; live events follow."""
        try:
            if after is None:
                # "From now" means from the newest event *before* joining: events
                # committed while we join are then backfilled, not lost.
                after = await database_hop(latest_event_id)
        except OUTAGE_ERRORS as exc:
            raise Unavailable() from exc
        followed = Followed(subscription, LiveCursor(0))
        self.followed[subscription.group] = followed
        await self.join_group(subscription.group)
        # Before ``joined``: a change the client makes once it sees the stream
        # open is heard (notifications.access).
        await self.watch_access()
        metrics.subscribed(subscription)
        await self.joined(subscription)
        try:
            await self.backfill(followed, after)
        except OUTAGE_ERRORS as exc:
            await self.unfollow(subscription.group)
            raise Unavailable() from exc
        return followed

    async def unfollow(self, group: str) -> None:
        metrics.unsubscribed(self.followed.pop(group, None))
        try:
            await self.channel_layer.group_discard(group, self.channel_name)
        except Exception:  # noqa: BLE001 - layer down; the group entry expires
            logger.debug("group_discard failed for %s", group, exc_info=True)

    async def unfollow_all(self) -> None:
        self.stop_recovery()
        await self.stop_access()
        for group in list(self.followed):
            await self.unfollow(group)

    async def backfill(
        self, followed: Followed, after: int | None, page: Backlog | None = None
    ) -> None:
        """Send stored events after ``after``, or a reset: one bounded page
        (``BACKFILL_PAGE_SIZE`` rows) at a time, each sent before the next is
        read, and none read once the subscription has ended (a long-poll that
        answered with its first page, a client cut off or unsubscribed).
        ``page``: the first page, already read (``open_stream``)."""
        while True:
            if page is None:
                page = await database_hop(read_backlog, followed.subscription, after)
            if page.reset:
                followed.cursor.advance(page.cursor)
                await self.send_reset(followed.subscription, page.cursor)
                metrics.reset(self)
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
            if self.was_cut_off or self.followed.get(followed.subscription.group) is not followed:
                return
            after, page = page.cursor, None

    async def catch_up(self) -> None:
        """After an outage: re-check access (announcements sent meanwhile were
        lost), then every followed stream's events after its cursor."""
        await self.recheck_access()
        for followed in list(self.followed.values()):
            await self.backfill(followed, followed.cursor.last_sent)

    # -- channel-layer handlers ----------------------------------------------

    async def dispatch(self, message: dict[str, Any]) -> None:
        """channels' dispatch without its ``aclose_old_connections()`` hop.

        channels runs that hop to the database thread before *every* handler.
        These consumers touch the database only through
        ``notifications.hops.database_hop``, whose trips close stale
        connections before they run, so the hop is redundant; under fan-out
        it cost more server CPU than delivering the event (bench,
        docs/performance.md).
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
