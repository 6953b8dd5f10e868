"""An offer of an earlier time, taken through the patient's self-service link: the offer text carries a link of
its own (a setting, off by default), the page shows the first name only until the date of birth, then the time
and one button; taking it goes through the same offers service as a "YES <code>" reply, so the first taker
books it, the others are told it has gone, and it is audited as by the patient, self-service."""

import datetime as dt
import re

import pytest
from django.db import connection
from django.urls import reverse

from scheduling import patient_links, submissions
from scheduling.audit import AuditEntry
from scheduling.booking.models import Appointment, Rearrangement
from scheduling.booking.services import cancel_appointment, set_wants_sooner
from scheduling.caseload.services import record_sms_opt_out
from scheduling.codes import TaskKind
from scheduling.offers import services as offers
from scheduling.offers.models import OfferedSlot, OfferInvitation
from scheduling.patient_links import LinkRefused, PatientLink
from scheduling.reminders import content
from scheduling.reminders.models import InboundMessage, OutboundMessage
from scheduling.selfservice import services as selfservice
from scheduling.worklist.models import AdminTask
from tests.booking_helpers import book
from tests.factories import london, make_patient, make_referral
from tests.offer_helpers import give_pattern, offers_on, reply, waiting

NOW = london(2026, 6, 1, 9)  # Monday
START = london(2026, 6, 10, 14)  # Wednesday 10 June, 14:00
DOB = dt.date(1970, 5, 17)  # tests.factories.make_patient's
BASE = "https://pp.example.nhs.uk"
# Not \b: a token may end in "-" or "_", after which a space is no word boundary (1 link in 32).
TOKEN_IN_TEXT = re.compile(r"/s/([A-Za-z0-9_-]{28})(?![A-Za-z0-9_-])")
Inv = OfferInvitation.Status
Handling = InboundMessage.Handling


@pytest.fixture
def world(pwp, admin_user, freeze, settings):
    freeze(NOW)
    settings.SMS_PUBLIC_BASE_URL = BASE
    give_pattern(pwp)
    offers_on(include_link=True)
    booked = book(make_referral(pwp, received_on=dt.date(2026, 5, 1)), pwp, START, actor=admin_user)
    queue = sorted((waiting(pwp, dt.date(2026, 1, day), given_name=name) for day, name in ((5, "Ann"), (10, "Ben"), (15, "Cat"))),
                   key=lambda r: r.received_on)
    return {"booked": booked, "queue": queue}


def release_and_text(world, admin_user):
    cancel_appointment(appointment=world["booked"], cancelled_by="patient", reason="Away", actor=admin_user)
    offers.advance_offers()
    return OfferedSlot.objects.get(status=OfferedSlot.Status.OPEN)


def token_of(invitation: OfferInvitation) -> str:
    return TOKEN_IN_TEXT.search(OutboundMessage.objects.get(pk=invitation.message_id).body).group(1)


def url(token, name="start"):
    return reverse(f"selfservice:{name}", args=[token])


def verify(client, token, dob=DOB):
    return client.post(url(token), {"day": str(dob.day), "month": str(dob.month), "year": str(dob.year)})


def invitations():
    return list(OfferInvitation.objects.order_by("id"))


# --- The text and its link --------------------------------------------------------------------------


def test_each_offer_text_carries_a_link_of_its_own_to_that_offer_expiring_with_it(world, admin_user):
    slot = release_and_text(world, admin_user)
    links = []
    for invitation in invitations():
        body = OutboundMessage.objects.get(pk=invitation.message_id).body
        token = token_of(invitation)
        assert f"open {BASE}/s/{token} or reply YES {invitation.code} by 2pm on Tuesday" in body
        assert content.clinical_words_in(body) == [] and "STOP" in body
        link = patient_links.resolve_token(token)
        assert (link.purpose, link.offer, link.patient_id) == (PatientLink.Purpose.OFFER, invitation, invitation.patient_id)
        assert link.expires_at == slot.expires_at and link.appointment is None
        links.append(link.pk)
    assert len(set(links)) == 3


def test_offer_texts_carry_no_link_when_the_setting_is_off_or_there_is_no_public_address(world, admin_user, settings):
    offers_on(include_link=False)
    release_and_text(world, admin_user)
    assert not PatientLink.objects.exists()
    assert all("/s/" not in t.body and "reply YES" in t.body for t in OutboundMessage.objects.filter(kind=OutboundMessage.SLOT_OFFER))
    OfferedSlot.objects.update(status=OfferedSlot.Status.STOPPED)
    OfferInvitation.objects.update(status=Inv.WITHDRAWN)
    offers_on(include_link=True)
    settings.SMS_PUBLIC_BASE_URL = ""
    offers.release_slot(practitioner=world["booked"].practitioner, start=START + dt.timedelta(days=1), duration_minutes=60,
                        appointment_type="assessment", released_by=OfferedSlot.ReleasedBy.AVAILABILITY)
    assert offers.advance_offers()["texted"] == 3
    assert not PatientLink.objects.exists()


def test_the_include_link_setting_is_saved_and_audited_on_the_offer_settings_page(client, manager, settings):
    settings.SMS_PUBLIC_BASE_URL = ""
    client.force_login(manager)
    page = client.get(reverse("offers:settings")).content.decode()
    assert "Add the patient&#x27;s self-service link to offer texts" in page and "SMS_PUBLIC_BASE_URL" in page
    response = client.post(reverse("offers:settings"), {
        "enabled": "on", "minimum_notice_hours": "24", "wave_size": "3", "minutes_between_waves": "30", "scope": "caseload",
        "include_link": "on",
    })
    assert response.status_code == 302
    entry = AuditEntry.objects.filter(subject_type=AuditEntry.Subject.OFFER_SETTINGS, actor=manager).latest("id")
    assert "include_link" in str(entry.data)


# --- The page -------------------------------------------------------------------------------------


def test_it_shows_only_the_first_name_until_the_date_of_birth_then_the_offered_time(client, world, admin_user):
    release_and_text(world, admin_user)
    first = invitations()[0]
    token = token_of(first)
    page = client.get(url(token)).content.decode()
    assert "Hello Ann" in page and "10 June" not in page and "Take this time" not in page
    assert first.patient.family_name not in page
    # Taking it before the date of birth: back to the date of birth, nothing booked.
    assert client.post(url(token, "take")).status_code == 302
    assert not Appointment.objects.filter(start=START).not_cancelled().exists()
    assert verify(client, token).status_code == 302
    page = client.get(url(token)).content.decode()
    assert "Wednesday 10 June at 2pm" in page and "by phone" in page and "60 minutes" in page
    assert "Take this time" in page and 'name="csrfmiddlewaretoken"' in page and f'name="{submissions.FIELD_NAME}"' in page


def test_taking_it_on_the_page_books_it_as_the_patient_self_service_and_withdraws_the_others(client, world, admin_user, pwp):
    release_and_text(world, admin_user)
    first, second, third = invitations()
    token = token_of(second)
    verify(client, token)
    assert client.post(url(token, "take")).status_code == 302
    page = client.get(url(token)).content.decode()
    assert "Booked: Wednesday 10 June at 2pm" in page
    appointment = Appointment.objects.filter(start=START).not_cancelled().get()
    assert appointment.referral == second.referral
    assert [i.status for i in invitations()] == [Inv.WITHDRAWN, Inv.ACCEPTED, Inv.WITHDRAWN]
    assert OfferedSlot.objects.get().filled_by == appointment
    assert OutboundMessage.objects.get(pk=first.message_id).status == OutboundMessage.Status.CANCELLED
    assert OutboundMessage.objects.filter(appointment=appointment, kind=OutboundMessage.CONFIRMATION).exists()
    assert AuditEntry.objects.filter(appointment=appointment, field="booking", via=AuditEntry.Via.SELF_SERVICE, actor=None).exists()
    assert AuditEntry.objects.filter(subject_type=AuditEntry.Subject.OFFER_INVITATION, subject_id=second.pk, new_value=Inv.ACCEPTED,
                                     via=AuditEntry.Via.SELF_SERVICE, appointment=appointment).exists()
    # Taking it again (a second tap, another tab) books nothing more and still says booked.
    client.post(url(token, "take"))
    assert Appointment.objects.filter(start=START).not_cancelled().count() == 1
    # On the call list and the record, as the patient's own.
    from scheduling.calls.selectors import booked_calls

    [row] = booked_calls(practitioner=pwp, day=dt.date(2026, 6, 10))
    assert row.appointment == appointment and row.self_service == "Took this offered time on the self-service page"
    staff = client.__class__()
    staff.force_login(admin_user)
    record = staff.get(reverse("caseload:referral_detail", args=[second.referral_id])).content.decode()
    assert "by the patient, self-service" in record
    # A YES to another of the slot's offers afterwards gets the gone text, as before.
    assert reply(first.patient, f"YES {first.code}").handling == Handling.OFFER_GONE


def test_the_page_says_the_time_has_gone_when_a_yes_reply_took_it_first_and_texts_nothing(client, world, admin_user):
    release_and_text(world, admin_user)
    first, second, _ = invitations()
    token = token_of(second)
    verify(client, token)
    assert "Take this time" in client.get(url(token)).content.decode()
    assert reply(first.patient, f"YES {first.code}").handling == Handling.OFFER_TAKEN
    client.post(url(token, "take"))
    page = client.get(url(token)).content.decode()
    assert "Sorry, that time has just gone" in page and "Take this time" not in page
    assert Appointment.objects.filter(start=START).not_cancelled().get().referral == first.referral
    second.refresh_from_db()
    assert second.status == Inv.WITHDRAWN and second.answered_at is not None
    assert not OutboundMessage.objects.filter(kind=OutboundMessage.SLOT_OFFER_GONE).exists()


def test_the_page_says_the_time_has_gone_when_staff_stopped_the_offer(client, world, admin_user):
    slot = release_and_text(world, admin_user)
    token = token_of(invitations()[0])
    verify(client, token)
    offers.stop_offer(slot=slot, actor=admin_user)
    assert "Sorry, that time has just gone" in client.get(url(token)).content.decode()
    client.post(url(token, "take"))
    assert not Appointment.objects.filter(start=START).not_cancelled().exists()


def test_taking_it_as_the_offer_expires_books_nothing(world, admin_user, freeze):
    slot = release_and_text(world, admin_user)
    link = PatientLink.objects.filter(offer=invitations()[0]).get()
    freeze(slot.expires_at)
    acceptance = selfservice.take_offer(link=link)
    assert not acceptance.taken and acceptance.reason == "expired"
    assert OfferedSlot.objects.get().status == OfferedSlot.Status.EXPIRED


def test_a_patient_booked_later_who_takes_it_on_the_page_is_moved_into_it(client, world, admin_user, pwp, freeze):
    for referral in world["queue"]:
        record_sms_opt_out(patient=referral.patient, reason="STOP")
    later = book(make_referral(pwp, patient=make_patient(given_name="Dee"), received_on=dt.date(2026, 3, 1)), pwp,
                 london(2026, 6, 24, 10), actor=admin_user)
    set_wants_sooner(appointment=later, wants_sooner=True, actor=admin_user)
    release_and_text(world, admin_user)
    [invitation] = invitations()
    token = token_of(invitation)
    verify(client, token)
    client.post(url(token, "take"))
    moved = Rearrangement.objects.get(original=later)
    assert moved.asked_by == "patient" and moved.replacement.start == START
    assert "Booked: Wednesday 10 June at 2pm" in client.get(url(token)).content.decode()
    assert AuditEntry.objects.filter(appointment=moved.replacement, field="booking", via=AuditEntry.Via.SELF_SERVICE).exists()


# --- Security -------------------------------------------------------------------------------------


def test_an_offer_link_expires_at_the_offers_expiry(client, world, admin_user, freeze):
    slot = release_and_text(world, admin_user)
    token = token_of(invitations()[0])
    freeze(slot.expires_at - dt.timedelta(seconds=1))
    assert client.get(url(token)).status_code == 200
    freeze(slot.expires_at)
    with pytest.raises(LinkRefused) as refused:
        patient_links.resolve_token(token)
    assert refused.value.reason == "expired"
    response = client.get(url(token))
    assert response.status_code == 410 and "Ann" not in response.content.decode()
    assert client.post(url(token, "take")).status_code == 410


def test_an_offer_link_naming_another_patients_offer_or_tampered_is_refused(client, world, admin_user):
    release_and_text(world, admin_user)
    first, second, _ = invitations()
    token = token_of(first)
    PatientLink.objects.filter(offer=first).update(offer=second)  # a link whose offer is not its patient's
    with pytest.raises(LinkRefused) as refused:
        patient_links.resolve_token(token)
    assert refused.value.reason == "wrong_patient"
    response = client.get(url(token))
    assert response.status_code == 404 and "Ann" not in response.content.decode() and "Ben" not in response.content.decode()
    other = token_of(second)
    tampered = other[:-1] + ("A" if other[-1] != "A" else "B")
    assert client.get(url(tampered)).status_code == 404
    assert client.post(url(tampered, "take")).status_code == 404
    assert not Appointment.objects.filter(start=START).not_cancelled().exists()


def test_an_offer_link_opens_no_appointment_actions_and_an_appointment_link_takes_no_offer(client, world, admin_user):
    release_and_text(world, admin_user)
    token = token_of(invitations()[0])
    verify(client, token)
    for name in ("confirm", "cancel", "move"):
        assert client.post(url(token, name)).status_code == 302
    appointment = book(make_referral(world["booked"].practitioner), world["booked"].practitioner, london(2026, 6, 12, 10))
    appointment_token = patient_links.issue_appointment_link(appointment=appointment).token
    verify(client, appointment_token)
    assert client.post(url(appointment_token, "take")).status_code == 302
    assert not Appointment.objects.filter(start=START).not_cancelled().exists()
    appointment.refresh_from_db()
    assert not appointment.is_cancelled


def test_three_wrong_dates_of_birth_lock_an_offer_link_and_tell_the_worklist(client, world, admin_user):
    release_and_text(world, admin_user)
    first = invitations()[0]
    token = token_of(first)
    for year in (1980, 1981, 1982):
        verify(client, token, dt.date(year, 1, 1))
    assert client.get(url(token)).status_code == 403
    task = AdminTask.objects.get()
    assert task.kind == TaskKind.SELF_SERVICE_LOCKED and task.referral == first.referral
    assert AuditEntry.objects.filter(referral=first.referral, field="self_service_link", new_value="locked").exists()
    assert verify(client, token).status_code == 403  # the right date now changes nothing
    assert client.post(url(token, "take")).status_code == 403


# --- At the same moment -----------------------------------------------------------------------------


@pytest.mark.postgres_only
@pytest.mark.django_db(transaction=True)
def test_the_page_and_a_yes_reply_at_the_same_second_give_one_booking(settings):
    import threading

    from django.test import Client
    from django.utils import timezone

    from scheduling import roles
    from tests.factories import make_user

    if connection.vendor != "postgresql":
        pytest.skip("Real concurrent connections are tested on PostgreSQL")
    settings.SMS_PUBLIC_BASE_URL = BASE
    pwp = make_user("pwp.offer.link.race", roles.PWP)
    give_pattern(pwp, weekdays=range(7), blocks=((dt.time(0), dt.time(23, 59)),))
    offers_on(include_link=True)
    by_text, on_page = (waiting(pwp, dt.date(2026, 1, day)) for day in (1, 2))
    start = (timezone.now() + dt.timedelta(days=5)).replace(minute=0, second=0, microsecond=0)
    slot = offers.release_slot(practitioner=pwp, start=start, duration_minutes=60, appointment_type="assessment",
                               released_by=OfferedSlot.ReleasedBy.CANCELLED)
    offers.advance_offers()
    invited = {i.referral_id: i for i in OfferInvitation.objects.filter(slot=slot)}
    token = token_of(invited[on_page.pk])
    page = Client()
    assert verify(page, token).status_code == 302
    gate = threading.Barrier(2, timeout=20)
    results = {}

    def text():
        try:
            gate.wait()
            results["text"] = reply(by_text.patient, f"YES {invited[by_text.pk].code}").handling
        finally:
            connection.close()

    def tap():
        try:
            gate.wait()
            results["page"] = page.post(url(token, "take")).status_code
        finally:
            connection.close()

    threads = [threading.Thread(target=text), threading.Thread(target=tap)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert results["page"] == 302 and results["text"] in (Handling.OFFER_TAKEN, Handling.OFFER_GONE)
    [appointment] = Appointment.objects.filter(practitioner=pwp, start=start)
    assert OfferedSlot.objects.get(pk=slot.pk).status == OfferedSlot.Status.FILLED
    gone_texts = OutboundMessage.objects.filter(kind=OutboundMessage.SLOT_OFFER_GONE)
    shown = page.get(url(token)).content.decode()
    if results["text"] == Handling.OFFER_TAKEN:
        # The page lost: it says so, and nobody is texted "gone" (the patient is reading the page).
        assert appointment.referral_id == by_text.pk and "Sorry, that time has just gone" in shown
        assert not gone_texts.exists()
    else:
        assert appointment.referral_id == on_page.pk and "Booked:" in shown
        assert [m.patient_id for m in gone_texts] == [by_text.patient_id]
