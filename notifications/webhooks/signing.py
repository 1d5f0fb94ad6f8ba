"""Webhook secrets and Standard Webhooks signatures (via the ``standardwebhooks`` package).

Headers: ``webhook-id`` (``evt_<event id>``, the same on every retry),
``webhook-timestamp`` (Unix seconds) and ``webhook-signature``
(``v1,<base64 HMAC-SHA256 of id.timestamp.body>``, one per valid secret,
space-separated while a rotated-out secret is still in its grace period).
"""

from __future__ import annotations

import base64
import secrets
from datetime import datetime

from standardwebhooks import Webhook

SECRET_PREFIX = "whsec_"
SECRET_BYTES = 32


def new_secret() -> str:
    """A fresh ``whsec_<base64 of 32 random bytes>`` secret."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def message_id(event_id: int) -> str:
    return f"evt_{event_id}"


def signature_headers(
    event_id: int, body: str, secrets_in_use: list[str], at: datetime
) -> dict[str, str]:
    """The three Standard Webhooks headers for ``body``, signed with every secret given."""
    msg_id = message_id(event_id)
    signatures = [Webhook(secret).sign(msg_id, at, body) for secret in secrets_in_use]
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": " ".join(signatures),
    }
