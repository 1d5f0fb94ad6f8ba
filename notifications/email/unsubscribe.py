"""Signed one-click unsubscribe links (RFC 8058).

Every e-mail carries ``List-Unsubscribe: <SITE_URL/unsubscribe/<token>/>`` and
``List-Unsubscribe-Post: List-Unsubscribe=One-Click``. The token is a Django
signature over (user id, audience): a POST to the link unsubscribes without
sign-in or CSRF token (the signature is the authority, as RFC 8058 requires);
a GET shows a confirmation page whose button makes that POST. Tokens do not
expire: an unsubscribe link must keep working as long as the e-mail exists.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core import signing
from django.urls import reverse

from notifications.email.content import absolute

SALT = "booktime.unsubscribe"
AUDIENCES = ("customer", "staff")


def make_token(user_id: int, audience: str) -> str:
    return signing.dumps({"u": user_id, "a": audience}, salt=SALT, compress=False)


def unsubscribe_url(user_id: int, audience: str) -> str:
    return absolute(reverse("email_unsubscribe", args=[make_token(user_id, audience)]))


def read_token(token: str) -> tuple[Any, str] | None:
    """(user, audience) the token was made for, or None if tampered with or unknown."""
    try:
        payload = signing.loads(token, salt=SALT)
    except signing.BadSignature:
        return None
    if not isinstance(payload, dict) or payload.get("a") not in AUDIENCES:
        return None
    user = get_user_model().objects.filter(pk=payload.get("u")).first()
    return (user, payload["a"]) if user is not None else None
