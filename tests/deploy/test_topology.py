"""The production topology, end to end: Debian's nginx running deploy/nginx/booktime.conf
in front of two daphne processes, PostgreSQL, and Redis as a master, one replica
and three Sentinels (REDIS_SENTINELS). Clients on all three transports and the
browser client follow streams through nginx while (a) the Redis master is
killed and the Sentinels promote the replica, (b) one daphne is killed.
Every client must end with every event, once, in order.

Marked ``topology``: scripts/test runs it as a step of its own (on PostgreSQL).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from asgiref.sync import sync_to_async
from django.core.management import call_command

from devtools.nginx import NginxServer
from devtools.processes import free_port
from devtools.sentinel import MASTER_NAME, SentinelCluster
from orders.models import OrderEvent
from tests.support.live import ResumingFollower, async_wait_until

pytestmark = [
    pytest.mark.topology,
    pytest.mark.postgres,
    pytest.mark.live,
    pytest.mark.slow,
    pytest.mark.timeout(240),
]

TRANSPORTS = ("ws", "sse", "poll")
# A failover (down-after 1 s, election, promotion) plus the publisher's next
# scan and the clients' reconnects; generous for a loaded 2-core CI box.
CONVERGE_SECONDS = 60


@pytest.fixture
def sentinel_cluster() -> Iterator[SentinelCluster]:
    cluster = SentinelCluster().start()
    try:
        yield cluster
    finally:
        cluster.close()


@pytest.fixture
def static_dir(tmp_path: Path, settings: Any) -> Path:
    """``collectstatic`` output, as the README's deploy steps make it."""
    settings.STATIC_ROOT = tmp_path / "static"
    call_command("collectstatic", interactive=False, verbosity=0)
    return settings.STATIC_ROOT


def all_event_ids() -> list[int]:
    return list(OrderEvent.objects.order_by("id").values_list("id", flat=True))


def order_event_ids(order_id: int) -> list[int]:
    return list(
        OrderEvent.objects.filter(order_id=order_id).order_by("id").values_list("id", flat=True)
    )


def staff_token(user: Any) -> str:
    from rest_framework.authtoken.models import Token

    return Token.objects.get_or_create(user=user)[0].key


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
async def test_clients_behind_nginx_lose_nothing_through_a_redis_failover_and_a_daphne_kill(
    sentinel_cluster: SentinelCluster,
    static_dir: Path,
    start_daphne: Any,
    start_publisher: Any,
    staff_user: Any,
    alice: Any,
    make_order: Any,
    login_cookies: Any,
) -> None:
    env = {
        "REDIS_SENTINELS": ",".join(sentinel_cluster.sentinel_addresses),
        "REDIS_MASTER_NAME": MASTER_NAME,
        # Nothing listens there: layer, cache, watchdog and /readyz must all
        # find Redis through the Sentinels.
        "REDIS_URL": f"redis://127.0.0.1:{free_port()}/0",
        "DJANGO_ALLOW_ASYNC_UNSAFE": "",
    }
    ports = [free_port(), free_port()]
    daphnes = [
        start_daphne(name=f"daphne-{i}", port=port, **env) for i, port in enumerate(ports, 1)
    ]
    start_publisher(**env)
    nginx = NginxServer(ports, static_dir)
    nginx.check_config()
    nginx.start()
    try:
        await run_scenario(
            nginx,
            daphnes,
            sentinel_cluster,
            static_dir,
            staff_user,
            alice,
            make_order,
            login_cookies,
        )
    except BaseException:
        print(f"--- nginx error log ---\n{(nginx.workdir / 'error.log').read_text()}")
        raise
    finally:
        nginx.close()


async def run_scenario(
    nginx: NginxServer,
    daphnes: list[Any],
    cluster: SentinelCluster,
    static_dir: Path,
    staff_user: Any,
    alice: Any,
    make_order: Any,
    login_cookies: Any,
) -> None:
    orders = [await sync_to_async(make_order)(alice) for _ in range(2)]
    token = await sync_to_async(staff_token)(staff_user)
    staff_cookies = await sync_to_async(login_cookies)(staff_user)
    alice_cookies = await sync_to_async(login_cookies)(alice)

    async with httpx.AsyncClient(
        base_url=nginx.url, headers={"Authorization": f"Token {token}"}, timeout=30
    ) as api:
        # Static files come from nginx (the collectstatic copy), health through it.
        live_js = await api.get("/static/frontend/booktime-live.js")
        assert live_js.status_code == 200
        assert live_js.content == (static_dir / "frontend" / "booktime-live.js").read_bytes()
        assert (await api.get("/readyz")).json()["status"] == "ready"
        assert (await api.get("/metrics")).status_code == 404  # never through the proxy

        async def move(order: Any, status: str) -> None:
            response = await api.post(
                f"/api/orders/{order.pk}/transition/", json={"status": status}
            )
            assert response.status_code == 200, response.text

        followers = [
            ResumingFollower([nginx], "staff", transport=t, cookies=staff_cookies, after=0).start()
            for t in TRANSPORTS
        ]
        browser = await BrowserPage.open(nginx.url, f"/orders/{orders[0].pk}/", alice_cookies)
        try:

            async def everyone_has_everything() -> None:
                expected = await sync_to_async(all_event_ids)()
                for follower in followers:
                    await follower.wait_for_ids(expected, timeout=CONVERGE_SECONDS)
                mine = await sync_to_async(order_event_ids)(orders[0].pk)
                await browser.wait_for_ids(mine)

            await everyone_has_everything()
            await move(orders[0], "paid")
            await everyone_has_everything()

            # (a) The Redis master dies; saves succeed throughout, and the
            # Sentinels promote the replica.
            successor = cluster.kill_master()
            await move(orders[0], "packed")
            await move(orders[1], "paid")
            await async_wait_until(
                lambda: cluster.master_port() == successor.port,
                CONVERGE_SECONDS,
                "the Sentinels to promote the replica",
            )
            await move(orders[1], "packed")
            await everyone_has_everything()

            # (b) One daphne dies; nginx sends requests and reconnects to the other.
            daphnes[0].kill()
            await move(orders[0], "shipped")
            await move(orders[1], "shipped")
            await everyone_has_everything()

            expected = await sync_to_async(all_event_ids)()
            for follower in followers:
                assert follower.ids == expected, follower.transport  # each once, in order
                assert not follower.resets
            assert await browser.ids() == await sync_to_async(order_event_ids)(orders[0].pk)
        finally:
            for follower in followers:
                await follower.stop()
            await browser.close()

    # The access log has the paths, never the query strings (tokens travel there).
    log = nginx.access_log.read_text()
    assert "/events/poll/" in log and "/events/stream/" in log
    assert "stream=staff" not in log and "after=" not in log


class BrowserPage:
    """The browser client (booktime-live.js) in Debian's Chromium, through nginx."""

    def __init__(self, playwright: Any, browser: Any, page: Any) -> None:
        self.playwright, self.browser, self.page = playwright, browser, page

    @classmethod
    async def open(cls, base_url: str, path: str, cookies: dict[str, str]) -> BrowserPage:
        from playwright.async_api import async_playwright

        from tests.support.browser import CHROMIUM, CHROMIUM_ARGS

        playwright = await async_playwright().start()
        browser = await playwright.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True
        )
        context = await browser.new_context(base_url=base_url)
        await context.add_cookies(
            [{"name": name, "value": value, "url": base_url} for name, value in cookies.items()]
        )
        page = await context.new_page()
        await page.goto(path)
        await page.locator('#conn[data-state="live"]').wait_for(timeout=30000)
        return cls(playwright, browser, page)

    async def ids(self) -> list[int]:
        values = await self.page.locator("#timeline li").evaluate_all(
            "items => items.map(li => Number(li.dataset.eventId))"
        )
        return sorted(values)

    async def wait_for_ids(self, ids: list[int]) -> None:
        async def shows_them() -> bool:
            return await self.ids() == ids

        await async_wait_until(shows_them, CONVERGE_SECONDS, f"the page to show events {ids}")

    async def close(self) -> None:
        await self.browser.close()
        await self.playwright.stop()
