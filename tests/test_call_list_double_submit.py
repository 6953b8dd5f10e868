"""A call-list click sent twice, or twenty times at once, is recorded once: a double click, a form re-sent
without JavaScript or a retried request must not log extra attempts, use up the contact policy, raise
extra tasks or turn a session into a did-not-attend. Undo and the opt-in invitation likewise."""

import threading
from datetime import timedelta

import pytest
from django.db import connection
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from scheduling import roles
from scheduling.booking.services import book_appointment
from scheduling.calls.models import ContactAttempt, ContactAttemptUndo, ContactPolicy, OptInInvitation
from scheduling.calls.services import (
    SAME_SUBMISSION_WINDOW,
    CallButton,
    log_contact_attempt,
    record_call_outcome,
    undo_call_outcome,
)
from scheduling.caseload.models import CaseloadCover
from scheduling.worklist.models import AdminTask
from scheduling.codes import AttendanceOutcome as O
from scheduling.reminders.models import OutboundMessage
from tests.factories import london, make_referral, make_user

NOW = london(2026, 3, 10, 10, 0)
LOG, UNDO, INVITE = reverse("calls:log"), reverse("calls:undo"), reverse("calls:invite")


@pytest.fixture
def session(frozen, referral, pwp, admin_user):
    return book_appointment(referral=referral, practitioner=pwp, appointment_type="assessment", start=NOW, actor=admin_user)


def click(referral, button, actor, **kw):
    return record_call_outcome(referral=referral, button=button, actor=actor, **kw)


# --- sequential double posts (SQLite and PostgreSQL) -------------------------------------------


@pytest.mark.django_db
def test_the_same_outcome_posted_twice_without_javascript_is_recorded_once_and_both_answers_say_recorded(
    client, frozen, pwp, referral
):
    client.force_login(pwp)
    data = {"referral": referral.pk, "button": "no_answer", "date": "2026-03-10"}
    for _ in range(2):
        page = client.post(LOG, data, follow=True).content.decode()
        assert "Recorded: No answer." in page and "Not recorded" not in page
    assert ContactAttempt.objects.filter(referral=referral).count() == 1


@pytest.mark.django_db
def test_spoke_at_a_session_posted_twice_answers_recorded_rather_than_already_has_an_outcome(client, pwp, session, referral):
    client.force_login(pwp)
    data = {"referral": referral.pk, "appointment": session.pk, "button": "spoke", "date": "2026-03-10"}
    first = client.post(LOG, data, HTTP_HX_REQUEST="true").content.decode()
    second = client.post(LOG, data, HTTP_HX_REQUEST="true").content.decode()
    assert "Recorded: Spoke – session held." in first and "Recorded: Spoke – session held." in second
    assert "Not recorded" not in second
    assert ContactAttempt.objects.count() == 1
    session.refresh_from_db()
    assert session.outcome == O.ATTENDED


@pytest.mark.django_db
def test_wrong_number_sent_twice_raises_one_task(pwp, session, referral, frozen):
    first = click(referral, CallButton.WRONG_NUMBER, pwp, appointment=session)
    frozen.shift(timedelta(seconds=30))
    assert click(referral, CallButton.WRONG_NUMBER, pwp, appointment=session) == first
    assert AdminTask.objects.count() == 1 and ContactAttempt.objects.count() == 1


@pytest.mark.django_db
def test_no_answer_sent_twice_at_a_session_is_not_two_tries_towards_a_did_not_attend(pwp, session, referral):
    click(referral, CallButton.NO_ANSWER, pwp, appointment=session)
    click(referral, CallButton.NO_ANSWER, pwp, appointment=session)
    session.refresh_from_db()
    assert session.outcome == O.NOT_APPLICABLE  # the default is two tries before a DNA
    assert ContactAttempt.objects.count() == 1


@pytest.mark.django_db
def test_no_answer_sent_again_does_not_use_up_the_contact_policy(pwp, referral, frozen):
    for _ in range(5):
        click(referral, CallButton.NO_ANSWER, pwp)
    assert ContactAttempt.objects.count() == 1
    assert not OptInInvitation.objects.exists() and not OutboundMessage.objects.exists()


@pytest.mark.django_db
def test_a_different_click_another_session_another_person_or_a_later_call_is_recorded(
    pwp, other_pwp, manager, session, referral, frozen, admin_user
):
    CaseloadCover.objects.create(covering=other_pwp, covered=pwp, starts_on=NOW.date(), ends_on=NOW.date(), created_by=manager)
    click(referral, CallButton.NO_ANSWER, pwp, appointment=session)
    click(referral, CallButton.ENGAGED, pwp, appointment=session)  # another button
    click(referral, CallButton.NO_ANSWER, pwp)  # the to-reach row, not the session
    click(referral, CallButton.NO_ANSWER, other_pwp)  # another person
    click(referral, CallButton.CALLBACK, pwp, callback_at=NOW + timedelta(hours=2))
    click(referral, CallButton.CALLBACK, pwp, callback_at=NOW + timedelta(hours=3))  # a corrected time
    frozen.shift(SAME_SUBMISSION_WINDOW + timedelta(seconds=1))
    click(referral, CallButton.NO_ANSWER, pwp)  # rung again later
    assert ContactAttempt.objects.count() == 7
    assert SAME_SUBMISSION_WINDOW == timedelta(minutes=2)


@pytest.mark.django_db
def test_the_same_click_after_an_undo_is_recorded_again(pwp, referral, frozen):
    first = click(referral, CallButton.NO_ANSWER, pwp)
    undo_call_outcome(attempt=first, actor=pwp)
    again = click(referral, CallButton.NO_ANSWER, pwp)
    assert again != first and ContactAttempt.objects.effective().get() == again


@pytest.mark.django_db
def test_undo_posted_twice_undoes_once_and_both_answers_say_undone(client, pwp, referral, frozen):
    client.force_login(pwp)
    attempt = click(referral, CallButton.SPOKE, pwp)
    for _ in range(2):
        html = client.post(UNDO, {"attempt": attempt.pk, "date": "2026-03-10"}, HTTP_HX_REQUEST="true").content.decode()
        assert "Undone: Spoke to patient." in html and "Not recorded" not in html
    assert ContactAttemptUndo.objects.count() == 1
    assert referral.audit_entries.filter(field="status", reason__startswith="Undo").count() == 1


@pytest.mark.django_db
def test_invite_posted_twice_records_one_invitation_and_queues_one_text(client, pwp, referral, frozen):
    for hours in (50, 26, 2):
        log_contact_attempt(referral=referral, practitioner=pwp, outcome="busy", attempted_at=NOW - timedelta(hours=hours))
    client.force_login(pwp)
    for _ in range(2):
        html = client.post(INVITE, {"referral": referral.pk}, HTTP_HX_REQUEST="true").content.decode()
        assert "Opt-in invitation recorded." in html and "Not recorded" not in html
    assert OptInInvitation.objects.count() == 1
    assert OutboundMessage.objects.count() == 1


# --- many at once, each on its own connection (PostgreSQL) ------------------------------------------


def _post_at_once(clients, url, data):
    """Every client posts at the same moment, each from its own thread (so its own database connection)."""
    gate = threading.Barrier(len(clients), timeout=60)
    responses = [None] * len(clients)

    def post(i):
        try:
            gate.wait()
            responses[i] = clients[i].post(url, data, HTTP_HX_REQUEST="true")
        finally:
            connection.close()

    threads = [threading.Thread(target=post, args=(i,)) for i in range(len(clients))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    return responses


def _logged_in_clients(user, n=20):
    clients = []
    for _ in range(n):
        client = Client()
        client.force_login(user)
        clients.append(client)
    return clients


def _needs_postgres():
    if connection.vendor != "postgresql":
        pytest.skip("Real concurrent connections are tested on PostgreSQL")


@pytest.mark.postgres_only
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("button, booked", [("no_answer", False), ("wrong_number", False), ("no_answer", True), ("spoke", True)])
def test_twenty_identical_posts_at_once_leave_one_attempt_and_its_effects_once(button, booked):
    _needs_postgres()
    pwp = make_user("pwp.race", roles.PWP)
    admin = make_user("admin.race", roles.ADMIN_STAFF)
    referral = make_referral(pwp, actor=admin)
    ContactPolicy.current()
    data = {"referral": referral.pk, "button": button}
    session = None
    if booked:
        session = book_appointment(
            referral=referral, practitioner=pwp, appointment_type="assessment",
            start=timezone.now() + timedelta(minutes=5), actor=admin,
        )
        data["appointment"] = session.pk
    clients = _logged_in_clients(pwp)

    responses = _post_at_once(clients, LOG, data)

    label = CallButton(button).label
    assert [r.status_code for r in responses] == [200] * 20
    assert all(f"Recorded: {label}." in r.content.decode() for r in responses)
    assert ContactAttempt.objects.filter(referral=referral).count() == 1
    assert AdminTask.objects.filter(referral=referral).count() <= 1
    assert not OptInInvitation.objects.exists()
    assert not OutboundMessage.objects.filter(kind=OutboundMessage.OPT_IN_INVITATION).exists()
    if session is not None:
        session.refresh_from_db()
        assert session.outcome == (O.ATTENDED if button == "spoke" else O.NOT_APPLICABLE)


@pytest.mark.postgres_only
@pytest.mark.django_db(transaction=True)
def test_twenty_undos_at_once_undo_once_and_twenty_invitations_at_once_make_one():
    _needs_postgres()
    pwp = make_user("pwp.race", roles.PWP)
    admin = make_user("admin.race", roles.ADMIN_STAFF)
    referral = make_referral(pwp, actor=admin)
    ContactPolicy.current()
    now = timezone.now()
    for hours in (50, 26, 2):
        log_contact_attempt(referral=referral, practitioner=pwp, outcome="busy", attempted_at=now - timedelta(hours=hours))
    clients = _logged_in_clients(pwp)

    responses = _post_at_once(clients, INVITE, {"referral": referral.pk})
    assert all("Opt-in invitation recorded." in r.content.decode() for r in responses)
    assert OptInInvitation.objects.filter(referral=referral).count() == 1
    assert OutboundMessage.objects.filter(kind=OutboundMessage.OPT_IN_INVITATION).count() == 1

    attempt = record_call_outcome(referral=referral, button=CallButton.SPOKE, actor=pwp)
    responses = _post_at_once(clients, UNDO, {"attempt": attempt.pk})
    assert all("Undone: Spoke to patient." in r.content.decode() for r in responses)
    assert ContactAttemptUndo.objects.count() == 1
    assert referral.audit_entries.filter(field="status", reason__startswith="Undo").count() == 1
