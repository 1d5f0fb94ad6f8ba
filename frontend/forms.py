"""Sign-in forms with failure limits: the site's sign-in page and the admin's.

Before the password is checked, ``booktime.throttles.login_wait`` looks at
failed attempts for the username and for the client address
(``booktime.clientip.client_address``); past either limit the form refuses
with a clear error (code ``throttled``; the sign-in page answers 429) until
the window ends. Every refused password counts one failure against both.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth.forms import AuthenticationForm

from booktime.clientip import client_address
from booktime.throttles import login_failed, login_wait

THROTTLED = "throttled"


class ThrottledLoginMixin:
    """``clean()`` refuses while throttled and counts refused passwords."""

    request: Any
    cleaned_data: dict[str, Any]
    # Seconds to wait when refused for too many failures (0: not throttled).
    throttled_wait = 0

    def clean(self) -> dict[str, Any]:
        username = self.cleaned_data.get("username") or ""
        address = client_address(self.request) if self.request is not None else "unknown"
        wait = login_wait(username, address)
        if wait:
            self.throttled_wait = wait
            raise forms.ValidationError(
                "Too many failed sign-in attempts. Try again in %(wait)s seconds.",
                code=THROTTLED,
                params={"wait": wait},
            )
        try:
            return super().clean()  # type: ignore[misc]
        except forms.ValidationError:
            login_failed(username, address)
            raise


class LoginForm(ThrottledLoginMixin, AuthenticationForm):
    """The site's sign-in form (``frontend.views.LoginView``)."""


class AdminLoginForm(ThrottledLoginMixin, AdminAuthenticationForm):
    """The admin's sign-in form (set on ``admin.site`` in frontend/admin.py)."""
