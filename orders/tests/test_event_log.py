"""Every create or status change writes exactly one OrderEvent, from any path,
in the same transaction."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.db import transaction

from orders.actions import LineRequest, OrderError, place_order, transition_order
from orders.models import Order, OrderEvent

pytestmark = pytest.mark.django_db


def events_of(order: Order) -> list[OrderEvent]:
    return list(OrderEvent.objects.filter(order=order).order_by("id"))


def test_placing_an_order_logs_one_created_event_with_a_full_snapshot(alice, products):
    order = place_order(alice, [LineRequest(products[0].pk, 2), LineRequest(products[1].pk, 1)])
    [event] = events_of(order)
    assert event.type == "order.created"
    assert event.actor == alice
    assert event.data == {
        "id": order.pk,
        "reference": order.reference,
        "status": "placed",
        "previous_status": None,
        "total": "32.99",
        "items": 3,
        "updated_at": event.data["updated_at"],
    }
    envelope = event.envelope()
    assert envelope["id"] == event.id
    assert envelope["at"].endswith("Z") and len(envelope["at"]) == len("2026-11-24T21:00:00.123Z")


def test_references_look_like_the_design_and_are_unique(alice, make_order):
    refs = {make_order(alice).reference for _ in range(20)}
    assert len(refs) == 20
    assert all(r.startswith("BT-") and len(r) == 9 for r in refs)


def test_a_plain_save_from_the_shell_logs_the_change(alice, make_order):
    order = make_order(alice)
    shell_copy = Order.objects.get(pk=order.pk)
    shell_copy.status = "paid"
    shell_copy.save()
    assert [e.type for e in events_of(order)] == ["order.created", "order.status_changed"]


def test_a_save_that_changes_nothing_logs_nothing(alice, make_order):
    order = make_order(alice)
    Order.objects.get(pk=order.pk).save()
    assert len(events_of(order)) == 1


def test_editing_shipping_details_logs_order_updated(alice, make_order):
    order = make_order(alice)
    order.shipping_city = "Leeds"
    order.save()
    assert events_of(order)[-1].type == "order.updated"


def test_the_actor_and_note_are_recorded(alice, staff_user, make_order):
    order = make_order(alice)
    transition_order(order, "paid", actor=staff_user, note="card captured")
    event = events_of(order)[-1]
    assert event.actor == staff_user and event.note == "card captured"


def test_a_failed_save_writes_no_event(alice, make_order):
    order = make_order(alice)
    before = OrderEvent.objects.count()
    with pytest.raises(RuntimeError), transaction.atomic():
        transition_order(order, "paid")
        raise RuntimeError("payment provider said no after the save")
    assert Order.objects.get(pk=order.pk).status == "placed"
    assert OrderEvent.objects.count() == before


def test_an_invalid_order_request_writes_nothing(alice, products):
    with pytest.raises(OrderError):
        place_order(alice, [LineRequest(products[0].pk, 1), LineRequest(products[2].pk, 1)])
    with pytest.raises(OrderError):
        place_order(alice, [LineRequest(products[0].pk, 100)])
    with pytest.raises(OrderError):
        place_order(alice, [])
    assert not Order.objects.exists() and not OrderEvent.objects.exists()


def test_bulk_update_bypasses_the_log_as_documented(alice, make_order):
    order = make_order(alice)
    Order.objects.filter(pk=order.pk).update(total=Decimal("1.00"))
    assert len(events_of(order)) == 1


def test_event_ids_increase_with_each_change(alice, make_order):
    order = make_order(alice, "delivered")
    ids = [e.id for e in events_of(order)]
    assert ids == sorted(ids) and len(set(ids)) == 5
