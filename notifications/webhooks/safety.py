"""Which webhook URLs and addresses may be called (against SSRF).

A URL must be ``https://`` (``http://`` only with ``WEBHOOKS_ALLOW_HTTP``),
carry no credentials, and its host must resolve only to public addresses:
private, loopback, link-local, multicast, reserved and unspecified ones are
refused unless ``WEBHOOKS_ALLOW_PRIVATE_NETWORKS`` is on. The check runs when
an endpoint is saved and again for every connection the sender opens (its
resolver, ``resolve_async``), which then connects to the very addresses it
checked (no second lookup a DNS rebinding could change); a host written as an
IP address is checked before every attempt (``check_literal``).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

from django.conf import settings

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class UnsafeURL(ValueError):
    """The URL or the address it resolves to may not be called."""


@dataclass(frozen=True)
class Target:
    scheme: str
    host: str  # as written in the URL (IPv6 without brackets)
    port: int
    path: str  # path and query, at least "/"


def parse_url(url: str) -> Target:
    """Check the URL's form; raises ``UnsafeURL`` saying what is wrong."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise UnsafeURL(f"Not a valid URL: {exc}.") from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise UnsafeURL("Only http:// and https:// URLs can receive webhooks.")
    if scheme == "http" and not settings.WEBHOOKS_ALLOW_HTTP:
        raise UnsafeURL("Webhook URLs must use https://.")
    if parts.username or parts.password:
        raise UnsafeURL("Webhook URLs may not contain credentials.")
    if not parts.hostname:
        raise UnsafeURL("The URL has no host.")
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    return Target(scheme, parts.hostname, port or (443 if scheme == "https" else 80), path)


def check_address(address: IPAddress) -> None:
    """Refuse non-public addresses unless private networks are allowed."""
    if settings.WEBHOOKS_ALLOW_PRIVATE_NETWORKS:
        return
    mapped = getattr(address, "ipv4_mapped", None)
    if mapped is not None:
        address = mapped
    if (
        address.is_private
        or address.is_loopback
        or address.is_link_local
        or address.is_multicast
        or address.is_reserved
        or address.is_unspecified
        or not address.is_global
    ):
        raise UnsafeURL(f"The URL resolves to {address}, a non-public address.")


def _checked(infos: list[tuple]) -> list[str]:
    addresses: list[str] = []
    for info in infos:
        raw = info[4][0].split("%", 1)[0]  # drop an IPv6 zone id
        address = ipaddress.ip_address(raw)
        check_address(address)  # one bad address refuses the host: it could be picked later
        if raw not in addresses:
            addresses.append(raw)
    if not addresses:
        raise UnsafeURL("The URL's host does not resolve.")
    return addresses


def resolve(target: Target) -> list[str]:
    """Resolve and check (blocking; for validation when an endpoint is saved)."""
    try:
        infos = socket.getaddrinfo(target.host, target.port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        raise UnsafeURL(f"The host {target.host!r} does not resolve.") from None
    return _checked(infos)


async def resolve_async(host: str, port: int) -> list[str]:
    """Resolve and check ``host`` without blocking (the sender, for each new connection)."""
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        raise UnsafeURL(f"The host {host!r} does not resolve.") from None
    return _checked(infos)


def check_literal(target: Target) -> bool:
    """If the URL's host is an IP address, check it; True if it was one (no lookup needed)."""
    try:
        address = ipaddress.ip_address(target.host.split("%", 1)[0])
    except ValueError:
        return False
    check_address(address)
    return True


def validate_url(url: str) -> str:
    """Form and address checks for an endpoint being saved; returns the URL."""
    resolve(parse_url(url))
    return url
