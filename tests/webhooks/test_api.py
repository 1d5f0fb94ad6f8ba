"""``/api/webhooks/``: create (secret once), list, update, disable, delete, rotate,
deliveries, re-send, replay; every bad input a 400 naming the field; the
address rules at creation."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest
from django.core.management import call_command
from django.utils import timezone
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from notifications.models import LogHorizon
from notifications.webhooks.models import WebhookDelivery, WebhookEndpoint
from orders.models import OrderEvent

pytestmark = pytest.mark.django_db

PUBLIC_URL = "https://93.184.216.34/hooks/booktime"  # an IP literal: no DNS needed


@pytest.fixture
def api(staff_user: Any) -> APIClient:
    token, _ = Token.objects.get_or_create(user=staff_user)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    return client


def error_of(response: Any, status: int = 400) -> dict[str, Any]:
    assert response.status_code == status, response.content
    body = json.loads(response.content)
    assert set(body) == {"error"} and {"code", "message", "fields"} <= set(body["error"])
    return body["error"]


def create(api: APIClient, **fields: Any) -> Any:
    return api.post("/api/webhooks/", {"url": PUBLIC_URL, **fields}, format="json")


def test_create_returns_the_secret_once(api: APIClient, make_order: Any, alice: Any) -> None:
    make_order(alice)
    response = create(api, description="ERP", event_types=["order.status_changed"])
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["secret"].startswith("whsec_") and len(body["secret"]) > 40
    assert body["url"] == PUBLIC_URL and body["enabled"] is True
    assert body["event_types"] == ["order.status_changed"]
    endpoint = WebhookEndpoint.objects.get(id=body["id"])
    assert endpoint.secret == body["secret"]
    assert endpoint.start_after == OrderEvent.objects.latest("id").id  # from now on
    for answer in (api.get("/api/webhooks/"), api.get(f"/api/webhooks/{endpoint.id}/")):
        assert answer.status_code == 200
        assert "secret" not in json.dumps(answer.json())
        assert body["secret"] not in answer.content.decode()


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"url": "ftp://93.184.216.34/x"}, "url"),
        ({"url": "not a url"}, "url"),
        ({"url": "https://user:pw@93.184.216.34/"}, "url"),
        ({"url": "https://93.184.216.34:99999/"}, "url"),
        ({"url": ""}, "url"),
        ({}, "url"),
        ({"url": PUBLIC_URL, "event_types": ["order.nope"]}, "event_types[0]"),
        ({"url": PUBLIC_URL, "event_types": "order.created"}, "event_types"),
        ({"url": PUBLIC_URL, "description": "x" * 201}, "description"),
        ({"url": PUBLIC_URL, "enabled": "maybe"}, "enabled"),
    ],
)
def test_bad_input_is_a_400_naming_the_field(api: APIClient, payload: Any, field: str) -> None:
    error = error_of(api.post("/api/webhooks/", payload, format="json"))
    assert error["code"] == "invalid" and field in error["fields"], error


@pytest.mark.parametrize(
    "url",
    [
        "https://127.0.0.1/hook",
        "https://localhost/hook",
        "https://[::1]/hook",
        "https://10.1.2.3/hook",
        "https://192.168.0.10/hook",
        "https://169.254.169.254/latest/meta-data",  # cloud metadata (link-local)
        "https://[fe80::1]/hook",
        "https://[::ffff:127.0.0.1]/hook",
        "https://0.0.0.0/hook",
        "http://93.184.216.34/hook",  # https required
    ],
)
def test_private_loopback_link_local_and_plain_http_are_refused(
    api: APIClient, url: str, settings: Any
) -> None:
    settings.WEBHOOKS_ALLOW_PRIVATE_NETWORKS = False
    settings.WEBHOOKS_ALLOW_HTTP = False
    error = error_of(create(api, url=url))
    assert "url" in error["fields"]
    assert not WebhookEndpoint.objects.exists()


def test_private_networks_allowed_by_the_setting(api: APIClient, settings: Any) -> None:
    settings.WEBHOOKS_ALLOW_PRIVATE_NETWORKS = True
    settings.WEBHOOKS_ALLOW_HTTP = True
    assert create(api, url="http://127.0.0.1:9/hook").status_code == 201


def test_update_disable_enable_rotate_delete(api: APIClient) -> None:
    endpoint_id = create(api).json()["id"]
    path = f"/api/webhooks/{endpoint_id}/"
    changed = api.patch(path, {"description": "new", "event_types": []}, format="json")
    assert changed.status_code == 200 and changed.json()["description"] == "new"
    error = error_of(api.patch(path, {"url": "https://127.0.0.1/"}, format="json"))
    assert "url" in error["fields"]

    WebhookEndpoint.objects.filter(id=endpoint_id).update(consecutive_failures=5)
    disabled = api.patch(path, {"enabled": False}, format="json").json()
    assert disabled["enabled"] is False and disabled["disabled_at"]
    enabled = api.patch(path, {"enabled": True}, format="json").json()
    assert enabled["enabled"] is True and enabled["consecutive_failures"] == 0

    old = WebhookEndpoint.objects.get(id=endpoint_id).secret
    rotated = api.post(f"{path}rotate/")
    assert rotated.status_code == 200
    endpoint = WebhookEndpoint.objects.get(id=endpoint_id)
    assert rotated.json()["secret"] == endpoint.secret != old and endpoint.previous_secret == old
    assert rotated.json()["previous_secret_expires_at"]

    assert api.delete(path).status_code == 204
    assert error_of(api.get(path), 404)["code"] == "not_found"


def test_deliveries_resend_and_replay(
    api: APIClient, make_order: Any, alice: Any, django_capture_on_commit_callbacks: Any
) -> None:
    endpoint_id = create(api).json()["id"]
    with django_capture_on_commit_callbacks(execute=True):  # the rows are made on commit
        make_order(alice, "paid")
    page = api.get(f"/api/webhooks/{endpoint_id}/deliveries/")
    assert page.status_code == 200, page.content
    rows = page.json()["results"]
    assert page.json()["count"] == 2 and [r["state"] for r in rows] == ["pending", "pending"]
    assert rows[0]["event_id"] > rows[1]["event_id"]  # newest first
    assert api.get(f"/api/webhooks/{endpoint_id}/deliveries/?state=delivered").json()["count"] == 0
    error = error_of(api.get(f"/api/webhooks/{endpoint_id}/deliveries/?state=lost"))
    assert "state" in error["fields"]

    resend = api.post(f"/api/webhooks/{endpoint_id}/deliveries/{rows[1]['id']}/resend/")
    assert resend.status_code == 202 and resend.json()["next_attempt_at"]
    assert error_of(api.post(f"/api/webhooks/{endpoint_id}/deliveries/999999/resend/"), 404)

    for bad in ({}, {"after": -1}, {"after": "x"}, {"after": 10**18}):
        error = error_of(api.post(f"/api/webhooks/{endpoint_id}/replay/", bad, format="json"))
        assert "after" in error["fields"]
    WebhookDelivery.objects.update(state="delivered")
    replay = api.post(f"/api/webhooks/{endpoint_id}/replay/", {"after": 0}, format="json")
    assert replay.status_code == 202 and replay.json() == {"after": 0, "requeued": 2}
    assert WebhookEndpoint.objects.get(id=endpoint_id).start_after == 0


def test_read_only_fields_are_shown_but_not_written(api: APIClient) -> None:
    body = create(api, consecutive_failures=7, disabled_reason="x").json()
    assert body["consecutive_failures"] == 0 and body["disabled_reason"] == ""
    assert {"id", "url", "enabled", "failing_since", "retry_at", "disabled_at"} <= set(body)


def test_an_endpoint_and_its_deliveries_answer_304_when_unchanged(
    api: APIClient, make_order: Any, alice: Any, django_capture_on_commit_callbacks: Any
) -> None:
    endpoint_id = create(api).json()["id"]
    for path in (f"/api/webhooks/{endpoint_id}/", f"/api/webhooks/{endpoint_id}/deliveries/"):
        first = api.get(path)
        assert first.status_code == 200 and first["ETag"].startswith('W/"')
        again = api.get(path, HTTP_IF_NONE_MATCH=first["ETag"])
        assert again.status_code == 304 and again["ETag"] == first["ETag"]
    with django_capture_on_commit_callbacks(execute=True):
        make_order(alice, "paid")
    path = f"/api/webhooks/{endpoint_id}/deliveries/"
    assert api.get(path, HTTP_IF_NONE_MATCH=first["ETag"]).status_code == 200


def test_refused_callers_spend_their_budget_like_everywhere_else(alice: Any, settings: Any) -> None:
    """Throttles run before permissions (orders.api.common.ApiMixin): a customer
    hammering the staff-only endpoints gets 429, not an endless stream of 403s."""
    rest = dict(settings.REST_FRAMEWORK)
    rest["DEFAULT_THROTTLE_RATES"] = {**rest["DEFAULT_THROTTLE_RATES"], "user": "2/min"}
    settings.REST_FRAMEWORK = rest
    client = APIClient()
    client.force_authenticate(alice)
    assert error_of(client.get("/api/webhooks/"), 403)["code"] == "forbidden"
    assert error_of(client.get("/api/webhooks/"), 403)["code"] == "forbidden"
    response = client.get("/api/webhooks/")
    assert error_of(response, 429)["code"] == "throttled" and int(response["Retry-After"]) > 0


def test_an_endpoint_created_after_everything_was_pruned_starts_at_the_horizon(
    api: APIClient, make_order: Any, alice: Any
) -> None:
    """The creation cursor is the log's (notifications.log.latest_event_id): with
    every event pruned that is the horizon, not 0, so a replay from the
    creation cursor is one the log can still serve."""
    order = make_order(alice, "paid")
    newest = OrderEvent.objects.latest("id").id
    OrderEvent.objects.filter(order=order).update(published_at=timezone.now())
    call_command("prune_events", "--keep-days", "0", stdout=io.StringIO())
    assert not OrderEvent.objects.exists() and LogHorizon.pruned_through_id() == newest
    endpoint = WebhookEndpoint.objects.get(id=create(api).json()["id"])
    assert endpoint.start_after == endpoint.rows_through == newest
