"""Booking's rules that pages, services and reports all apply, each written once: when a cancellation is at
short notice (a late cancellation when the patient asked), as a check on one appointment and as the query
condition that selects the same appointments, and how early an attendance outcome may be recorded.
Pure: the service's settings are passed in."""

from datetime import timedelta

from django.db.models import F, Q

from scheduling.codes import AttendanceOutcome

# How early before the start an attendance outcome may be recorded (PWPs sometimes ring a little early).
EARLIEST_OUTCOME_BEFORE_START = timedelta(minutes=30)


def notice_threshold(service_settings) -> timedelta:
    """Less notice than this is short notice (ServiceSettings.late_cancellation_notice_hours)."""
    return timedelta(hours=service_settings.late_cancellation_notice_hours)


def is_short_notice(notice: timedelta, *, service_settings) -> bool:
    """A cancellation asked for `notice` before the start: short when under the threshold (exactly the
    threshold is enough notice). short_notice_q is the same comparison in SQL."""
    return notice < notice_threshold(service_settings)


def short_notice_q(*, service_settings) -> Q:
    """is_short_notice on appointments, as a query condition: start - cancelled_at < threshold."""
    return Q(cancelled_at__gt=F("start") - notice_threshold(service_settings))


def is_late_cancellation(appointment, *, service_settings) -> bool:
    """Cancelled (or rearranged) at the patient's request at short notice. late_cancellation_q selects the same."""
    if appointment.outcome != AttendanceOutcome.CANCELLED_BY_PATIENT or appointment.cancelled_at is None:
        return False
    return is_short_notice(appointment.notice_given, service_settings=service_settings)


def late_cancellation_q(*, service_settings) -> Q:
    return Q(outcome=AttendanceOutcome.CANCELLED_BY_PATIENT.value) & short_notice_q(service_settings=service_settings)


def short_notice_service_cancellation_q(*, service_settings) -> Q:
    """Cancelled by the service at short notice: lost capacity too, though not the patient's doing."""
    return Q(outcome=AttendanceOutcome.CANCELLED_BY_PROVIDER.value) & short_notice_q(service_settings=service_settings)
