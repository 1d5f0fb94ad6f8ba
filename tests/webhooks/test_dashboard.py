"""The staff dashboard shows each webhook endpoint's health and alerts on failing or disabled ones."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from notifications.webhooks.models import WebhookEndpoint

pytestmark = pytest.mark.django_db


def test_dashboard_shows_endpoint_health_and_alerts(staff_user: Any) -> None:
    now = timezone.now()
    WebhookEndpoint.objects.create(url="https://93.184.216.34/ok", last_success_at=now)
    WebhookEndpoint.objects.create(
        url="https://93.184.216.34/failing",
        failing_since=now - timedelta(hours=2),
        consecutive_failures=7,
    )
    WebhookEndpoint.objects.create(
        url="https://93.184.216.34/off",
        enabled=False,
        failing_since=now - timedelta(days=3),
        disabled_reason="Disabled after failing since 2026-01-01.",
    )
    client = Client()
    client.force_login(staff_user)
    page = client.get("/staff/").content.decode()
    assert 'id="webhook-health"' in page
    assert page.count('role="alert"') == 2
    assert "https://93.184.216.34/failing is failing (failing since" in page
    assert "https://93.184.216.34/off is disabled" in page and "Disabled after failing" in page
    state = client.get("/staff/?format=json").json()["webhooks"]
    assert [w["state"] for w in state] == ["healthy", "failing", "disabled"]
    assert state[0]["last_success_at"] and state[1]["consecutive_failures"] == 7


def test_dashboard_without_endpoints_has_no_webhook_section(staff_user: Any) -> None:
    client = Client()
    client.force_login(staff_user)
    assert 'id="webhook-health"' not in client.get("/staff/").content.decode()
