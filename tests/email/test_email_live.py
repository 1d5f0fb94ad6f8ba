"""E-mail end to end: order events -> a real ``manage.py deliver`` -> a real SMTP server process.

Headers and both parts; the one-click unsubscribe URL POSTed to a real daphne
stops further e-mail; an SMTP outage (server stopped, changes made, server
restarted on the same port) loses nothing and doubles nothing; and a worker
killed between handing a message to the server and recording it does not
send it again (the promise: at most once per row, see
``notifications/email/deliveries.py``).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import httpx
import pytest

from notifications.email.content import tracking_url
from notifications.email.models import EmailMessage, EmailState
from orders.access import order_id_from_token
from orders.actions import transition_order
from tests.support.live import wait_until

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]


def subjects(server: Any) -> list[str]:
    return [m["Subject"] for m in server.messages()]


def wait_for_subject(server: Any, subject: str, timeout: float = 20.0) -> Any:
    return wait_until(
        lambda: next((m for m in server.messages() if m["Subject"] == subject), None),
        timeout,
        f"an e-mail {subject!r}; got {subjects(server)}",
    )


def test_status_emails_have_both_parts_headers_and_the_tracking_link(
    outbound_settings: Any, smtp_server: Any, start_deliver_worker: Any, make_order: Any, alice: Any
) -> None:
    start_deliver_worker()
    order = make_order(alice, "placed")
    placed = wait_for_subject(smtp_server, f"Thank you for your order {order.reference}")
    for status in ("paid", "packed", "shipped"):
        transition_order(order, status)
    shipped = wait_for_subject(smtp_server, f"Your order {order.reference} has shipped")

    for message in (placed, shipped):
        assert message["To"] == "alice@example.com"
        assert message["From"] == "Bookshop Test <orders@bookshop.test>"
        assert message["Message-ID"].startswith("<booktime.customer.")
        assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        link = str(message["List-Unsubscribe"]).strip()  # may be folded onto a second line
        assert link.startswith(f"<{outbound_settings.SITE_URL}/unsubscribe/") and link.endswith(">")
        assert message.get_content_type() == "multipart/alternative"
        parts = {part.get_content_type(): part.get_content() for part in message.iter_parts()}
        assert set(parts) == {"text/plain", "text/html"}
        assert order.reference in parts["text/plain"] and order.reference in parts["text/html"]
        assert "Bookshop Test" in parts["text/html"]
    text = next(p for p in shipped.iter_parts() if p.get_content_type() == "text/plain")
    # The token is signed with a timestamp: compare what it opens, not its text.
    prefix = f"Track your order: {tracking_url(order).split('#')[0]}#"
    line = next(ln for ln in text.get_content().splitlines() if ln.startswith(prefix))
    assert order_id_from_token(line.removeprefix(prefix).strip()) == order.pk
    # paid and packed are not customer e-mails by default; nothing was sent twice.
    wait_until(
        lambda: not EmailMessage.objects.filter(state=EmailState.PENDING).exists(),
        message="every row settled",
    )
    assert len(smtp_server.messages()) == 2
    assert EmailMessage.objects.filter(state=EmailState.SENT).count() == 2


def test_one_click_unsubscribe_against_daphne_stops_further_email(
    outbound_settings: Any,
    smtp_server: Any,
    daphne_server: Any,
    start_deliver_worker: Any,
    make_order: Any,
    alice: Any,
) -> None:
    start_deliver_worker()
    order = make_order(alice, "placed")
    message = wait_for_subject(smtp_server, f"Thank you for your order {order.reference}")
    url = str(message["List-Unsubscribe"]).strip().strip("<>")
    assert url.startswith(daphne_server.url.rstrip("/") + "/unsubscribe/")

    page = httpx.get(url)  # a person clicking the link: a confirmation page, nothing changed yet
    assert page.status_code == 200 and "Unsubscribe?" in page.text
    # What a mail provider sends (RFC 8058): no cookies, no CSRF token.
    response = httpx.post(
        url,
        content="List-Unsubscribe=One-Click",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 200 and "You are unsubscribed" in response.text
    tampered = httpx.post(url[:-3] + "xx/", content="List-Unsubscribe=One-Click")
    assert tampered.status_code == 404

    for status in ("paid", "packed", "shipped"):
        transition_order(order, status)
    row = wait_until(
        lambda: EmailMessage.objects.filter(kind="shipped", state=EmailState.SKIPPED).first(),
        message="the shipped e-mail skipped as unsubscribed",
    )
    assert row.recipient == "alice@example.com"
    assert len(smtp_server.messages()) == 1


def test_smtp_outage_loses_nothing_and_sends_each_once(
    outbound_settings: Any,
    smtp_server: Any,
    start_deliver_worker: Any,
    make_order: Any,
    alice: Any,
    bob: Any,
) -> None:
    start_deliver_worker()
    smtp_server.stop()
    orders = [make_order(alice, "placed"), make_order(bob, "placed"), make_order(alice, "placed")]
    transition_order(orders[1], "cancelled")
    wait_until(
        lambda: EmailMessage.objects.filter(attempts__gte=1, state=EmailState.PENDING).exists(),
        message="a failed attempt recorded while the SMTP server is down",
    )
    assert smtp_server.messages() == []

    smtp_server.start()  # same port, same message directory
    # Bob's "placed" e-mail, still unsent when his order was cancelled, is folded
    # into the "cancelled" one: three e-mails for four rows.
    wait_until(
        lambda: (
            len(smtp_server.messages()) >= 3
            and not EmailMessage.objects.exclude(
                state__in=[EmailState.SENT, EmailState.FOLDED]
            ).exists()
        ),
        30,
        "every e-mail sent after the server came back",
    )
    folded = EmailMessage.objects.get(state=EmailState.FOLDED)
    assert (folded.kind, folded.folded_into.kind) == ("placed", "cancelled")
    ids = Counter(m["Message-ID"] for m in smtp_server.messages())
    sent = EmailMessage.objects.filter(state=EmailState.SENT)
    assert set(ids) == set(sent.values_list("message_id", flat=True))
    assert all(count == 1 for count in ids.values()), ids
    assert len(ids) == sent.count() == 3
    assert sent.filter(attempts__gte=2).exists()  # retried, not lost
    cancelled = next(m for m in smtp_server.messages() if "cancelled" in m["Subject"])
    assert "Before that it was placed" in cancelled.get_body(("plain",)).get_content()


def test_a_worker_killed_after_handing_over_a_message_does_not_send_it_again(
    outbound_settings: Any,
    smtp_server: Any,
    start_deliver_worker: Any,
    make_order: Any,
    alice: Any,
    bob: Any,
) -> None:
    smtp_server.hold(True)  # record the message, then keep the worker waiting for the 250
    first = start_deliver_worker(EMAIL_SENDING_STUCK_SECONDS="1")
    order = make_order(alice, "placed")
    wait_until(lambda: len(smtp_server.messages()) == 1, 20, "the message reached the server")
    row = EmailMessage.objects.get(order_id=order.pk)
    assert row.state == EmailState.SENDING  # committed before the server saw the message
    first.kill()  # the crash: the server has the message, the row does not know
    smtp_server.hold(False)

    start_deliver_worker(EMAIL_SENDING_STUCK_SECONDS="1")
    wait_until(
        lambda: EmailMessage.objects.get(id=row.id).state == EmailState.UNKNOWN,
        20,
        "the interrupted row marked unknown",
    )
    later = make_order(bob, "placed")  # the new worker sends new mail...
    wait_for_subject(smtp_server, f"Thank you for your order {later.reference}")
    # ...but not alice's again: at most once per row.
    assert [m["To"] for m in smtp_server.messages()] == ["alice@example.com", "bob@example.com"]
