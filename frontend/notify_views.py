"""Pages for the notifications beyond the open tab: e-mail preferences, one-click
unsubscribe (RFC 8058), and the Web Push service worker at the site root.

The rules are in ``notifications.email`` (preferences, unsubscribe tokens);
these views only render them.
"""

from __future__ import annotations

from pathlib import Path

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_http_methods

from notifications.email import preferences
from notifications.email.unsubscribe import read_token
from notifications.push.models import PushSubscription

SERVICE_WORKER = Path(__file__).resolve().parent / "static" / "frontend" / "service-worker.js"
KIND_LABELS = {
    "placed": "Order placed (confirmation)",
    "paid": "Payment received",
    "packed": "Order packed",
    "shipped": "Order shipped, with the tracking link",
    "delivered": "Order delivered",
    "cancelled": "Order cancelled",
    "returned": "Return received",
    "staff_new_orders": "New orders (staff)",
}


@require_http_methods(["GET", "POST"])
@login_required
def notification_preferences(request: HttpRequest) -> HttpResponse:
    """Which e-mails the signed-in user gets (the form posts every box)."""
    saved = False
    if request.method == "POST":
        chosen = set(request.POST.getlist("email"))
        preferences.update(
            request.user, {kind: kind in chosen for kind in preferences.kinds_for(request.user)}
        )
        saved = True
    choices = [
        {"kind": kind, "label": KIND_LABELS.get(kind, kind), "on": on}
        for kind, on in preferences.as_dict(request.user).items()
    ]
    return render(
        request,
        "frontend/preferences.html",
        {
            "choices": choices,
            "saved": saved,
            "email": request.user.email,
            "push_count": PushSubscription.objects.filter(user=request.user).count(),
        },
    )


@csrf_exempt  # RFC 8058: mail providers POST without cookies; the signed token is the authority
@require_http_methods(["GET", "POST"])
def email_unsubscribe(request: HttpRequest, token: str) -> HttpResponse:
    """GET asks for confirmation; POST (the one-click) unsubscribes."""
    found = read_token(token)
    if found is None:
        return render(request, "frontend/unsubscribe.html", {"invalid": True}, status=404)
    user, audience = found
    done = request.method == "POST"
    if done:
        preferences.unsubscribe(user, audience)
    return render(
        request,
        "frontend/unsubscribe.html",
        {"done": done, "audience": audience, "address": user.email},
    )


@require_GET
def service_worker(request: HttpRequest) -> HttpResponse:
    """The push service worker, served at the root so its scope is the whole site."""
    response = HttpResponse(SERVICE_WORKER.read_bytes(), content_type="text/javascript")
    response["Service-Worker-Allowed"] = "/"
    response["Cache-Control"] = "no-cache"
    return response
