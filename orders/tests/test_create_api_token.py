"""manage.py create_api_token: prints a token the API accepts; --rotate replaces it."""

from __future__ import annotations

from io import StringIO
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

pytestmark = pytest.mark.django_db


def run(*args: str) -> tuple[str, str]:
    out, err = StringIO(), StringIO()
    call_command("create_api_token", *args, stdout=out, stderr=err)
    return out.getvalue().strip(), err.getvalue()


def test_it_creates_a_token_the_api_accepts(alice: Any) -> None:
    key, note = run("alice")
    assert Token.objects.get(user=alice).key == key
    assert "read-only" in note
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    assert client.get("/api/orders/").status_code == 200


def test_it_prints_the_same_token_again_and_rotates_on_request(staff_user: Any) -> None:
    first, note = run("staff")
    assert "read-write" in note
    assert run("staff")[0] == first
    rotated, _ = run("staff", "--rotate")
    assert rotated != first
    assert list(Token.objects.filter(user=staff_user).values_list("key", flat=True)) == [rotated]


def test_it_refuses_unknown_users() -> None:
    with pytest.raises(CommandError, match="No user named 'nobody'"):
        run("nobody")
