"""Demo data for a local run: a small bookshop, two customers, a staff member,
and orders in several statuses, each with its event history.

Idempotent: users and products are created or updated, and a customer who
already has orders gets no new ones, so ``scripts/run`` can run it every
time. Orders go through ``orders.actions`` like real ones, so the event log
and the live streams see them. Refuses to run with DEBUG off (the demo
passwords are public) unless ``--force``.

Used by ``scripts/run``; ``--animate`` keeps moving demo orders along so
the tracking pages and the staff dashboard have something to show.
"""

from __future__ import annotations

import random
import signal
import threading
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction
from django.urls import NoReverseMatch

from orders.access import make_tracking_token, tracking_path
from orders.actions import LineRequest, place_order, transition_order
from orders.models import Order, Product
from orders.status import OrderStatus

DEMO_PASSWORD = "booktime-demo"

PRODUCTS = [
    ("BK-DUNE", "Dune — Frank Herbert", "12.99"),
    ("BK-EMMA", "Emma — Jane Austen", "7.50"),
    ("BK-LEFT", "The Left Hand of Darkness — Ursula K. Le Guin", "10.99"),
    ("BK-BELOVED", "Beloved — Toni Morrison", "9.99"),
    ("BK-SICP", "Structure and Interpretation of Computer Programs", "45.00"),
    ("BK-MIDDLE", "Middlemarch — George Eliot", "8.99"),
]

# username -> (first name, is_staff)
USERS = {
    "alice": ("Alice", False),
    "bob": ("Bob", False),
    "staff": ("Sam", True),
}

# customer -> orders as (status to reach, [(sku, quantity)], shipping)
ORDERS = {
    "alice": [
        ("placed", [("BK-DUNE", 1)]),
        ("shipped", [("BK-EMMA", 2), ("BK-BELOVED", 1)]),
        ("delivered", [("BK-SICP", 1)]),
    ],
    "bob": [
        ("paid", [("BK-LEFT", 1), ("BK-MIDDLE", 1)]),
        ("cancelled", [("BK-EMMA", 1)]),
    ],
}

SHIPPING = {
    "alice": ("Alice Liddell", "7 Rabbit Hole Lane", "Oxford", "OX1 1AA"),
    "bob": ("Bob Cratchit", "15 Camden Town", "London", "NW1 0AA"),
}

# The forward step an animated order takes next (no cancellations or returns).
NEXT_STEP = {
    OrderStatus.PLACED: OrderStatus.PAID,
    OrderStatus.PAID: OrderStatus.PACKED,
    OrderStatus.PACKED: OrderStatus.SHIPPED,
    OrderStatus.SHIPPED: OrderStatus.DELIVERED,
}


def path_to(status: str) -> list[str]:
    """Statuses an order passes through from ``placed`` to ``status``."""
    if status == OrderStatus.CANCELLED:
        return [OrderStatus.CANCELLED]
    if status == OrderStatus.RETURNED:
        return [*path_to(OrderStatus.DELIVERED), OrderStatus.RETURNED]
    steps: list[str] = []
    current: str = OrderStatus.PLACED
    while current != status:
        if current not in NEXT_STEP:
            raise CommandError(f"no demo path to {status!r}")
        current = NEXT_STEP[current]
        steps.append(current)
    return steps


class Command(BaseCommand):
    help = "Create demo users, products and orders (idempotent). DEBUG only unless --force."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--password",
            default=DEMO_PASSWORD,
            help=f"password for the demo users (default: {DEMO_PASSWORD})",
        )
        parser.add_argument(
            "--force", action="store_true", help="run even with DEBUG off (never in production)"
        )
        parser.add_argument(
            "--animate",
            type=float,
            metavar="SECONDS",
            default=None,
            help="after seeding, move a demo order one step every SECONDS until Ctrl-C",
        )

    def handle(self, *args: Any, password: str, force: bool, animate: float | None, **opts: Any):
        if not settings.DEBUG and not force:
            raise CommandError(
                "seed_demo creates users with a public password; it runs only with DEBUG=1 "
                "(or --force on a throw-away database)."
            )
        with transaction.atomic():
            users = self.seed_users(password)
            products = self.seed_products()
        created = self.seed_orders(users, products)
        self.report(users, created, password)
        if animate is not None:
            if animate <= 0:
                raise CommandError("--animate needs a positive number of seconds")
            self.animate(users, products, animate)

    # -- seeding ---------------------------------------------------------------------

    def seed_users(self, password: str) -> dict[str, Any]:
        user_model = get_user_model()
        users = {}
        for username, (first_name, is_staff) in USERS.items():
            user, _ = user_model.objects.get_or_create(
                username=username, defaults={"email": f"{username}@example.com"}
            )
            user.first_name = first_name
            user.is_staff = is_staff
            user.is_superuser = is_staff  # the demo staff member may use the admin
            user.is_active = True
            user.set_password(password)
            user.save()
            users[username] = user
        return users

    def seed_products(self) -> dict[str, Product]:
        products = {}
        for sku, name, price in PRODUCTS:
            product, _ = Product.objects.update_or_create(
                sku=sku, defaults={"name": name, "price": Decimal(price), "active": True}
            )
            products[sku] = product
        return products

    def seed_orders(self, users: dict[str, Any], products: dict[str, Product]) -> list[Order]:
        created = []
        staff = users["staff"]
        for username, orders in ORDERS.items():
            customer = users[username]
            if Order.objects.filter(customer=customer).exists():
                continue
            for status, lines in orders:
                order = self.place(customer, products, lines)
                for step in path_to(status):
                    order = transition_order(order, step, actor=staff, note="demo data")
                created.append(order)
        return created

    def place(self, customer: Any, products: dict[str, Product], lines: list[tuple[str, int]]):
        name, address, city, postcode = SHIPPING[customer.username]
        return place_order(
            customer,
            [LineRequest(products[sku].pk, quantity) for sku, quantity in lines],
            shipping={
                "shipping_name": name,
                "shipping_address": address,
                "shipping_city": city,
                "shipping_postcode": postcode,
                "shipping_country": "GB",
            },
        )

    # -- output -----------------------------------------------------------------------

    def report(self, users: dict[str, Any], created: list[Order], password: str) -> None:
        self.stdout.write(
            self.style.SUCCESS(
                f"Demo data ready: {len(created)} new order(s), {Order.objects.count()} in total."
            )
        )
        for username, (_, is_staff) in USERS.items():
            role = "staff (admin too)" if is_staff else "customer"
            self.stdout.write(f"  sign in as {username!r} / {password!r}  — {role}")
        for order in Order.objects.filter(customer__username__in=ORDERS).order_by("id"):
            token = make_tracking_token(order)
            try:
                link = tracking_path(token)  # /track/#<token>: the token stays in the browser
            except NoReverseMatch:
                link = f"(tracking token {token})"
            self.stdout.write(f"  {order.reference} ({order.status}) {order.customer}: {link}")

    # -- animation ---------------------------------------------------------------------

    def animate(self, users: dict[str, Any], products: dict[str, Product], seconds: float) -> None:
        """Every ``seconds``: move a random open demo order one step, or place a new one."""
        stop = threading.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())
        self.stdout.write(f"Animating: one change every {seconds}s (Ctrl-C to stop)")
        rng = random.Random()
        while not stop.wait(seconds):
            open_orders = list(
                Order.objects.filter(
                    customer__username__in=ORDERS, status__in=list(NEXT_STEP)
                ).values_list("pk", "status")
            )
            if not open_orders or rng.random() < 0.2:
                username = rng.choice(sorted(ORDERS))
                skus = rng.sample(sorted(products), k=rng.randint(1, 2))
                order = self.place(users[username], products, [(sku, 1) for sku in skus])
                self.stdout.write(f"  placed {order.reference} for {username}")
                continue
            pk, status = rng.choice(open_orders)
            order = transition_order(pk, NEXT_STEP[status], actor=users["staff"], note="demo")
            self.stdout.write(f"  {order.reference}: {status} -> {order.status}")
