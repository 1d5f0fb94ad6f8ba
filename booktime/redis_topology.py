"""Where Redis is: one server, a master watched by Sentinel, or several shards.

``booktime/settings.py`` reads the environment (``REDIS_URL``, ``REDIS_URLS``,
``REDIS_SENTINELS``, ``REDIS_MASTER_NAME``); this module turns those values
into the channel layer's ``hosts``, the cache's connection pool, and the
clients the readiness check and the layer watchdog use, so that everything
follows the master after a Sentinel failover.

- **Sentinel** (``REDIS_SENTINELS``): one logical Redis, highly available.
  Every connection asks the Sentinels for the current master; after a
  failover new connections go to the promoted replica.
- **Shards** (``REDIS_URLS``): the channel layer spreads groups over several
  independent servers (channels-redis' consistent hash), for more publish
  throughput than one Redis gives. The cache stays on ``REDIS_URL``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.core.exceptions import ImproperlyConfigured

# A Redis that does not answer must not hold up a save for long.
CONNECT_TIMEOUT_SECONDS = 2
SENTINEL_TIMEOUT_SECONDS = 1


def parse_sentinels(entries: Sequence[str], name: str = "REDIS_SENTINELS") -> list[tuple[str, int]]:
    """``["host:port", ...]`` -> ``[(host, port), ...]``; a bad entry names ``name``."""
    sentinels = []
    for entry in entries:
        host, sep, port = entry.rpartition(":")
        if not sep or not host or not port.isdigit():
            raise ImproperlyConfigured(f"{name} entries must be host:port, got {entry!r}")
        sentinels.append((host.strip("[]"), int(port)))
    return sentinels


def layer_hosts(
    url: str, urls: Sequence[str], sentinels: Sequence[tuple[str, int]], master_name: str
) -> list[dict[str, Any]]:
    """The channel layer's ``hosts`` (both channels-redis layers accept this form)."""
    if sentinels and urls:
        raise ImproperlyConfigured("set REDIS_SENTINELS or REDIS_URLS, not both")
    if sentinels:
        return [
            {
                "sentinels": list(sentinels),
                "master_name": master_name,
                "sentinel_kwargs": {
                    "socket_connect_timeout": SENTINEL_TIMEOUT_SECONDS,
                    "socket_timeout": SENTINEL_TIMEOUT_SECONDS,
                },
                "socket_connect_timeout": CONNECT_TIMEOUT_SECONDS,
            }
        ]
    return [
        {"address": address, "socket_connect_timeout": CONNECT_TIMEOUT_SECONDS}
        for address in (urls or [url])
    ]


def _sentinel(module: Any) -> Any:
    from django.conf import settings

    return module.Sentinel(
        settings.REDIS_SENTINELS,
        sentinel_kwargs={
            "socket_connect_timeout": SENTINEL_TIMEOUT_SECONDS,
            "socket_timeout": SENTINEL_TIMEOUT_SECONDS,
        },
    )


class SentinelCachePool:
    """``pool_class`` for Django's RedisCache: the Sentinel master instead of LOCATION."""

    @classmethod
    def from_url(cls, url: str, **options: Any) -> Any:
        import redis.sentinel
        from django.conf import settings

        options.pop("parser_class", None)
        return redis.sentinel.SentinelConnectionPool(
            settings.REDIS_MASTER_NAME, _sentinel(redis.sentinel), **options
        )


def sync_client(timeout: float = CONNECT_TIMEOUT_SECONDS) -> Any:
    """A redis-py client on the Redis this deployment uses (the Sentinel master if any)."""
    import redis
    from django.conf import settings

    if settings.REDIS_SENTINELS:
        return _sentinel(redis.sentinel).master_for(
            settings.REDIS_MASTER_NAME, socket_connect_timeout=timeout, socket_timeout=timeout
        )
    return redis.Redis.from_url(
        settings.REDIS_URL, socket_connect_timeout=timeout, socket_timeout=timeout
    )


class _AllShards:
    """``info()`` over every shard: a restart of any one changes the combined run id."""

    def __init__(self, clients: list[Any]) -> None:
        self.clients = clients

    async def info(self, section: str) -> dict[str, Any]:
        infos = [await client.info(section) for client in self.clients]
        return {"run_id": ",".join(str(info.get("run_id")) for info in infos)}

    async def aclose(self) -> None:
        for client in self.clients:
            await client.aclose()


def watch_client() -> Any:
    """An asyncio client for the layer watchdog (notifications/recovery.py).

    It follows the Sentinel master (a failover changes the run id, which the
    watchdog treats as a restart) and, with shards, probes all of them.
    """
    import redis.asyncio as aioredis
    import redis.asyncio.sentinel
    from django.conf import settings

    options = {"socket_connect_timeout": 1, "socket_timeout": 2}
    if settings.REDIS_SENTINELS:
        return _sentinel(redis.asyncio.sentinel).master_for(settings.REDIS_MASTER_NAME, **options)
    urls = settings.REDIS_URLS or [settings.REDIS_URL]
    clients = [aioredis.from_url(url, **options) for url in urls]
    return clients[0] if len(clients) == 1 else _AllShards(clients)
