"""Who may call what, and how often.

- Session users (browsers, CSRF enforced by DRF's SessionAuthentication) and
  token holders must be signed in; customers only ever see their own orders
  (the views scope querysets, so another customer's order is a 404).
- API tokens are read-only unless the token's user is staff.
- Throttles: one budget per user (scope ``user``), one per API token (scope
  ``token``), one per client address for anonymous calls (scope ``anon``).
  Rates come from ``REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"]`` at request time,
  so ``override_settings`` works in tests. The client address is
  ``booktime.clientip.client_address`` (``X-Forwarded-For`` only from
  ``TRUSTED_PROXIES``); counters live in the shared cache (Redis).
- Failed credentials: an unknown API token counts against its client
  address (``booktime.throttles.AUTH_ADDRESS``); past the limit, any request
  bearing a token from that address gets 429 before the token is looked up
  (``ThrottledTokenAuthentication``).
"""

from __future__ import annotations

import hashlib
from typing import Any

from rest_framework import exceptions, permissions, throttling
from rest_framework.authentication import TokenAuthentication, get_authorization_header
from rest_framework.authtoken.models import Token
from rest_framework.request import Request
from rest_framework.settings import api_settings

from booktime.clientip import client_address
from booktime.throttles import AUTH_ADDRESS


def uses_api_token(request: Request) -> bool:
    return isinstance(request.auth, Token)


class TokenReadOnlyUnlessStaff(permissions.BasePermission):
    """A customer's API token may read (GET/HEAD/OPTIONS) but not write."""

    message = "This API token is read-only: only a staff user's token may change data."

    def has_permission(self, request: Request, view: Any) -> bool:
        if request.method in permissions.SAFE_METHODS or not uses_api_token(request):
            return True
        return bool(request.user and request.user.is_staff)


class IsStaff(permissions.BasePermission):
    """Staff only (order transitions)."""

    message = "Only staff may change an order's status."

    def has_permission(self, request: Request, view: Any) -> bool:
        return bool(request.user and request.user.is_authenticated and request.user.is_staff)


class ThrottledTokenAuthentication(TokenAuthentication):
    """DRF's token authentication, with failed guesses counted per client address."""

    def authenticate(self, request: Request) -> tuple[Any, Any] | None:
        header = get_authorization_header(request).split()
        if not header or header[0].lower() != self.keyword.lower().encode():
            return None
        address = client_address(request)
        wait = AUTH_ADDRESS.wait(address)
        if wait:
            raise exceptions.Throttled(
                wait=wait, detail="Too many failed authentication attempts from this address."
            )
        try:
            return super().authenticate(request)
        except exceptions.AuthenticationFailed:
            AUTH_ADDRESS.fail(address)
            raise


class _LiveRateMixin:
    """Read the rate when the request comes, not when the class was imported;
    identify clients by ``booktime.clientip.client_address``."""

    scope: str

    def get_rate(self) -> str | None:
        return api_settings.DEFAULT_THROTTLE_RATES.get(self.scope)

    def get_ident(self, request: Request) -> str:
        return client_address(request)


class UserThrottle(_LiveRateMixin, throttling.UserRateThrottle):
    """Per signed-in user, however they authenticated."""

    scope = "user"

    def get_cache_key(self, request: Request, view: Any) -> str | None:
        if not (request.user and request.user.is_authenticated):
            return None
        return self.cache_format % {"scope": self.scope, "ident": request.user.pk}


class TokenThrottle(_LiveRateMixin, throttling.SimpleRateThrottle):
    """Per API token, so one integration cannot use up its owner's whole budget."""

    scope = "token"

    def get_cache_key(self, request: Request, view: Any) -> str | None:
        if not uses_api_token(request):
            return None
        # The key itself is a credential: keep it out of the cache.
        ident = hashlib.sha256(request.auth.key.encode()).hexdigest()[:32]
        return self.cache_format % {"scope": self.scope, "ident": ident}


class AnonThrottle(_LiveRateMixin, throttling.AnonRateThrottle):
    """Per client address for calls without credentials (schema, docs, 401s)."""

    scope = "anon"


DEFAULT_THROTTLES = [UserThrottle, TokenThrottle, AnonThrottle]
