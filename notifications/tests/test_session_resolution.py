"""Resolving a session cookie stays exact with its per-process caches
(notifications.access: ``decoded_session``, ``session_hashes``).

Both caches are warmed first, then the truth changes under them: the
password, the signing keys, the stored text. Each resolution must read the
session as it is now: the caches only skip work whose answer cannot have
changed (the same text under the same keys, the same password hash).
"""

from __future__ import annotations

import logging
from typing import Any

import pytest
from django.conf import settings
from django.contrib.sessions.models import Session
from django.test import override_settings

from notifications.access import Principal, resolve_pending
from tests.support.asgi import session_cookies

pytestmark = pytest.mark.django_db

OLD_KEY = settings.SECRET_KEY
NEW_KEY = "a-rotated-secret-key-" + "x" * 40


def resolve(key: str) -> Principal:
    principal, _ = resolve_pending(Principal(session_key=key, pending=True))
    return principal


def signed_in(user: Any) -> str:
    return session_cookies(user)[settings.SESSION_COOKIE_NAME]


def test_a_password_changed_after_the_caches_are_warm_ends_the_session(alice: Any) -> None:
    key = signed_in(alice)
    assert resolve(key).user_id == alice.pk
    assert resolve(key).user_id == alice.pk  # now from the caches
    alice.set_password("a-new-password-123")
    alice.save()
    ended = resolve(key)
    assert ended.user_id is None and ended.session_ended


def test_a_rotated_secret_key_is_honoured_through_its_fallback_only(alice: Any) -> None:
    key = signed_in(alice)
    assert resolve(key).user_id == alice.pk
    with override_settings(SECRET_KEY=NEW_KEY, SECRET_KEY_FALLBACKS=[OLD_KEY]):
        assert resolve(key).user_id == alice.pk
    with override_settings(SECRET_KEY=NEW_KEY, SECRET_KEY_FALLBACKS=[]):
        ended = resolve(key)
        assert ended.user_id is None and ended.session_ended
    assert resolve(key).user_id == alice.pk  # the old key back: signed in again


def test_tampered_session_text_is_refused_and_reported_every_time(
    alice: Any, caplog: pytest.LogCaptureFixture
) -> None:
    key = signed_in(alice)
    assert resolve(key).user_id == alice.pk
    session = Session.objects.get(session_key=key)
    session.session_data = session.session_data[:-3] + "AAA"
    session.save()
    with caplog.at_level(logging.WARNING, logger="django.security.SuspiciousSession"):
        for _ in range(2):
            ended = resolve(key)
            assert ended.user_id is None and ended.session_ended
    assert [r.getMessage() for r in caplog.records].count("Session data corrupted") == 2


def test_a_deleted_session_ends_at_once_whatever_was_decoded_before(alice: Any) -> None:
    key = signed_in(alice)
    assert resolve(key).user_id == alice.pk
    Session.objects.filter(session_key=key).delete()
    ended = resolve(key)
    assert ended.user_id is None and ended.session_ended
