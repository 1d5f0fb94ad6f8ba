"""Shared pieces of the two HTTP transports (SSE and long-poll).

channels' ``AsyncHttpConsumer.http_request`` ends the consumer as soon as
``handle()`` returns (channels issues #1302, #1747), so a streaming consumer
would never receive a group message. ``StreamingHttpConsumer`` stays alive
after ``handle()`` until the client goes (``http.disconnect``), which daphne
also sends once a complete response has been written.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qs

from channels.exceptions import StopConsumer
from channels.generic.http import AsyncHttpConsumer

from booktime.errors import ClientError
from booktime.limits import repeated_params
from notifications.auth import tracking_token_for
from notifications.resume import Followed, FollowingMixin
from notifications.streams import StreamError, Subscription


class StreamingHttpConsumer(FollowingMixin, AsyncHttpConsumer):
    """An AsyncHttpConsumer that can keep answering after ``handle()``."""

    headers_sent = False

    async def send_headers(self, *, status: int = 200, headers: Any = None) -> None:
        self.headers_sent = True
        await super().send_headers(status=status, headers=headers)

    async def http_request(self, message: dict[str, Any]) -> None:
        if "body" in message:
            self.body.append(message["body"])
        if message.get("more_body"):
            return
        try:
            await self.handle(b"".join(self.body))
        except ClientError as exc:
            if self.headers_sent:
                # A stream already under way (the database failed during the
                # backfill): end it; the client resumes by cursor.
                await self.send_body(b"", more_body=False)
            else:
                await self.send_error(exc)
        # Not StopConsumer: live events and http.disconnect still come through
        # dispatch. Daphne sends http.disconnect after a complete response.

    async def http_disconnect(self, message: dict[str, Any]) -> None:
        """The client went away (or the response is complete): clean up and stop."""
        await self.disconnect()
        await self.unfollow_all()
        raise StopConsumer()

    # -- request helpers ------------------------------------------------------

    def query(self) -> dict[str, str]:
        """Query parameters; one given twice is 400 ``invalid`` naming it
        (``booktime.limits.repeated_params``, the REST API's rule)."""
        raw = self.scope.get("query_string", b"").decode("utf-8", "replace")
        params = parse_qs(raw, keep_blank_values=True)
        repeated = repeated_params(list(params.items()))
        if repeated:
            raise ClientError("invalid", "Each query parameter may be given once.", fields=repeated)
        return {key: values[0] for key, values in params.items()}

    def header(self, name: bytes) -> str | None:
        """The ``name`` header (lower case); one given twice is 400 ``invalid``
        naming it (``Last-Event-ID``), like a repeated query parameter: which
        copy counts would be a guess."""
        values = [value for key, value in self.scope.get("headers", []) if key.lower() == name]
        if len(values) > 1:
            parts = name.decode("latin-1").split("-")
            field = "-".join("ID" if part == "id" else part.capitalize() for part in parts)
            fields = repeated_params([(field, values)])
            raise ClientError("invalid", "Each header may be given once.", fields=fields)
        return values[0].decode("latin-1") if values else None

    def stream_params(self, params: dict[str, str]) -> tuple[str, Any]:
        """(stream, tracking token) of a request; 400 for a missing stream or a
        token in the URL."""
        stream = params.get("stream")
        if not stream:
            raise StreamError("bad_stream", "the stream parameter is required")
        if "token" in params:  # access logs keep URLs: never a credential there
            raise ClientError(
                "bad_token",
                "send a tracking token in the X-Tracking-Token header, not in the URL",
                field="token",
            )
        return stream, tracking_token_for(self.scope, stream)

    async def authorize_stream(self, params: dict[str, str]) -> Subscription:
        return await self.authorize_now(*self.stream_params(params))

    async def open_requested_stream(
        self,
        params: dict[str, str],
        after: int | None,
        admit: Callable[[Subscription], Awaitable[None]],
    ) -> Followed:
        """Authorize, ``admit`` (a slot) and follow the requested stream, in as
        few database hops as the resume rule allows (``open_stream``)."""
        stream, token = self.stream_params(params)
        return await self.open_stream(stream, token, after, admit)

    async def send_json_response(
        self, status: int, body: dict[str, Any], extra_headers: list[tuple[bytes, bytes]] = ()
    ) -> None:
        await self.send_response(
            status,
            json.dumps(body).encode(),
            headers=[
                (b"Content-Type", b"application/json"),
                (b"Cache-Control", b"no-store"),
                *extra_headers,
            ],
        )

    async def send_error(self, exc: ClientError) -> None:
        """The error as JSON in the one shape, with its status and ``Retry-After``."""
        extra = []
        if exc.retry_after is not None:
            extra.append((b"Retry-After", str(exc.retry_after).encode()))
        await self.send_json_response(exc.status, exc.body(), extra)
