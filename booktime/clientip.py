"""The client's address: the one answer for throttles, stream caps and logs.

The TCP peer is the client, unless the peer is one of ``TRUSTED_PROXIES``
(IPs or CIDR networks; default none). Only then is ``X-Forwarded-For`` read,
from the right: each trusted proxy appends the address it saw, so the
right-most address that is not itself a trusted proxy is the client. What a
client writes into the header itself sits further left and is never used.
``X-Forwarded-Proto`` (``SECURE_PROXY_SSL_HEADER``) is believed on the same
terms (``forwarded_secure``). Works on a Django (or DRF) request and on an
ASGI scope alike.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Mapping
from typing import Any

from django.conf import settings

UNKNOWN = "unknown"
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


@functools.lru_cache(maxsize=8)
def _networks(proxies: tuple[str, ...]) -> tuple[Network, ...]:
    return tuple(ipaddress.ip_network(p, strict=False) for p in proxies)


def _parse(value: str | None) -> Address | None:
    if not value:
        return None
    value = value.strip()
    if value.startswith("[") and "]" in value:  # [v6]:port
        value = value[1 : value.index("]")]
    elif value.count(":") == 1:  # v4:port
        value = value.split(":", 1)[0]
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        return None
    mapped = getattr(address, "ipv4_mapped", None)
    return mapped or address


def _trusted(address: Address | None) -> bool:
    if address is None:
        return False
    return any(address in network for network in _networks(tuple(settings.TRUSTED_PROXIES)))


def _peer_and_headers(source: Any) -> tuple[str | None, Mapping[str, str]]:
    """(TCP peer, ``{"x-forwarded-for": ...}``) from a scope or a request."""
    if isinstance(source, Mapping):  # an ASGI scope
        client = source.get("client") or (None,)
        headers: dict[str, str] = {}
        for name, value in source.get("headers", []):
            key = name.decode("latin-1").lower()
            if key == "x-forwarded-for":
                text = value.decode("latin-1")
                headers[key] = f"{headers[key]},{text}" if key in headers else text
        return client[0], headers
    meta = source.META
    return meta.get("REMOTE_ADDR"), {"x-forwarded-for": meta.get("HTTP_X_FORWARDED_FOR", "")}


def client_address(source: Any) -> str:
    """The client's IP address as text, for a Django/DRF request or an ASGI scope.

    ``"unknown"`` when the peer has no IP address (a Unix socket).
    """
    peer_text, headers = _peer_and_headers(source)
    peer = _parse(peer_text)
    if peer is None:
        return UNKNOWN
    if not _trusted(peer):
        return str(peer)
    chain = [_parse(part) for part in headers.get("x-forwarded-for", "").split(",") if part.strip()]
    client = peer
    for hop in reversed(chain):
        if hop is None:  # garbage in the chain: stop at the last proxy we trust
            break
        client = hop
        if not _trusted(hop):
            break
    return str(client)


def peer_is_trusted_proxy(source: Any) -> bool:
    """Whether the TCP peer is one of ``TRUSTED_PROXIES``."""
    return _trusted(_parse(_peer_and_headers(source)[0]))


def forwarded_secure(source: Any) -> bool:
    """Whether a trusted proxy says the client connected over HTTPS
    (``SECURE_PROXY_SSL_HEADER``); always False from anyone else."""
    setting = getattr(settings, "SECURE_PROXY_SSL_HEADER", None)
    if not setting or not peer_is_trusted_proxy(source):
        return False
    meta_name, expected = setting
    if isinstance(source, Mapping):
        wanted = meta_name.removeprefix("HTTP_").replace("_", "-").lower().encode("latin-1")
        value = next(
            (v.decode("latin-1") for k, v in source.get("headers", []) if k.lower() == wanted), ""
        )
    else:
        value = source.META.get(meta_name, "")
    return value.split(",")[0].strip().lower() == expected.lower()
