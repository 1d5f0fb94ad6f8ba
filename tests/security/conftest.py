"""Fixtures for the security and fuzz tests."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

MEMORY_LAYER = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}


@pytest.fixture
def memory_layer(settings: Any) -> Iterator[None]:
    """The in-memory channel layer: tests through the ASGI app without Redis round-trips."""
    settings.CHANNEL_LAYERS = MEMORY_LAYER
    settings.CHANNEL_LAYER = "memory"
    yield


@pytest.fixture(autouse=True)
def fast_password_hashing(settings: Any) -> None:
    """The people fixtures hash passwords; a fast hasher keeps the matrix quick."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
