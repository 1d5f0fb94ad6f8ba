"""The HTTP call for one delivery, over a kept-alive connection of the endpoint's own.

Each endpoint gets its own ``aiohttp`` session holding at most one
connection, kept alive between deliveries (an endpoint is sent one request
at a time anyway, to keep its order). Every connection the session opens
goes through ``CheckingResolver``: the host is resolved and every address
checked (``safety``) right there, and the connection is made to those very
addresses, so a DNS answer that changes between check and connect
(rebinding) is never used; the URL keeps its host name, so ``Host``, TLS
server name (SNI) and certificate check are the host's. A host written as an
IP address (no lookup) is checked before every attempt. Redirects are not
followed (a 3xx is a failure), nothing is decompressed, time-outs bound
connect and read, and at most ``MAX_RESPONSE_BYTES`` of a response are read
(the connection is dropped if more was sent).
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from django.conf import settings
from django.utils import timezone

from notifications.webhooks.deliveries import Attempt, EndpointSnapshot, Outgoing
from notifications.webhooks.safety import UnsafeURL, check_literal, parse_url, resolve_async
from notifications.webhooks.signing import signature_headers

MAX_RESPONSE_BYTES = 64 * 1024
USER_AGENT = "booktime-webhooks/1.0"
# Idle connections are closed after this long: below the 5 s many servers use,
# so we rarely reuse a connection the receiver is closing at the same moment.
KEEPALIVE_SECONDS = 4.0
# Sessions of endpoints not served for this long are closed (deleted endpoints).
IDLE_SESSION_SECONDS = 300.0


def encode_body(envelope: dict[str, Any]) -> str:
    """The body: the same envelope JSON the streams send."""
    return json.dumps(envelope)


class CheckingResolver(AbstractResolver):
    """Resolves a host for each new connection, refusing it unless every address is allowed."""

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        return [
            ResolveResult(
                hostname=host,
                host=address,
                port=port,
                family=socket.AF_INET6 if ":" in address else socket.AF_INET,
                proto=0,
                flags=socket.AI_NUMERICHOST,
            )
            for address in await resolve_async(host, port)
        ]

    async def close(self) -> None:
        pass


@dataclass
class _Session:
    url: str
    session: aiohttp.ClientSession
    used_at: float


class Sender:
    """Sends deliveries; one session (and connection) per endpoint."""

    def __init__(self) -> None:
        self._sessions: dict[int, _Session] = {}
        self._closing: set[asyncio.Task[None]] = set()

    def _session(self, endpoint: EndpointSnapshot) -> aiohttp.ClientSession:
        now = time.monotonic()
        current = self._sessions.get(endpoint.id)
        if current is not None and current.url == endpoint.url:
            current.used_at = now
            return current.session
        if current is not None:  # the URL changed: new host, new connection
            self._close_later(current.session)
        self._close_idle(now)
        connect = settings.WEBHOOKS_CONNECT_TIMEOUT_SECONDS
        session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(
                limit=1,
                use_dns_cache=False,  # resolve (and check) for every connection
                resolver=CheckingResolver(),
                keepalive_timeout=KEEPALIVE_SECONDS,
            ),
            timeout=aiohttp.ClientTimeout(
                total=None,
                connect=connect,
                sock_connect=connect,
                sock_read=settings.WEBHOOKS_READ_TIMEOUT_SECONDS,
            ),
            auto_decompress=False,
            trust_env=False,  # no proxy from the environment: we connect to the checked IP
            skip_auto_headers=("Accept-Encoding",),
        )
        self._sessions[endpoint.id] = _Session(endpoint.url, session, now)
        return session

    def _close_idle(self, now: float) -> None:
        for endpoint_id, idle in list(self._sessions.items()):
            if now - idle.used_at > IDLE_SESSION_SECONDS:
                del self._sessions[endpoint_id]
                self._close_later(idle.session)

    def _close_later(self, session: aiohttp.ClientSession) -> None:
        task = asyncio.get_running_loop().create_task(session.close())
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def close(self) -> None:
        for held in self._sessions.values():
            await held.session.close()
        self._sessions.clear()
        if self._closing:
            await asyncio.wait(set(self._closing))

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
            check_literal(parse_url(endpoint.url))
        except UnsafeURL as exc:
            return failed(f"refused: {exc}")
        body = encode_body(out.envelope)
        headers = {
            "content-type": "application/json",
            "user-agent": USER_AGENT,
            **signature_headers(out.event_id, body, endpoint.secrets, at),
        }
        deadline = (
            settings.WEBHOOKS_CONNECT_TIMEOUT_SECONDS + 2 * settings.WEBHOOKS_READ_TIMEOUT_SECONDS
        )
        session = self._session(endpoint)
        for retry in (False, True):
            try:
                async with asyncio.timeout(deadline):
                    status, text = await self._post(session, endpoint.url, body.encode(), headers)
                break
            except UnsafeURL as exc:
                return failed(f"refused: {exc}")
            except aiohttp.ServerDisconnectedError as exc:
                # Most likely a kept-alive connection the receiver had just
                # closed: try once more on a new one (receivers dedupe by id).
                if retry:
                    return failed(f"{type(exc).__name__}: {exc}")
            except aiohttp.ClientConnectorError as exc:
                return failed(f"connect failed: {exc}")
            except TimeoutError:  # aiohttp's time-outs are TimeoutErrors too
                return failed("timed out")
            except aiohttp.ClientError as exc:
                return failed(f"{type(exc).__name__}: {exc}")
        latency = int((time.monotonic() - started) * 1000)
        if 200 <= status < 300:
            return Attempt(True, at, status, latency, "", text)
        return Attempt(False, at, status, latency, f"HTTP {status}", text)

    @staticmethod
    async def _post(
        session: aiohttp.ClientSession, url: str, body: bytes, headers: dict[str, str]
    ) -> tuple[int, str]:
        async with session.post(url, data=body, headers=headers, allow_redirects=False) as response:
            data = bytearray()
            while len(data) < MAX_RESPONSE_BYTES:
                chunk = await response.content.read(MAX_RESPONSE_BYTES - len(data))
                if not chunk:
                    break
                data += chunk
            if not response.content.at_eof():
                response.close()  # the rest is not read: drop the connection, not reuse it
            return response.status, data.decode(errors="replace")
