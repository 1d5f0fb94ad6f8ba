"""The HTTP call for one delivery: resolve, check, connect to the checked address.

The host is resolved and every address checked (``safety``) before each
attempt; the request then goes to the checked IP itself with the original
``Host`` header and TLS server name (SNI, certificate check), so a DNS answer
that changes between check and connect (rebinding) is never used. Redirects
are not followed (a 3xx is a failure), time-outs bound connect and read, and
at most ``MAX_RESPONSE_BYTES`` of a response are read.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import httpx
from django.conf import settings
from django.utils import timezone

from notifications.webhooks.deliveries import Attempt, EndpointSnapshot, Outgoing
from notifications.webhooks.safety import UnsafeURL, parse_url, resolve_async
from notifications.webhooks.signing import signature_headers

MAX_RESPONSE_BYTES = 64 * 1024
USER_AGENT = "booktime-webhooks/1.0"


def encode_body(envelope: dict[str, Any]) -> str:
    """The body: the same envelope JSON the streams send."""
    return json.dumps(envelope)


class Sender:
    """Sends deliveries; one pooled HTTP client per host name (a TLS connection
    made for one name is never reused for another that shares its address)."""

    def __init__(self) -> None:
        self._clients: dict[tuple[str, str], httpx.AsyncClient] = {}

    def _client(self, scheme: str, host: str) -> httpx.AsyncClient:
        key = (scheme, host)
        client = self._clients.get(key)
        if client is None:
            connect = settings.WEBHOOKS_CONNECT_TIMEOUT_SECONDS
            read = settings.WEBHOOKS_READ_TIMEOUT_SECONDS
            client = httpx.AsyncClient(
                timeout=httpx.Timeout(read, connect=connect, pool=connect),
                follow_redirects=False,
                trust_env=False,  # no proxy from the environment: we connect to the checked IP
                limits=httpx.Limits(max_connections=4, max_keepalive_connections=4),
            )
            self._clients[key] = client
        return client

    async def close(self) -> None:
        for client in self._clients.values():
            await client.aclose()
        self._clients.clear()

    async def send(self, endpoint: EndpointSnapshot, out: Outgoing) -> Attempt:
        """One attempt; never raises for network or receiver trouble."""
        at = timezone.now()
        started = time.monotonic()

        def failed(error: str, status: int | None = None, response: str = "") -> Attempt:
            latency = int((time.monotonic() - started) * 1000)
            return Attempt(False, at, status, latency, error, response)

        if out.envelope is None:
            return Attempt(True, at, error="Event pruned from the log; not sent.")
        try:
            target = parse_url(endpoint.url)
            addresses = await resolve_async(target)
        except UnsafeURL as exc:
            return failed(f"refused: {exc}")
        body = encode_body(out.envelope)
        headers = {
            "content-type": "application/json",
            "user-agent": USER_AGENT,
            "host": target.host_header,
            **signature_headers(out.event_id, body, endpoint.secrets, at),
        }
        extensions = {"sni_hostname": target.host} if target.scheme == "https" else {}
        client = self._client(target.scheme, target.host)
        deadline = (
            settings.WEBHOOKS_CONNECT_TIMEOUT_SECONDS + 2 * settings.WEBHOOKS_READ_TIMEOUT_SECONDS
        )
        error = "no address"
        for address in addresses:
            try:
                async with asyncio.timeout(deadline):
                    status, text = await self._post(
                        client, target.url_for(address), body, headers, extensions
                    )
            except httpx.ConnectError as exc:
                error = f"connect failed: {exc}"
                continue  # try the next checked address
            except (TimeoutError, httpx.TimeoutException):
                return failed("timed out")
            except httpx.HTTPError as exc:
                return failed(f"{type(exc).__name__}: {exc}")
            latency = int((time.monotonic() - started) * 1000)
            if 200 <= status < 300:
                return Attempt(True, at, status, latency, "", text)
            return Attempt(False, at, status, latency, f"HTTP {status}", text)
        return failed(error)

    @staticmethod
    async def _post(
        client: httpx.AsyncClient,
        url: str,
        body: str,
        headers: dict[str, str],
        extensions: dict[str, Any],
    ) -> tuple[int, str]:
        request = client.build_request(
            "POST", url, content=body.encode(), headers=headers, extensions=extensions
        )
        response = await client.send(request, stream=True)
        try:
            chunks, size = [], 0
            async for chunk in response.aiter_raw():
                chunks.append(chunk)
                size += len(chunk)
                if size >= MAX_RESPONSE_BYTES:
                    break
            return response.status_code, b"".join(chunks)[:MAX_RESPONSE_BYTES].decode(
                errors="replace"
            )
        finally:
            await response.aclose()
