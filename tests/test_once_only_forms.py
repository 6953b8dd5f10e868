"""A form posted twice (double click, browser retry, resend) is done once and answered as the first time."""

import re
import threading

import pytest
import time_machine
from django.db import connection
from django.test import Client
from django.urls import reverse

from scheduling import roles
from scheduling.calls.models import ContactAttempt
from scheduling.worklist.models import AdminTask
from scheduling.submissions import FormSubmission
from tests.factories import london, make_referral, make_user

NOW = london(2026, 3, 10, 10, 0)
TOKEN = re.compile(r'name="form_token" value="([0-9a-f]{32})"')


def outcome_form(client, referral):
    """What the browser would post from the referral's row on the call list."""
    html = client.get(reverse("calls:today"), {"date": "2026-03-10"}).content.decode()
    row = html[html.index(f'id="referral-{referral.pk}"') :]
    token = TOKEN.search(row).group(1)
    return {"referral": referral.pk, "date": "2026-03-10", "practitioner": "", "form_token": token}


@pytest.mark.django_db
def test_every_post_form_on_the_call_list_carries_a_fresh_token(client, pwp, referral, frozen):
    client.force_login(pwp)
    html = client.get(reverse("calls:today")).content.decode()
    tokens = TOKEN.findall(html)
    assert html.count('method="post"') - 1 == len(tokens)  # all but the sign-out form
    assert len(set(tokens)) == len(tokens)


@pytest.mark.django_db
def test_a_double_click_records_one_attempt_and_answers_both_the_same(client, pwp, referral, frozen):
    client.force_login(pwp)
    data = {**outcome_form(client, referral), "button": "wrong_number"}
    first = client.post(reverse("calls:log"), data)
    second = client.post(reverse("calls:log"), data)
    assert ContactAttempt.objects.filter(referral=referral).count() == 1
    assert AdminTask.objects.filter(referral=referral).count() == 1
    assert (second.status_code, second["Location"]) == (first.status_code, first["Location"])
    assert second["X-Form-Replayed"] == "1" and not first.has_header("X-Form-Replayed")


@pytest.mark.django_db
def test_a_double_click_on_an_htmx_row_replays_the_row(client, pwp, referral, frozen):
    client.force_login(pwp)
    data = {**outcome_form(client, referral), "button": "no_answer"}
    first = client.post(reverse("calls:log"), data, HTTP_HX_REQUEST="true")
    second = client.post(reverse("calls:log"), data, HTTP_HX_REQUEST="true")
    assert first.status_code == second.status_code == 200
    assert second.content == first.content
    assert ContactAttempt.objects.filter(referral=referral).count() == 1


@pytest.mark.django_db
def test_another_button_of_the_same_form_is_a_new_submission(client, pwp, referral, frozen):
    client.force_login(pwp)
    form = outcome_form(client, referral)
    client.post(reverse("calls:log"), {**form, "button": "no_answer"})
    client.post(reverse("calls:log"), {**form, "button": "engaged"})
    assert ContactAttempt.objects.filter(referral=referral).count() == 2


@pytest.mark.django_db
def test_a_refused_post_is_not_kept_so_the_same_form_can_be_sent_again(client, pwp, other_pwp, admin_user, frozen):
    theirs = make_referral(other_pwp, actor=admin_user)
    client.force_login(pwp)
    data = {"referral": theirs.pk, "button": "no_answer", "date": "2026-03-10", "form_token": "a" * 32}
    assert client.post(reverse("calls:log"), data).status_code == 403
    assert not FormSubmission.objects.exists()


@pytest.mark.django_db
def test_the_same_token_from_another_user_is_their_own_submission(client, pwp, manager, referral, frozen):
    client.force_login(pwp)
    data = {**outcome_form(client, referral), "button": "engaged"}
    client.post(reverse("calls:log"), data)
    client.force_login(manager)
    client.post(reverse("calls:log"), data)
    assert ContactAttempt.objects.filter(referral=referral).count() == 2


@pytest.mark.django_db
def test_a_post_without_a_token_is_handled_by_the_view_alone(client, pwp, referral, frozen):
    client.force_login(pwp)
    client.post(reverse("calls:log"), {"referral": referral.pk, "button": "engaged", "date": "2026-03-10"})
    assert ContactAttempt.objects.filter(referral=referral).count() == 1
    assert not FormSubmission.objects.exists()


@pytest.mark.postgres_only
@pytest.mark.django_db(transaction=True)
def test_twenty_identical_posts_at_once_record_one_attempt():
    if connection.vendor != "postgresql":
        pytest.skip("Real concurrent connections are tested on PostgreSQL")
    pwp = make_user("pwp.twenty", roles.PWP)
    admin = make_user("admin.twenty", roles.ADMIN_STAFF)
    referral = make_referral(pwp, actor=admin)
    viewer = Client()
    viewer.force_login(pwp)
    with time_machine.travel(NOW, tick=True):
        data = {**outcome_form(viewer, referral), "button": "wrong_number"}
        gate = threading.Barrier(20, timeout=20)
        answers = []

        def post():
            client = Client()
            client.force_login(pwp)
            try:
                gate.wait()
                response = client.post(reverse("calls:log"), data)
                answers.append((response.status_code, response.get("Location")))
            finally:
                connection.close()

        threads = [threading.Thread(target=post) for _ in range(20)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
    assert len(answers) == 20 and len(set(answers)) == 1 and answers[0][0] == 302
    assert ContactAttempt.objects.filter(referral=referral).count() == 1
    assert AdminTask.objects.filter(referral=referral).count() == 1


@pytest.mark.django_db
def test_a_form_shown_again_with_its_errors_is_not_kept(client, admin_user, referral, frozen):
    client.force_login(admin_user)
    data = {"end_code": "50", "reason": "", "form_token": "b" * 32}
    response = client.post(reverse("caseload:discharge", args=[referral.pk]), data)
    referral.refresh_from_db()
    assert response.status_code in (200, 400) and referral.status != "discharged"
    assert not FormSubmission.objects.exists()
