"""The browser pages: sign-in, My orders, order tracking, the staff dashboard.

Each page is rendered with its current state and the event-log cursor it was
read at, so ``booktime-live.js`` resumes from exactly there. The same state
is served as JSON (``?format=json``) for the page to reload after a ``reset``.
Who may see an order is decided by ``notifications.streams.authorize``, the
rule every live transport uses.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.contrib.auth.views import redirect_to_login
from django.db.models import Count, Max
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET

from notifications.log import latest_event_id
from notifications.streams import StreamError, authorize
from notifications.webhooks.health import endpoint_health
from orders.access import make_tracking_token, order_id_from_token
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


def _tracking_page(request: HttpRequest, order: Order, token: str | None) -> HttpResponse:
    state = tracking_state(order)
    if wants_json(request):
        return JsonResponse(state)
    is_owner = request.user.is_authenticated and order.customer_id == request.user.pk
    share_url = None
    if is_owner or request.user.is_staff:
        share_url = request.build_absolute_uri(
            reverse("track_by_token", args=[token or make_tracking_token(order)])
        )
    return render(
        request,
        "frontend/tracking.html",
        {
            "order": order,
            "state": state,
            "live": {"stream": f"order:{order.pk}", "after": state["cursor"], "token": token},
            "share_url": share_url,
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
    return _tracking_page(request, order, token=None)


@require_GET
def track_by_token(request: HttpRequest, token: str) -> HttpResponse:
    """The signed tracking link: no sign-in, one order."""
    order_id = order_id_from_token(token)
    if order_id is None:
        raise Http404("This tracking link is invalid or has expired.")
    try:
        authorize(request.user, f"order:{order_id}", tracking_token=token)
        order = Order.objects.get(pk=order_id)
    except (StreamError, Order.DoesNotExist):
        raise Http404("This tracking link is invalid or has expired.") from None
    return _tracking_page(request, order, token=token)


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
    template_name = "frontend/login.html"
    redirect_authenticated_user = True


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
