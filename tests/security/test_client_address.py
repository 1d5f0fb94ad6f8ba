"""``booktime.clientip``: the one client address, for a request and an ASGI scope alike;
and the cache the limits count in, which clears only its own keys."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import RequestFactory

from booktime.clientip import client_address, forwarded_secure

PROXIES = ["10.0.0.0/8", "192.0.2.1", "2001:db8::/32"]

CASES = [
    # (peer, X-Forwarded-For, client)
    ("203.0.113.5", None, "203.0.113.5"),
    ("203.0.113.5", "198.51.100.7", "203.0.113.5"),  # untrusted peer: header ignored
    ("10.1.2.3", None, "10.1.2.3"),  # a proxy that forwarded nothing
    ("10.1.2.3", "198.51.100.7", "198.51.100.7"),
    ("10.1.2.3", "1.1.1.1, 198.51.100.7", "198.51.100.7"),  # the left part is the client's own
    ("10.1.2.3", "198.51.100.7, 192.0.2.1, 10.9.9.9", "198.51.100.7"),  # a chain of proxies
    ("10.1.2.3", "10.9.9.9, 192.0.2.1", "10.9.9.9"),  # all trusted: the farthest
    ("10.1.2.3", "198.51.100.7, not-an-ip", "10.1.2.3"),  # garbage: stop at the last trusted
    ("10.1.2.3", "198.51.100.7:4711", "198.51.100.7"),
    ("10.1.2.3", "[2001:db9::1]:443", "2001:db9::1"),
    ("2001:db8::5", "2001:db9::1", "2001:db9::1"),
    ("::ffff:10.1.2.3", "198.51.100.7", "198.51.100.7"),  # IPv4-mapped peer
    (None, "198.51.100.7", "unknown"),  # a Unix socket
]


@pytest.mark.parametrize(("peer", "forwarded", "client"), CASES)
def test_the_client_address_of_a_request_and_a_scope(
    settings: Any, peer: str | None, forwarded: str | None, client: str
) -> None:
    settings.TRUSTED_PROXIES = PROXIES
    meta = {"REMOTE_ADDR": peer} if peer else {"REMOTE_ADDR": None}
    if forwarded is not None:
        meta["HTTP_X_FORWARDED_FOR"] = forwarded
    request = RequestFactory().get("/", **meta)
    if peer is None:
        request.META["REMOTE_ADDR"] = None
    headers = [] if forwarded is None else [(b"x-forwarded-for", forwarded.encode())]
    scope = {"type": "http", "client": (peer, 1234) if peer else None, "headers": headers}
    assert client_address(request) == client
    assert client_address(scope) == client


def test_without_trusted_proxies_the_header_never_counts(settings: Any) -> None:
    settings.TRUSTED_PROXIES = []
    scope = {"client": ("10.1.2.3", 1), "headers": [(b"x-forwarded-for", b"198.51.100.7")]}
    assert client_address(scope) == "10.1.2.3"


def test_https_is_believed_from_a_trusted_proxy_only(settings: Any) -> None:
    settings.TRUSTED_PROXIES = PROXIES
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    said_https = [(b"x-forwarded-proto", b"https")]
    assert forwarded_secure({"client": ("10.1.2.3", 1), "headers": said_https})
    assert not forwarded_secure({"client": ("203.0.113.5", 1), "headers": said_https})
    assert not forwarded_secure({"client": ("10.1.2.3", 1), "headers": []})
    request = RequestFactory().get("/", REMOTE_ADDR="10.1.2.3", HTTP_X_FORWARDED_PROTO="https")
    assert forwarded_secure(request)
    del settings.SECURE_PROXY_SSL_HEADER
    assert not forwarded_secure({"client": ("10.1.2.3", 1), "headers": said_https})


def test_clearing_the_cache_deletes_its_own_keys_only(
    settings: Any, redis_url: str, channel_layer_prefix: str
) -> None:
    import redis
    from django.core.cache import cache

    settings.CACHES = {
        "default": {
            "BACKEND": "booktime.cache.FailOpenRedisCache",
            "LOCATION": redis_url,
            "KEY_PREFIX": f"{channel_layer_prefix}:cache-test",
        }
    }
    neighbour = f"{channel_layer_prefix}not-the-cache"
    client = redis.Redis.from_url(redis_url)
    try:
        client.set(neighbour, "1")
        cache.set("counter", 3)
        assert cache.get("counter") == 3
        cache.clear()
        assert cache.get("counter") is None
        assert client.get(neighbour) == b"1"  # not FLUSHDB
    finally:
        client.delete(neighbour)
        client.close()
