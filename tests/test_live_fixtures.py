"""The shared live-test fixtures do what other tests rely on them to do.

Each live test goes through real daphne processes, the project's real ASGI
application and real Redis: the same path a browser takes.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
import redis
from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings

from devtools.daphne import DaphneServer, database_url_for
from devtools.processes import BASE_DIR
from devtools.redis_server import RedisServer
from orders.actions import transition_order
from orders.models import OrderEvent
from tests.support.fixtures import delete_prefixed_keys, status_path
from tests.support.live import group_member_count, ws_connect, ws_recv, ws_recv_until, ws_send
from tests.support.sse import sse_frames, sse_next


def last_event_id(order: Any) -> int:
    return OrderEvent.objects.filter(order=order).order_by("-id").values_list("id", flat=True)[0]


def is_event(frame: dict[str, Any]) -> bool:
    return frame.get("type") == "event"


# -- run-wide set-up --------------------------------------------------------------------


def test_the_channel_layer_uses_this_runs_prefix_here_and_in_child_processes(
    channel_layer_prefix: str, redis_url: str
) -> None:
    assert channel_layer_prefix.startswith("bt-test-")
    assert settings.CHANNEL_LAYERS["default"]["CONFIG"]["prefix"] == channel_layer_prefix
    hosts = settings.CHANNEL_LAYERS["default"]["CONFIG"]["hosts"]
    # Pointed at this run's Redis, keeping each host's options (timeouts).
    assert [host["address"] for host in hosts] == [redis_url]
    assert all(host["socket_connect_timeout"] == 2 for host in hosts)
    assert os.environ["CHANNEL_LAYER_PREFIX"] == channel_layer_prefix
    assert os.environ["REDIS_URL"] == redis_url


@pytest.mark.asyncio
async def test_deleting_the_runs_keys_leaves_other_prefixes_alone(
    channel_layer_prefix: str, redis_url: str
) -> None:
    client = redis.Redis.from_url(redis_url)
    # What RedisChannelLayer leaves behind (the pubsub layer stores no keys).
    client.set(f"{channel_layer_prefix}:group:order.1", "x", ex=60)
    client.set("someone-else:group:order.1", "x", ex=60)
    try:
        assert list(client.scan_iter(match=f"{channel_layer_prefix}*"))

        deleted = await sync_to_async(delete_prefixed_keys)(redis_url, channel_layer_prefix)

        assert deleted >= 1
        assert not list(client.scan_iter(match=f"{channel_layer_prefix}*"))
        assert client.get("someone-else:group:order.1") == b"x"
    finally:
        client.delete("someone-else:group:order.1")
        client.close()


@pytest.mark.asyncio
async def test_layer_on_private_redis_moves_this_processs_layer_off_the_shared_one(
    layer_on_private_redis: RedisServer, channel_layer_prefix: str, redis_url: str
) -> None:
    layer = get_channel_layer()
    channel = await layer.new_channel()
    await layer.group_add("order.7", channel)
    try:
        private = layer_on_private_redis.url
        assert await group_member_count(private, channel_layer_prefix, "order.7") == 1
        assert await group_member_count(redis_url, channel_layer_prefix, "order.7") == 0
    finally:
        await layer.group_discard("order.7", channel)
        await layer.flush()


def test_database_url_for_sqlite_and_postgres_points_at_the_named_database() -> None:
    sqlite = {"ENGINE": "django.db.backends.sqlite3", "NAME": "/srv/bt/.test-db-1.sqlite3"}
    assert database_url_for(sqlite) == "sqlite:////srv/bt/.test-db-1.sqlite3"

    postgres = {"ENGINE": "django.db.backends.postgresql", "NAME": "test_shop"}
    assert (
        database_url_for(postgres, "postgres://u:p%40ss@db:5433/shop?sslmode=require")
        == "postgres://u:p%40ss@db:5433/test_shop?sslmode=require"
    )
    postgres.update(USER="postgres", HOST="127.0.0.1", PORT="5432", PASSWORD="")
    assert database_url_for(postgres) == "postgres://postgres@127.0.0.1:5432/test_shop"

    with pytest.raises(ValueError, match="in-memory"):
        database_url_for({"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"})


# -- data factories ---------------------------------------------------------------------


def test_status_path_follows_the_transition_table() -> None:
    assert status_path("placed") == []
    assert status_path("cancelled") == ["cancelled"]
    assert status_path("returned") == ["paid", "packed", "shipped", "delivered", "returned"]
    with pytest.raises(ValueError):
        status_path("lost")


@pytest.mark.django_db
def test_make_order_goes_through_the_real_actions_and_logs_each_step(
    alice: Any, make_order: Callable[..., Any]
) -> None:
    order = make_order(alice, "shipped", quantity=2)

    assert order.status == "shipped"
    assert order.item_count == 2
    events = list(OrderEvent.objects.filter(order=order).values_list("type", "data__status"))
    assert events == [
        ("order.created", "placed"),
        ("order.status_changed", "paid"),
        ("order.status_changed", "packed"),
        ("order.status_changed", "shipped"),
    ]


# -- SSE parsing --------------------------------------------------------------------------


async def lines(*items: str) -> AsyncIterator[str]:
    for item in items:
        yield item


@pytest.mark.asyncio
async def test_sse_frames_parses_fields_multiline_data_and_comments() -> None:
    stream = lines(
        "retry: 2000", "",
        ": heartbeat", "",
        "id: 5", "event: order.status_changed", 'data: {"a":', "data: 1}", "",
        "data:no-space", "",
    )  # fmt: skip
    frames = [frame async for frame in sse_frames(stream, comments=True)]

    assert frames[0].retry == 2000 and frames[0].data == ""
    assert frames[1].comment == "heartbeat"
    assert (frames[2].id, frames[2].event, frames[2].json()) == (
        "5",
        "order.status_changed",
        {"a": 1},
    )
    assert (frames[3].event, frames[3].data) == ("message", "no-space")
    assert len(frames) == 4


# -- live servers ----------------------------------------------------------------------


@pytest.mark.live
@pytest.mark.django_db(transaction=True)
def test_the_shared_daphne_serves_the_real_application(daphne_server: DaphneServer) -> None:
    response = httpx.get(daphne_server.url + "/login/", timeout=10)
    assert response.status_code == 200
    assert "csrftoken" in response.cookies


@pytest.mark.live
@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
async def test_a_signed_in_websocket_follows_an_order_saved_in_the_test(
    daphne_server: DaphneServer,
    alice: Any,
    make_order: Callable[..., Any],
    login_cookies: Callable[[Any], dict[str, str]],
) -> None:
    order = await sync_to_async(make_order)(alice)
    cursor = await sync_to_async(last_event_id)(order)
    cookies = await sync_to_async(login_cookies)(alice)

    async with await ws_connect(daphne_server, cookies=cookies) as ws:
        await ws_send(ws, {"action": "subscribe", "stream": f"order:{order.pk}", "after": cursor})
        assert await ws_recv(ws) == {"type": "subscribed", "stream": f"order:{order.pk}"}

        await sync_to_async(transition_order)(order, "paid")

        frame, _skipped = await ws_recv_until(ws, is_event)
        assert frame["stream"] == f"order:{order.pk}"
        assert frame["event"]["order"]["status"] == "paid"
        assert frame["event"]["id"] > cursor


@pytest.mark.live
@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
async def test_without_the_session_cookie_the_same_socket_is_anonymous(
    daphne_server: DaphneServer,
) -> None:
    async with await ws_connect(daphne_server) as ws:
        await ws_send(ws, {"action": "subscribe", "stream": "mine"})
        frame = await ws_recv(ws)
    assert (frame["type"], frame["code"]) == ("error", "unauthenticated")


@pytest.mark.live
@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
async def test_an_sse_client_reads_the_backlog_and_live_events(
    daphne_server: DaphneServer,
    alice: Any,
    make_order: Callable[..., Any],
    login_cookies: Callable[[Any], dict[str, str]],
) -> None:
    order = await sync_to_async(make_order)(alice, "paid")
    cookies = await sync_to_async(login_cookies)(alice)
    url = f"{daphne_server.url}/events/stream/?stream=order:{order.pk}&after=0"

    async with (
        httpx.AsyncClient(cookies=cookies, timeout=10) as client,
        client.stream("GET", url) as response,
    ):
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        frames = sse_frames(response.aiter_lines())
        assert (await sse_next(frames)).retry is not None
        backlog = [await sse_next(frames), await sse_next(frames)]
        assert [f.json()["order"]["status"] for f in backlog] == ["placed", "paid"]

        await sync_to_async(transition_order)(order, "packed")

        live_frame = await sse_next(frames)
        assert live_frame.event == "order.status_changed"
        assert live_frame.json()["order"]["status"] == "packed"
        assert int(live_frame.id) > int(backlog[-1].id)


@pytest.mark.live
@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
async def test_two_private_servers_on_one_redis_both_deliver_an_event(
    start_daphne: Callable[..., DaphneServer],
    staff_user: Any,
    alice: Any,
    make_order: Callable[..., Any],
    login_cookies: Callable[[Any], dict[str, str]],
) -> None:
    first = await sync_to_async(start_daphne)(name="first")
    second = await sync_to_async(start_daphne)(name="second")
    assert first.port != second.port
    cookies = await sync_to_async(login_cookies)(staff_user)

    async with (
        await ws_connect(first, cookies=cookies) as ws1,
        await ws_connect(second, cookies=cookies) as ws2,
    ):
        for ws in (ws1, ws2):
            await ws_send(ws, {"action": "subscribe", "stream": "staff", "after": 0})
            assert (await ws_recv(ws))["type"] == "subscribed"

        order = await sync_to_async(make_order)(alice)

        for ws in (ws1, ws2):
            frame, _ = await ws_recv_until(
                ws, lambda f: is_event(f) and f["event"]["order"]["id"] == order.pk
            )
            assert frame["event"]["type"] == "order.created"


@pytest.mark.live
@pytest.mark.django_db(transaction=True)
def test_a_private_server_can_be_killed_and_restarted_on_its_port(
    start_daphne: Callable[..., DaphneServer],
) -> None:
    server = start_daphne(name="victim")
    port = server.port

    server.kill()
    with pytest.raises(httpx.ConnectError):
        httpx.get(server.url + "/login/", timeout=2)

    server.start()
    assert server.port == port
    assert httpx.get(server.url + "/login/", timeout=10).status_code == 200


@pytest.mark.live
@pytest.mark.django_db(transaction=True)
def test_a_server_that_cannot_start_reports_its_log(
    start_daphne: Callable[..., DaphneServer],
) -> None:
    with pytest.raises(RuntimeError, match="exited at start-up") as info:
        start_daphne(name="broken", CHANNEL_LAYER="carrier-pigeon")
    assert "CHANNEL_LAYER must be one of" in str(info.value)


def test_worker_processes_send_no_mail_unless_a_test_says_so(daphne_env: dict[str, str]) -> None:
    """``daphne_env`` (daphne, ``start_worker``, ``start_deliver_worker``) drops
    e-mail: with DEBUG=0 the default ``smtp://localhost:25`` would be retried and
    logged as "connection refused" by every deliver worker."""
    probe = "from django.conf import settings; print(settings.EMAIL_BACKEND)"
    backend = subprocess.run(  # noqa: S603 - our own interpreter and manage.py
        [sys.executable, "manage.py", "shell", "--verbosity", "0", "-c", probe],
        cwd=BASE_DIR,
        env={**os.environ, **daphne_env},
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout.strip()
    assert backend == "django.core.mail.backends.dummy.EmailBackend"
