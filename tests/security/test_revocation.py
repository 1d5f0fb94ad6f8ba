"""Access follows the current truth on streams already open (notifications.access).

Every change that ends a right to read — the order's customer changed,
``is_staff`` removed, the user deactivated or deleted, the password changed,
the session ended (the real logout view, a flush, expiry), the API token
deleted, the tracking link revoked — stops the open WebSocket, SSE stream and
held long-poll of that principal within 2 s, through a real daphne on real
Redis: WebSocket ``error`` frame (and close 4401 when the sign-in itself
ended), SSE ``event: error`` then the end of the response, long-poll 401/403
JSON. A principal the change does not concern keeps streaming. Then: the
``mine`` stream of a customer who lost an order no longer carries it, a new
subscribe on an old socket is refused, a change that sends no signal is
caught by the periodic re-check, re-checks lose no event, and a save never
fails because Redis is down.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import httpx
import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth import get_user_model
from django.contrib.sessions.backends.db import SessionStore
from django.contrib.sessions.models import Session
from django.utils import timezone
from rest_framework.authtoken.models import Token

from devtools.daphne import DaphneServer
from orders.access import make_tracking_token
from orders.actions import revoke_tracking_links, transition_order
from orders.models import Order, OrderEvent
from tests.support.fixtures import password_hash
from tests.support.live import (
    async_wait_until,
    cookie_header,
    ws_recv_until,
    ws_send,
)
from tests.support.sse import sse_frames, sse_next

pytestmark = [pytest.mark.asyncio, pytest.mark.live, pytest.mark.django_db(transaction=True)]

LIMIT_SECONDS = 2.0  # the promise: refused within 2 s of the change
TRANSPORTS = ("ws", "sse", "long_poll")
TIMINGS: list[tuple[str, float]] = []  # (case, seconds from change to refusal), for the report


# -- who follows what ---------------------------------------------------------------


@dataclass
class Credentials:
    """A principal as a client presents it: cookies, headers, a tracking token."""

    cookies: dict[str, str] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    tracking: str | None = None


class Follower:
    """One open stream of one principal over one transport, on a real daphne."""

    def __init__(
        self, transport: str, server: DaphneServer, who: Credentials, stream: str, after: int
    ) -> None:
        self.transport, self.server, self.who = transport, server, who
        self.stream, self.after = stream, after
        self.stack = contextlib.AsyncExitStack()
        self.ws: Any = None
        self.frames: Any = None
        self.poll: asyncio.Task[httpx.Response] | None = None

    def http_client(self) -> httpx.AsyncClient:
        headers = dict(self.who.headers)
        if self.who.tracking:
            headers["X-Tracking-Token"] = self.who.tracking
        return httpx.AsyncClient(
            base_url=self.server.url,
            cookies=self.who.cookies,
            headers=headers,
            timeout=httpx.Timeout(10.0, read=None),
        )

    def params(self, **extra: str) -> dict[str, str]:
        return {"stream": self.stream, "after": str(self.after), **extra}

    async def open(self, wait_until_held: bool = False) -> Follower:
        """Open the stream and return once it is joined (a long-poll: once the
        server counts its subscription, which it does after joining the
        principal's access group; ``wait_until_held``)."""
        if self.transport == "ws":
            from websockets.asyncio.client import connect

            self.ws = await self.stack.enter_async_context(
                connect(
                    self.server.ws_url + "/ws/live/",
                    origin=self.server.origin,
                    additional_headers={**cookie_header(self.who.cookies), **self.who.headers},
                    open_timeout=10,
                    close_timeout=2,
                )
            )
            frame = {"action": "subscribe", "stream": self.stream, "after": self.after}
            if self.who.tracking:
                frame["token"] = self.who.tracking
            await ws_send(self.ws, frame)
            answer, _ = await ws_recv_until(self.ws, lambda f: f["type"] in ("subscribed", "error"))
            assert answer["type"] == "subscribed", answer
        elif self.transport == "sse":
            client = await self.stack.enter_async_context(self.http_client())
            response = await self.stack.enter_async_context(
                client.stream("GET", "/events/stream/", params=self.params())
            )
            assert response.status_code == 200, await response.aread()
            self.frames = sse_frames(response.aiter_lines())
            assert (await sse_next(self.frames)).retry is not None  # sent once joined
        else:
            client = await self.stack.enter_async_context(self.http_client())
            before = await self.subscriptions()
            self.poll = asyncio.get_running_loop().create_task(
                client.get("/events/poll/", params=self.params(timeout="30"))
            )
            if wait_until_held:
                await async_wait_until(
                    lambda: self._held(before), 10, "the server to count the long-poll"
                )
        return self

    async def subscriptions(self) -> float:
        """Streams the server follows (``booktime_subscriptions`` on /metrics):
        counted once a stream has joined its groups, the access group included.
        (Per-user access groups are joined in the process only, heard through
        one pattern subscription: Redis cannot show the membership.)"""
        async with httpx.AsyncClient(base_url=self.server.url) as client:
            text = (await client.get("/metrics")).text
        return sum(
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith("booktime_subscriptions{")
        )

    async def _held(self, before: float) -> bool:
        if self.poll is not None and self.poll.done():
            raise AssertionError(f"the long-poll answered early: {self.poll.result().text}")
        return await self.subscriptions() > before

    async def refused(self, timeout: float) -> tuple[str, int | None]:
        """(error code, WebSocket close code or None) once access is refused."""
        if self.transport == "ws":
            error, _ = await ws_recv_until(self.ws, lambda f: f["type"] == "error", timeout)
            assert error["stream"] == self.stream, error
            return error["code"], None
        if self.transport == "sse":
            deadline = time.monotonic() + timeout
            while True:
                frame = await sse_next(self.frames, deadline - time.monotonic())
                if frame.event == "error":
                    data = frame.json()
                    assert data["type"] == "error" and data["stream"] == self.stream, data
                    return data["code"], None
        assert self.poll is not None
        response = await asyncio.wait_for(self.poll, timeout)
        assert response.status_code in (401, 403), response.text
        assert response.headers["content-type"] == "application/json"
        error = response.json()["error"]
        assert {401: "unauthenticated", 403: "forbidden"}[response.status_code] == error["code"]
        return error["code"], None

    async def ended(self, timeout: float = 5.0) -> int | None:
        """After a refusal: the WebSocket's close code, or None once an SSE response ended."""
        from websockets.exceptions import ConnectionClosed

        if self.transport == "ws":
            try:
                while True:
                    await asyncio.wait_for(self.ws.recv(), timeout)
            except ConnectionClosed as exc:
                return exc.rcvd.code if exc.rcvd is not None else None
        if self.transport == "sse":
            with pytest.raises(StopAsyncIteration):
                await sse_next(self.frames, timeout)
        return None

    async def still_open(self) -> None:
        """A WebSocket whose one subscription ended keeps working."""
        await ws_send(self.ws, {"action": "ping"})
        frame, _ = await ws_recv_until(self.ws, lambda f: f["type"] == "pong")
        assert frame == {"type": "pong"}

    async def next_event(self, timeout: float = 10.0) -> dict[str, Any]:
        if self.transport == "ws":
            frame, _ = await ws_recv_until(self.ws, lambda f: f["type"] == "event", timeout)
            assert frame["stream"] == self.stream
            return frame["event"]
        if self.transport == "sse":
            deadline = time.monotonic() + timeout
            while True:
                frame = await sse_next(self.frames, deadline - time.monotonic())
                assert frame.event != "error", frame.data
                if frame.event.startswith("order."):
                    return frame.json()
        assert self.poll is not None
        response = await asyncio.wait_for(self.poll, timeout)
        assert response.status_code == 200, response.text
        return response.json()["events"][0]

    async def close(self) -> None:
        if self.poll is not None:
            self.poll.cancel()
            await asyncio.gather(self.poll, return_exceptions=True)
        await self.stack.aclose()


# -- the world each case starts from ------------------------------------------------------


def cookies_of(user: Any, expires_in: float | None = None) -> dict[str, str]:
    """A new session for ``user`` (a real, stored one), optionally expiring soon."""
    from tests.support.asgi import session_cookies

    cookies = session_cookies(user)
    if expires_in is not None:
        key = next(iter(cookies.values()))
        Session.objects.filter(session_key=key).update(
            expire_date=timezone.now() + timedelta(seconds=expires_in)
        )
    return cookies


def session_key(who: Credentials) -> str:
    return next(iter(who.cookies.values()))


def token_of(user: Any) -> Credentials:
    key = Token.objects.create(user=user).key
    return Credentials(headers={"Authorization": f"Token {key}"})


@dataclass
class World:
    alice: Any
    bob: Any
    staff: Any
    order: Any  # alice's
    cursor: int  # the newest event id before the clients open

    def user(self, username: str) -> Any:
        return get_user_model().objects.get(username=username)


@dataclass
class Case:
    """One change, who it must cut off and who it must not."""

    affected: Callable[[World], tuple[Credentials, str]]  # (who, stream)
    unaffected: Callable[[World], tuple[Credentials, str]]
    # Makes the change; may return when it took effect (time.time()), if not at once.
    change: Callable[[World, Credentials, DaphneServer], float | None]
    code: str  # forbidden / unauthenticated
    signs_out: bool  # the principal itself ended: WebSocket close 4401
    news: Callable[[World], Any]  # an event the unaffected stream carries


def session(username: str, stream: str = "order", expires_in: float | None = None) -> Any:
    def make(world: World) -> tuple[Credentials, str]:
        name = f"order:{world.order.pk}" if stream == "order" else stream
        return Credentials(cookies=cookies_of(world.user(username), expires_in)), name

    return make


def api_token(username: str) -> Any:
    def make(world: World) -> tuple[Credentials, str]:
        return token_of(world.user(username)), f"order:{world.order.pk}"

    return make


def tracking_link(world: World) -> tuple[Credentials, str]:
    order = Order.objects.get(pk=world.order.pk)
    return Credentials(tracking=make_tracking_token(order)), f"order:{order.pk}"


def ship_the_order(world: World) -> Any:
    return transition_order(world.order.pk, "paid")


def save_user(username: str, **changes: Any) -> Callable[[World, Credentials, Any], None]:
    def change(world: World, who: Credentials, server: Any) -> None:
        user = world.user(username)
        for name, value in changes.items():
            setattr(user, name, value)
        user.save()

    return change


def change_customer(world: World, who: Credentials, server: Any) -> None:
    order = Order.objects.get(pk=world.order.pk)
    order.customer = world.bob
    order.save()


def change_password(world: World, who: Credentials, server: Any) -> float:
    alice = world.user("alice")
    alice.set_password("another-long-passphrase")  # hashing takes a while: not the change
    changed_at = time.time()
    alice.save()
    return changed_at


def delete_user(world: World, who: Credentials, server: Any) -> None:
    world.user("carol").delete()


def log_out(world: World, who: Credentials, server: DaphneServer) -> None:
    """The real logout view on the daphne the streams are on (GET for the form, POST)."""
    with httpx.Client(base_url=server.url, cookies=who.cookies, timeout=10) as client:
        page = client.get("/logout/")
        assert page.status_code == 200, page.text
        csrf = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text).group(1)
        answer = client.post("/logout/", data={"csrfmiddlewaretoken": csrf})
        assert answer.status_code == 302 and answer.headers["location"].endswith("/logged-out/")


def flush_session(world: World, who: Credentials, server: Any) -> None:
    SessionStore(session_key=session_key(who)).flush()


def let_session_expire(world: World, who: Credentials, server: Any) -> float:
    """Nothing to do but wait: the session's expiry date is the change."""
    expires = Session.objects.get(session_key=session_key(who)).expire_date
    return expires.timestamp()


def delete_token(world: World, who: Credentials, server: Any) -> None:
    key = who.headers["Authorization"].removeprefix("Token ")
    Token.objects.get(key=key).delete()


def revoke_link(world: World, who: Credentials, server: Any) -> None:
    revoke_tracking_links(world.order.pk)


UNAUTH, FORBIDDEN = "unauthenticated", "forbidden"
CASES = {
    # An order given to another customer: its old owner's streams of it end.
    "customer_changed": Case(
        session("alice"), session("staff"), change_customer, FORBIDDEN, False, ship_the_order
    ),
    "staff_removed": Case(
        session("staff", "staff"),
        session("staff2", "staff"),
        save_user("staff", is_staff=False),
        FORBIDDEN,
        False,
        ship_the_order,
    ),
    "deactivated": Case(
        session("alice"),
        session("staff"),
        save_user("alice", is_active=False),
        UNAUTH,
        True,
        ship_the_order,
    ),
    "deleted": Case(
        session("carol", "mine"),
        session("alice", "mine"),
        delete_user,
        UNAUTH,
        True,
        ship_the_order,
    ),
    # The password: every session of alice ends; her API token does not.
    "password_changed": Case(
        session("alice"), api_token("alice"), change_password, UNAUTH, True, ship_the_order
    ),
    # One session ends; the same user's other session keeps streaming.
    "logout": Case(session("alice"), session("alice"), log_out, UNAUTH, True, ship_the_order),
    "session_flushed": Case(
        session("alice"), session("alice"), flush_session, UNAUTH, True, ship_the_order
    ),
    "session_expired": Case(
        session("alice", expires_in=2.0),
        session("alice"),
        let_session_expire,
        UNAUTH,
        True,
        ship_the_order,
    ),
    "api_token_deleted": Case(
        api_token("alice"), session("alice"), delete_token, UNAUTH, True, ship_the_order
    ),
    "tracking_link_revoked": Case(
        tracking_link, session("alice"), revoke_link, FORBIDDEN, False, ship_the_order
    ),
}


@pytest.fixture
def world(alice: Any, bob: Any, staff_user: Any, make_order: Any) -> World:
    for username, is_staff in (("staff2", True), ("carol", False)):
        user = get_user_model()(username=username, is_staff=is_staff)
        user.password = password_hash()  # computed once per run
        user.save()
    order = make_order(alice)
    return World(alice, bob, staff_user, order, OrderEvent.objects.order_by("id").last().id)


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("case", CASES)
async def test_a_change_that_ends_a_right_to_read_stops_open_streams_within_2_s(
    daphne_server: DaphneServer, world: World, case: str, transport: str
) -> None:
    spec = CASES[case]
    who, stream = await sync_to_async(spec.affected)(world)
    other, other_stream = await sync_to_async(spec.unaffected)(world)
    affected = await Follower(transport, daphne_server, who, stream, world.cursor).open(
        wait_until_held=True
    )
    bystander = await Follower(transport, daphne_server, other, other_stream, world.cursor).open()
    try:
        changed_at = time.time()
        when = await sync_to_async(spec.change)(world, who, daphne_server)
        if when is not None:
            changed_at = when
        code, _ = await affected.refused(timeout=LIMIT_SECONDS + max(0.0, changed_at - time.time()))
        took = time.time() - changed_at
        TIMINGS.append((f"{case}/{transport}", took))
        assert code == spec.code
        assert took < LIMIT_SECONDS, f"refused after {took:.2f} s"
        if transport == "ws":
            if spec.signs_out:
                assert await affected.ended() == 4401
            else:
                await affected.still_open()
        elif transport == "sse":
            await affected.ended()
        # The change concerned someone else: this stream goes on.
        await sync_to_async(spec.news)(world)
        event = await bystander.next_event()
        assert event["order"]["id"] == world.order.pk
    finally:
        await affected.close()
        await bystander.close()


# -- the rest of the rule ------------------------------------------------------------------


async def test_the_mine_stream_of_a_customer_who_lost_an_order_no_longer_carries_it(
    daphne_server: DaphneServer, world: World, make_order: Any
) -> None:
    kept = await sync_to_async(make_order)(world.alice)
    cursor = await sync_to_async(lambda: OrderEvent.objects.order_by("id").last().id)()
    alice = Credentials(cookies=await sync_to_async(cookies_of)(world.alice))
    bob = Credentials(cookies=await sync_to_async(cookies_of)(world.bob))
    alices = await Follower("ws", daphne_server, alice, "mine", cursor).open()
    bobs = await Follower("ws", daphne_server, bob, "mine", cursor).open()
    try:
        await sync_to_async(change_customer)(world, alice, daphne_server)
        moved = await sync_to_async(transition_order)(world.order.pk, "paid")
        await sync_to_async(transition_order)(kept.pk, "paid")
        # Events arrive in id order: alice's next one is her kept order's, not the moved one.
        assert (await alices.next_event())["order"]["id"] == kept.pk
        assert (await bobs.next_event())["order"]["id"] == moved.pk
    finally:
        await alices.close()
        await bobs.close()


async def test_a_new_subscribe_on_an_old_socket_follows_the_current_truth(
    daphne_server: DaphneServer, world: World
) -> None:
    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosed

    staff = Credentials(cookies=await sync_to_async(cookies_of)(world.staff))
    alice = Credentials(cookies=await sync_to_async(cookies_of)(world.alice))
    url = daphne_server.ws_url + "/ws/live/"
    origin = daphne_server.origin
    async with (
        connect(url, origin=origin, additional_headers=cookie_header(staff.cookies)) as staff_ws,
        connect(url, origin=origin, additional_headers=cookie_header(alice.cookies)) as alice_ws,
    ):
        # Opened while allowed, subscribed only after the change: refused.
        await sync_to_async(save_user("staff", is_staff=False))(world, staff, daphne_server)
        await ws_send(staff_ws, {"action": "subscribe", "stream": "staff"})
        frame, _ = await ws_recv_until(staff_ws, lambda f: f["type"] in ("error", "subscribed"))
        assert (frame["type"], frame["code"], frame["stream"]) == ("error", "forbidden", "staff")
        await sync_to_async(flush_session)(world, alice, daphne_server)
        await ws_send(alice_ws, {"action": "subscribe", "stream": "mine"})
        frame, _ = await ws_recv_until(alice_ws, lambda f: f["type"] in ("error", "subscribed"))
        assert (frame["type"], frame["code"], frame["stream"]) == ("error", UNAUTH, "mine")
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(alice_ws.recv(), 5)
        assert closed.value.rcvd.code == 4401


async def test_the_periodic_re_check_catches_a_change_that_sends_no_signal(
    start_daphne: Callable[..., DaphneServer], world: World
) -> None:
    server = await sync_to_async(start_daphne)(name="recheck", ACCESS_RECHECK_SECONDS="1")
    staff = Credentials(cookies=await sync_to_async(cookies_of)(world.staff))
    follower = await Follower("ws", server, staff, "staff", world.cursor).open()
    try:
        changed_at = time.monotonic()
        # QuerySet.update() sends no signal: only the timer (1 s ± 50 %) sees it.
        await sync_to_async(
            lambda: get_user_model().objects.filter(pk=world.staff.pk).update(is_staff=False)
        )()
        code, _ = await follower.refused(timeout=5)
        took = time.monotonic() - changed_at
        TIMINGS.append(("no_signal/ws (ACCESS_RECHECK_SECONDS=1)", took))
        assert code == FORBIDDEN and took < 1.5 + 0.5
    finally:
        await follower.close()


@pytest.mark.parametrize("transport", ("ws", "sse"))
async def test_re_checks_lose_and_reorder_no_event(
    daphne_server: DaphneServer, world: World, make_order: Any, transport: str
) -> None:
    """Re-checks run in dispatch order with live events: 20 changes, each followed
    by an access re-check of the same connection, all arrive once, in order."""
    staff = Credentials(cookies=await sync_to_async(cookies_of)(world.staff))
    follower = await Follower(transport, daphne_server, staff, "staff", world.cursor).open()
    orders = [await sync_to_async(make_order)(world.bob) for _ in range(4)]
    try:

        def churn() -> list[int]:
            ids = [order.events.first().id for order in orders]
            for i in range(5):
                for order in orders:
                    status = ["paid", "packed", "shipped", "delivered", "returned"][i]
                    ids.append(transition_order(order.pk, status).events.last().id)
                    staff = get_user_model().objects.get(pk=world.staff.pk)
                    staff.is_superuser = not staff.is_superuser  # a watched field: re-check
                    staff.save()
            return ids

        sent = await sync_to_async(churn)()
        received = [(await follower.next_event())["id"] for _ in sent]
        assert received == sorted(sent)
    finally:
        await follower.close()


async def test_a_save_does_not_fail_or_wait_long_when_redis_is_down(
    layer_on_private_redis: Any, world: World, caplog: pytest.LogCaptureFixture
) -> None:
    layer_on_private_redis.stop()

    def demote() -> float:
        started = time.monotonic()
        staff = get_user_model().objects.get(pk=world.staff.pk)
        staff.is_staff = False
        staff.save()
        return time.monotonic() - started

    took = await sync_to_async(demote)()
    assert (
        await sync_to_async(lambda: get_user_model().objects.get(pk=world.staff.pk).is_staff)()
        is False
    )
    assert took < 5
    assert "could not announce an access change" in caplog.text


@pytest.fixture(scope="module", autouse=True)
def _report_timings() -> Any:
    """Print how long each revocation took (``pytest -s`` shows it)."""
    yield
    if TIMINGS:
        worst = max(took for _, took in TIMINGS)
        lines = [f"  {case}: {took * 1000:.0f} ms" for case, took in TIMINGS]
        print("\nrevocation timings (change -> refusal):\n" + "\n".join(lines))
        print(f"  worst: {worst * 1000:.0f} ms over {len(TIMINGS)} cases")
