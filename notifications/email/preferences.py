"""Which e-mails a user gets: the one rule the worker, the REST API and the pages use."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.utils import timezone

from notifications.email.models import STAFF_NEW_ORDERS, EmailPreferences


def kinds_for(user: Any) -> list[str]:
    """The e-mail kinds ``user`` may switch on and off."""
    kinds = list(settings.NOTIFY_CUSTOMER_STATUSES)
    if user.is_staff and settings.EMAIL_STAFF_NEW_ORDERS != "off":
        kinds.append(STAFF_NEW_ORDERS)
    return kinds


def muted_kinds(user_id: int) -> set[str]:
    muted = EmailPreferences.objects.filter(user_id=user_id).values_list("muted", flat=True).first()
    return set(muted or [])


def wants(user_id: int, kind: str) -> bool:
    return kind not in muted_kinds(user_id)


def as_dict(user: Any) -> dict[str, bool]:
    """``{"shipped": True, ...}`` for every kind the user may choose."""
    muted = muted_kinds(user.pk)
    return {kind: kind not in muted for kind in kinds_for(user)}


def update(user: Any, choices: dict[str, bool]) -> dict[str, bool]:
    """Apply ``{"kind": on/off}`` (kinds from ``kinds_for``; the caller validated them)."""
    prefs, _ = EmailPreferences.objects.get_or_create(user=user)
    muted = set(prefs.muted)
    for kind, on in choices.items():
        (muted.discard if on else muted.add)(kind)
    prefs.muted = sorted(muted)
    prefs.save(update_fields=["muted", "updated_at"])
    return as_dict(user)


def unsubscribe(user: Any, audience: str) -> None:
    """One-click unsubscribe: every customer e-mail, or the staff new-order e-mails."""
    prefs, _ = EmailPreferences.objects.get_or_create(user=user)
    kinds = [STAFF_NEW_ORDERS] if audience == "staff" else list(settings.NOTIFY_CUSTOMER_STATUSES)
    prefs.muted = sorted(set(prefs.muted) | set(kinds))
    prefs.unsubscribed_at = timezone.now()
    prefs.save(update_fields=["muted", "unsubscribed_at", "updated_at"])
