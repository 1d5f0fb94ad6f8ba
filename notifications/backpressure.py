"""Bounding what a slow or stalled client can make the server hold.

ASGI gives an application no backpressure: daphne writes whatever it is sent
into the Twisted transport, whose buffer grows without limit when the client
stops reading. The consumers look at that buffer before each write (daphne's
``send`` is ``partial(server.handle_reply, protocol)``) and cut a client off
once more than ``STREAM_CLIENT_BUFFER_BYTES`` have been waiting for longer
than ``STREAM_SLOW_CLIENT_GRACE_SECONDS``; the client resumes
with its cursor, so nothing is lost. Under another ASGI server (or in tests
through channels' communicators) the buffer is unknown and nothing is cut.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import socket
from typing import Any

from django.conf import settings

logger = logging.getLogger(__name__)

DRAIN_POLL_SECONDS = 0.02


def transport_of(send: Any) -> Any | None:
    """The Twisted TCP transport behind daphne's ``send`` callable, if any."""
    # channels' SessionMiddleware wraps send in a bound method of an object
    # that keeps the original as ``real_send``.
    for _ in range(5):
        wrapped = getattr(getattr(send, "__self__", None), "real_send", None)
        if wrapped is None:
            break
        send = wrapped
    if not isinstance(send, functools.partial) or not send.args:
        return None
    protocol = send.args[0]
    transport = getattr(protocol, "transport", None)
    if transport is None and getattr(protocol, "channel", None) is not None:
        transport = getattr(protocol.channel, "transport", None)
    if transport is None or not hasattr(transport, "dataBuffer"):
        return None
    _limit_kernel_buffer(transport)
    return transport


def buffered_bytes(transport: Any) -> int:
    """Bytes written to the transport that the client has not taken yet."""
    try:
        return len(transport.dataBuffer) - transport.offset + transport._tempDataLen
    except (AttributeError, TypeError):
        return 0


def is_backed_up(transport: Any | None) -> bool:
    return transport is not None and buffered_bytes(transport) > settings.STREAM_CLIENT_BUFFER_BYTES


async def drained(transport: Any) -> bool:
    """Wait up to STREAM_SLOW_CLIENT_GRACE_SECONDS for the buffer to fall under
    the bound: a client that reads, however slowly, gets a backfill page by
    page; one that does not read is cut off. Twisted does not tell asyncio
    when it drains, so this looks every few milliseconds."""
    deadline = asyncio.get_running_loop().time() + settings.STREAM_SLOW_CLIENT_GRACE_SECONDS
    while is_backed_up(transport):
        if asyncio.get_running_loop().time() >= deadline:
            return False
        await asyncio.sleep(DRAIN_POLL_SECONDS)
    return True


def _limit_kernel_buffer(transport: Any) -> None:
    """Optionally cap the kernel's send buffer too (STREAM_SOCKET_SNDBUF)."""
    size = settings.STREAM_SOCKET_SNDBUF
    if not size:
        return
    try:
        transport.getHandle().setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, size)
    except (AttributeError, OSError):  # not a plain socket
        logger.debug("could not set SO_SNDBUF", exc_info=True)
