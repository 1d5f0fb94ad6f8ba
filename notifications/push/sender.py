"""One Web Push request: VAPID-signed (RFC 8292) and encrypted (RFC 8291, aes128gcm).

``pywebpush`` does both; its ``send_async`` uses aiohttp, so the worker's
loop is never blocked. The endpoint is checked against the webhook SSRF
rules (``notifications.webhooks.safety``) before each request.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from django.conf import settings
from py_vapid import Vapid
from pywebpush import WebPusher

from notifications.webhooks.safety import UnsafeURL, validate_url

TIMEOUT_SECONDS = 10


def vapid_configured() -> bool:
    return bool(settings.VAPID_PUBLIC_KEY and settings.VAPID_PRIVATE_KEY)


class PushSender:
    def __init__(self) -> None:
        self.session: aiohttp.ClientSession | None = None
        self.vapid = Vapid.from_string(settings.VAPID_PRIVATE_KEY) if vapid_configured() else None

    async def close(self) -> None:
        if self.session is not None:
            await self.session.close()
            self.session = None

    async def send(
        self, subscription_info: dict[str, Any], payload: dict[str, Any]
    ) -> tuple[int | None, str]:
        """(HTTP status, error text); status None when no answer came."""
        if self.vapid is None:
            return None, "VAPID keys are not configured"
        endpoint = subscription_info["endpoint"]
        try:
            validate_url(endpoint)
        except UnsafeURL as exc:
            return 400, f"refused endpoint: {exc}"
        parts = urlsplit(endpoint)
        claims = {"sub": settings.VAPID_SUBJECT, "aud": f"{parts.scheme}://{parts.netloc}"}
        headers = self.vapid.sign(claims)  # adds "exp" (now + 24 h) to the claims
        if self.session is None:
            self.session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=TIMEOUT_SECONDS)
            )
        pusher = WebPusher(subscription_info, aiohttp_session=self.session)
        try:
            response = await pusher.send_async(
                json.dumps(payload),
                headers,
                ttl=settings.PUSH_TTL_SECONDS,
                content_encoding="aes128gcm",
                timeout=aiohttp.ClientTimeout(total=TIMEOUT_SECONDS),
            )
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            return None, f"{type(exc).__name__}: {exc}"
        status = response.status  # type: ignore[union-attr]
        if 200 <= status < 300:
            return status, ""
        text = (await response.text())[:200]  # type: ignore[union-attr]
        return status, f"push service answered {status}: {text}"
