"""A client that stops reading is cut off after a bounded buffer, does not
delay anyone else, and resumes with its cursor without losing an event.

Runs a private daphne with a small bound (STREAM_CLIENT_BUFFER_BYTES) and
small kernel buffers on both ends, so the bound is reached with a few
hundred events instead of megabytes.
"""

from __future__ import annotations

import asyncio
import json
import socket

import httpx
import pytest
from asgiref.sync import sync_to_async
from django.utils import timezone

from orders.actions import transition_order
from orders.models import OrderEvent, order_snapshot
from tests.support.live import (
    async_wait_until,
    cookie_header,
    ws_connect,
    ws_recv,
    ws_recv_until,
    ws_send,
)
from tests.support.sse import sse_frames

pytestmark = [pytest.mark.asyncio, pytest.mark.live, pytest.mark.django_db(transaction=True)]

BACKLOG = 700  # events; ~230 KB of frames, far above the 16 KiB bound
SMALL_BOUND = {
    "STREAM_CLIENT_BUFFER_BYTES": "16384",
    "STREAM_SOCKET_SNDBUF": "4096",
    "STREAM_SLOW_CLIENT_GRACE_SECONDS": "1",
}


async def server_cut_someone_off(server) -> None:
    """Wait (with a deadline) until the server has given up on a stalled client."""
    await async_wait_until(
        lambda: "cutting off a client that stopped reading" in server.log_tail(400),
        timeout=15,
        message="the server to cut off the stalled client",
    )


def make_backlog(order) -> list[int]:
    """Old events, long since published (so no commit re-publishes them)."""
    snapshot = order_snapshot(order, None)
    OrderEvent.objects.bulk_create(
        OrderEvent(order=order, type="order.updated", data=snapshot, published_at=timezone.now())
        for _ in range(BACKLOG)
    )
    return list(OrderEvent.objects.order_by("id").values_list("id", flat=True))


async def tiny_socket(port: int) -> socket.socket:
    """A connected socket whose receive buffer holds almost nothing."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 2048)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
    return sock


async def a_healthy_client_still_hears_a_change_at_once(server, cookies, order) -> None:
    async with await ws_connect(server, cookies=cookies) as ws:
        await ws_send(ws, {"action": "subscribe", "stream": "staff"})
        await ws_recv_until(ws, lambda f: f["type"] == "subscribed")
        await sync_to_async(transition_order)(order.pk, "paid")
        frame, _ = await ws_recv_until(ws, lambda f: f["type"] == "event", timeout=5)
        assert frame["event"]["order"]["status"] == "paid"


async def test_a_stalled_websocket_is_cut_off_and_resumes_by_cursor(
    start_daphne, staff_user, alice, make_order, login_cookies
):
    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosed

    order = await sync_to_async(make_order)(alice)
    await sync_to_async(make_backlog)(order)
    cookies = await sync_to_async(login_cookies)(staff_user)
    server = start_daphne("slow-ws", **SMALL_BOUND)

    stalled = await connect(
        server.ws_url + "/ws/live/",
        sock=await tiny_socket(server.port),
        origin=server.origin,
        additional_headers=cookie_header(cookies),
        max_queue=1,  # the client library stops reading the socket too
    )
    await ws_send(stalled, {"action": "subscribe", "stream": "staff", "after": 0})

    await a_healthy_client_still_hears_a_change_at_once(server, cookies, order)
    await server_cut_someone_off(server)

    received: list[int] = []
    with pytest.raises(ConnectionClosed) as closed:
        while True:
            frame = json.loads(await asyncio.wait_for(stalled.recv(), 10))
            if frame["type"] == "event":
                received.append(frame["event"]["id"])
    # The server closes with 4008; a client still not reading when the close
    # handshake times out (autobahn: 1 s) just sees the connection drop.
    assert closed.value.rcvd is None or closed.value.rcvd.code == 4008
    everything = await sync_to_async(
        lambda: list(OrderEvent.objects.order_by("id").values_list("id", flat=True))
    )()
    assert 0 < len(received) < len(everything), "the bound was never reached"
    assert received == everything[: len(received)]

    async with await ws_connect(server, cookies=cookies) as resumed:
        await ws_send(resumed, {"action": "subscribe", "stream": "staff", "after": received[-1]})
        await ws_recv_until(resumed, lambda f: f["type"] == "subscribed")
        while len(received) < len(everything):
            frame = await ws_recv(resumed)
            received.append(frame["event"]["id"])
    assert received == everything


async def test_a_stalled_event_stream_is_ended_and_resumes_with_last_event_id(
    start_daphne, staff_user, alice, make_order, login_cookies
):
    order = await sync_to_async(make_order)(alice)
    await sync_to_async(make_backlog)(order)
    cookies = await sync_to_async(login_cookies)(staff_user)
    server = start_daphne("slow-sse", **SMALL_BOUND)
    cookie = cookie_header(cookies)["Cookie"]

    loop = asyncio.get_running_loop()
    sock = await tiny_socket(server.port)
    request = (
        "GET /events/stream/?stream=staff&after=0 HTTP/1.1\r\n"
        f"Host: 127.0.0.1:{server.port}\r\nCookie: {cookie}\r\nConnection: close\r\n\r\n"
    )
    await loop.sock_sendall(sock, request.encode())

    await a_healthy_client_still_hears_a_change_at_once(server, cookies, order)
    await server_cut_someone_off(server)

    raw = b""
    while not raw.endswith(b"0\r\n\r\n"):  # the chunked body's end: the server ended it
        chunk = await asyncio.wait_for(loop.sock_recv(sock, 65536), 10)
        if not chunk:
            break
        raw += chunk
    sock.close()
    body = raw.split(b"\r\n\r\n", 1)[1].decode(errors="replace")
    received = [int(line[4:]) for line in body.splitlines() if line.startswith("id: ")]
    everything = await sync_to_async(
        lambda: list(OrderEvent.objects.order_by("id").values_list("id", flat=True))
    )()
    assert 0 < len(received) < len(everything), "the bound was never reached"
    assert received == everything[: len(received)]

    async with (
        httpx.AsyncClient(base_url=server.url, cookies=cookies, timeout=10) as client,
        client.stream(
            "GET", "/events/stream/?stream=staff", headers={"Last-Event-ID": str(received[-1])}
        ) as response,
    ):
        async for frame in sse_frames(response.aiter_lines()):
            if frame.id is not None and frame.event.startswith("order."):
                received.append(int(frame.id))
            if len(received) == len(everything):
                break
    assert received == everything
