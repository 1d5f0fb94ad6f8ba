"""The browser pages: sign-in, My orders, order tracking, the staff dashboard.

Each page is rendered with its current state and the event-log cursor it was
read at, so ``booktime-live.js`` resumes from exactly there. The same state
is served as JSON (``?format=json``) for the page to reload after a ``reset``.
Who may see an order is decided by ``notifications.streams.authorize``, the
rule every live transport uses.

Tracking links (``orders.access``) are ``/track/#<token>``: ``track_link``
serves a page whose script posts the fragment's token (``X-Tracking-Token``)
and gets a cookie for that order, then opens ``/track/<id>/``
(``track_order``), which every transport then authorizes by that cookie. No
request line carries the token. What a link holder sees is the order, not
the person: status, timeline, item count and total (``public_tracking_state``).
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.contrib.auth.models import AnonymousUser
from django.contrib.auth.views import redirect_to_login
from django.db.models import Count, Max
from django.forms import Form
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_http_methods

from booktime.clientip import client_address
from booktime.errors import error_body
from booktime.throttles import AUTH_ADDRESS
from frontend.forms import LoginForm
from notifications.log import latest_event_id
from notifications.streams import StreamError, authorize
from notifications.webhooks.health import endpoint_health
from orders.access import (
    TRACKING_HEADER,
    make_tracking_token,
    order_for_token,
    tracking_cookie_name,
    tracking_path,
)
from orders.models import Order, OrderEvent, Product
from orders.status import MAIN_PATH, TRANSITIONS, OrderStatus, allowed_next

# Orders a page lists at most; older ones are reached through the REST API.
PAGE_ORDERS = 50
STATUS_LABELS = dict(OrderStatus.choices)


def wants_json(request: HttpRequest) -> bool:
    return request.GET.get("format") == "json"


# -- small state builders (shared by the HTML and the JSON answer) ------------


def order_row(order: Order, last_event_id: int | None = None) -> dict[str, Any]:
    """One order as the list pages show it."""
    return {
        "id": order.pk,
        "reference": order.reference,
        "status": order.status,
        "status_label": STATUS_LABELS.get(order.status, order.status),
        "total": f"{order.total:.2f}",
        "items": order.item_count,
        "created_at": order.created_at.isoformat(),
        "customer": order.customer.get_username(),
        "next": allowed_next(order.status),
        # The newest event already reflected in this row: live events at or
        # below it are older news and must not roll the row back.
        "last_event_id": last_event_id or 0,
    }


def order_rows(queryset: Any) -> list[dict[str, Any]]:
    orders = queryset.select_related("customer").annotate(last_event=Max("events__id"))
    return [order_row(order, order.last_event) for order in orders[:PAGE_ORDERS]]


def status_counts() -> dict[str, int]:
    """Orders per status, every status present (zero when none)."""
    counts = dict.fromkeys(OrderStatus.values, 0)
    for row in Order.objects.order_by().values("status").annotate(n=Count("id")):
        counts[row["status"]] = row["n"]
    return counts


def timeline_steps(status: str, reached: set[str]) -> list[dict[str, str]]:
    """The tracking steps: main path, then cancelled/returned when they apply.

    Each step is ``done``, ``current`` or ``todo``; ``skipped`` marks main-path
    steps an order will never reach because it was cancelled.
    """
    steps: list[dict[str, str]] = []
    off_path = status in (OrderStatus.CANCELLED, OrderStatus.RETURNED)
    for step in MAIN_PATH:
        if step == status:
            state = "current"
        elif step in reached or (status == OrderStatus.RETURNED):
            state = "done"
        elif status == OrderStatus.CANCELLED:
            state = "skipped"
        else:
            state = "todo"
        steps.append({"status": step, "label": STATUS_LABELS[step], "state": state})
    if off_path:
        steps.append({"status": status, "label": STATUS_LABELS[status], "state": "current"})
    return steps


def event_entry(event: OrderEvent) -> dict[str, Any]:
    return event.envelope()


def tracking_state(order: Order) -> dict[str, Any]:
    """An order's tracking page: its events and the cursor they were read at.

    Event ids follow commit order, so the newest id read here is a cursor that
    misses nothing and repeats nothing.
    """
    events = [event_entry(e) for e in order.events.order_by("id")]
    reached = {e["order"]["status"] for e in events} | {order.status}
    return {
        "order": order_row(order, events[-1]["id"] if events else 0),
        "events": events,
        "steps": timeline_steps(order.status, reached),
        "cursor": events[-1]["id"] if events else 0,
    }


def public_tracking_state(order: Order) -> dict[str, Any]:
    """What a tracking-link holder gets: the order, not the person.

    Status, timeline (event envelopes, which carry no personal data), item
    count and total; no username, name, e-mail or address.
    """
    state = tracking_state(order)
    state["order"] = {k: v for k, v in state["order"].items() if k != "customer"}
    return state


def my_orders_state(user: Any) -> dict[str, Any]:
    # Cursor first: anything committed after it is sent again by the stream,
    # and the rows' last_event_id makes applying it twice harmless.
    cursor = latest_event_id()
    return {"orders": order_rows(Order.objects.filter(customer=user)), "cursor": cursor}


def staff_state() -> dict[str, Any]:
    cursor = latest_event_id()
    return {
        "orders": order_rows(Order.objects.all()),
        "counts": status_counts(),
        "cursor": cursor,
        "webhooks": endpoint_health(),
    }


def page_constants() -> dict[str, Any]:
    """Status names and transitions for the page scripts."""
    return {
        "labels": STATUS_LABELS,
        "main_path": list(MAIN_PATH),
        "transitions": {k: allowed_next(k) for k in TRANSITIONS},
    }


# -- pages ----------------------------------------------------------------------


@require_GET
def home(request: HttpRequest) -> HttpResponse:
    """Staff to the dashboard, customers to their orders, everyone else to sign in."""
    if not request.user.is_authenticated:
        return redirect("login")
    if request.user.is_staff:
        return redirect("staff_dashboard")
    return redirect("my_orders")


@require_GET
@login_required
def my_orders(request: HttpRequest) -> HttpResponse:
    state = my_orders_state(request.user)
    if wants_json(request):
        return JsonResponse(state)
    products = Product.objects.filter(active=True)
    return render(
        request,
        "frontend/my_orders.html",
        {
            "state": state,
            "products": products,
            "constants": page_constants(),
            "live": {"stream": "mine", "after": state["cursor"], "token": None},
        },
    )


def _tracking_page(request: HttpRequest, order: Order, *, public: bool) -> HttpResponse:
    """The tracking page: the owner's/staff's, or (``public``) a link holder's."""
    state = public_tracking_state(order) if public else tracking_state(order)
    if wants_json(request):
        return JsonResponse(state)
    share_url = None
    if not public:  # only the order's customer and staff get here
        share_url = request.build_absolute_uri(tracking_path(make_tracking_token(order)))
    return render(
        request,
        "frontend/tracking.html",
        {
            "order": order,
            "state": state,
            # A link holder's transports authorize by the tracking cookie.
            "live": {"stream": f"order:{order.pk}", "after": state["cursor"], "token": None},
            "share_url": share_url,
            "public": public,
            "constants": page_constants(),
        },
    )


@require_GET
def order_tracking(request: HttpRequest, order_id: int) -> HttpResponse:
    """The owner's (or staff's) tracking page; anyone else gets a 404."""
    if not request.user.is_authenticated:
        return redirect_to_login(request.get_full_path())
    try:
        authorize(request.user, f"order:{order_id}")
    except StreamError:
        # Same answer whether the order exists or not.
        raise Http404("No such order.") from None
    try:
        order = Order.objects.get(pk=order_id)
    except Order.DoesNotExist:
        raise Http404("No such order.") from None
    return _tracking_page(request, order, public=False)


LINK_REFUSED = "This tracking link is invalid, has expired or was revoked."


def _link_refused(request: HttpRequest) -> HttpResponse:
    """404: the tracking-link page that says no (its script retries a fragment once)."""
    if wants_json(request) or request.method == "POST":
        return JsonResponse(error_body("not_found", LINK_REFUSED), status=404)
    return render(
        request, "frontend/track_link.html", {"refused": True, "message": LINK_REFUSED}, status=404
    )


@never_cache
@require_http_methods(["GET", "POST"])
def track_link(request: HttpRequest) -> HttpResponse:
    """``/track/#<token>``. GET: the page that reads the fragment. POST (the
    token in ``X-Tracking-Token``): a cookie for the order, and where to go."""
    if request.method == "GET":
        return render(request, "frontend/track_link.html", {"refused": False})
    address = client_address(request)
    wait = AUTH_ADDRESS.wait(address)
    if wait:
        message = f"Too many invalid tracking links from this address; retry in {wait} s."
        response = JsonResponse(error_body("throttled", message), status=429)
        response["Retry-After"] = str(wait)
        return response
    token = request.headers.get(TRACKING_HEADER) or ""
    order = order_for_token(token)
    if order is None:
        AUTH_ADDRESS.fail(address)
        return _link_refused(request)
    response = JsonResponse({"url": reverse("track_order", args=[order.pk])})
    response.set_cookie(
        tracking_cookie_name(order.pk),
        token,
        max_age=settings.TRACKING_TOKEN_MAX_AGE,
        path="/",
        secure=settings.SESSION_COOKIE_SECURE,
        httponly=True,
        samesite="Strict",
    )
    return response


@never_cache
@require_GET
def track_order(request: HttpRequest, order_id: int) -> HttpResponse:
    """A link holder's tracking page: the token from ``X-Tracking-Token`` or the
    order's tracking cookie; the public view whoever is signed in."""
    token = request.headers.get(TRACKING_HEADER) or request.COOKIES.get(
        tracking_cookie_name(order_id)
    )
    try:
        authorize(AnonymousUser(), f"order:{order_id}", tracking_token=token)
        order = Order.objects.get(pk=order_id)
    except (StreamError, Order.DoesNotExist):
        return _link_refused(request)
    return _tracking_page(request, order, public=True)


@require_GET
def staff_dashboard(request: HttpRequest) -> HttpResponse:
    """All orders, live; staff only (others get a 403, anonymous users sign in)."""
    if not request.user.is_authenticated:
        return redirect_to_login(request.get_full_path())
    try:
        authorize(request.user, "staff")
    except StreamError:
        return render(request, "frontend/forbidden.html", status=403)
    state = staff_state()
    if wants_json(request):
        return JsonResponse(state)
    return render(
        request,
        "frontend/staff.html",
        {
            "state": state,
            "counters": [(s, label, state["counts"][s]) for s, label in STATUS_LABELS.items()],
            "constants": page_constants(),
            "live": {"stream": "staff", "after": state["cursor"], "token": None},
        },
    )


class LoginView(auth_views.LoginView):
    """Sign-in, with failure limits per username and client address (429 past them)."""

    template_name = "frontend/login.html"
    redirect_authenticated_user = True
    authentication_form = LoginForm

    def form_invalid(self, form: Form) -> HttpResponse:
        response = super().form_invalid(form)
        wait = getattr(form, "throttled_wait", 0)
        if wait:
            response.status_code = 429
            response["Retry-After"] = str(wait)
        return response


def logout_page(request: HttpRequest) -> HttpResponse:
    """GET asks for confirmation; POST signs out (Django's LogoutView is POST-only)."""
    if request.method == "POST":
        return auth_views.LogoutView.as_view(next_page="logged_out")(request)
    if not request.user.is_authenticated:
        return redirect("logged_out")
    return render(request, "frontend/logout.html")


@require_GET
def logged_out(request: HttpRequest) -> HttpResponse:
    return render(request, "frontend/logged_out.html")
