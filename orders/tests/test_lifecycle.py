"""The transition table: every allowed move works, every other is refused."""

from __future__ import annotations

import itertools

import pytest

from orders.actions import transition_order
from orders.models import Order, OrderEvent
from orders.status import TRANSITIONS, InvalidTransition, OrderStatus, allowed_next

ALL = [s.value for s in OrderStatus]
ALLOWED = [(a, b) for a in ALL for b in sorted(TRANSITIONS[a])]
REFUSED = [(a, b) for a, b in itertools.product(ALL, ALL) if b not in TRANSITIONS[a]]


def test_the_table_matches_the_design():
    assert dict((k, set(v)) for k, v in TRANSITIONS.items()) == {
        "placed": {"paid", "cancelled"},
        "paid": {"packed", "cancelled"},
        "packed": {"shipped", "cancelled"},
        "shipped": {"delivered"},
        "delivered": {"returned"},
        "cancelled": set(),
        "returned": set(),
    }
    assert allowed_next("placed") == ["paid", "cancelled"]


@pytest.mark.django_db
@pytest.mark.parametrize(("current", "target"), ALLOWED)
def test_every_allowed_transition_works_and_logs_one_event(alice, make_order, current, target):
    order = make_order(alice, current)
    before = OrderEvent.objects.filter(order=order).count()
    transition_order(order, target)
    order.refresh_from_db()
    assert order.status == target
    events = list(OrderEvent.objects.filter(order=order).order_by("id"))
    assert len(events) == before + 1
    assert events[-1].type == "order.status_changed"
    assert events[-1].data["status"] == target
    assert events[-1].data["previous_status"] == current


@pytest.mark.django_db
@pytest.mark.parametrize(("current", "target"), REFUSED)
def test_every_other_transition_is_refused_with_a_clear_message(alice, make_order, current, target):
    order = make_order(alice, current)
    before = OrderEvent.objects.count()
    with pytest.raises(InvalidTransition) as refused:
        transition_order(order, target)
    assert current in str(refused.value) and target in str(refused.value)
    assert Order.objects.get(pk=order.pk).status == current
    assert OrderEvent.objects.count() == before


@pytest.mark.django_db
def test_an_unknown_status_is_refused(alice, make_order):
    order = make_order(alice)
    with pytest.raises(InvalidTransition, match="not an order status"):
        transition_order(order, "teleported")


@pytest.mark.django_db
def test_a_new_order_must_start_as_placed(alice):
    with pytest.raises(InvalidTransition, match="must start as 'placed'"):
        Order(customer=alice, status="shipped").save()
    assert not Order.objects.exists()


@pytest.mark.django_db
def test_a_stale_copy_cannot_skip_the_check(alice, make_order):
    """Two holders of the same order: the second transition is checked
    against the stored status, not the stale in-memory one."""
    order = make_order(alice, "placed")
    stale = Order.objects.get(pk=order.pk)
    transition_order(order, "cancelled")
    stale.status = "paid"  # placed -> paid looks fine from the stale copy
    with pytest.raises(InvalidTransition, match="cancelled"):
        stale.save()
