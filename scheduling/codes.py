"""NHS Data Dictionary / NHS Talking Therapies data set codes.

Stored as the national code itself, so exports feed national returns without translation.
"""

from django.db import models


class ReferralSource(models.TextChoices):
    GP = "A1", "GP"
    OTHER_PRIMARY_CARE = "A3", "Other primary care"
    SELF = "B1", "Self-referral"
    SECONDARY_CARE = "H2", "Other secondary care (rheumatology, MSK, pain clinic)"
    SINGLE_POINT_OF_ACCESS = "M7", "Single point of access"
    STEPPED_UP = "N1", "Stepped up"
    STEPPED_DOWN = "N2", "Stepped down"
    OTHER_TALKING_THERAPIES = "N4", "Other Talking Therapies service"
    INTERNAL = "P1", "Internal"


class EndOfCare(models.TextChoices):
    NOT_ASSESSED = "50", "Not assessed (including unable to contact)"
    NOT_SUITABLE = "10", "Not suitable, returned to referrer"
    ADVICE_AND_SUPPORT = "12", "Discharged after advice and support"
    DECLINED_TREATMENT = "14", "Declined treatment offered"
    INCOMPLETE_ASSESSMENT = "16", "Incomplete assessment (dropped out)"
    COMPLETED = "46", "Completed treatment"
    ENDED_BY_CLINICIAN = "47", "Ended earlier than planned by clinician"
    ENDED_BY_PATIENT = "48", "Ended earlier at patient's request"


class AttendanceOutcome(models.TextChoices):
    """NHS 'attended or did not attend' codes."""

    NOT_APPLICABLE = "0", "Not yet happened"
    CANCELLED_BY_PATIENT = "2", "Cancelled by patient"
    DID_NOT_ATTEND = "3", "Did not attend"
    CANCELLED_BY_PROVIDER = "4", "Cancelled by service"
    ATTENDED = "5", "Attended"
    ATTENDED_LATE = "6", "Late but seen"
    LATE_NOT_SEEN = "7", "Late, could not be seen"


# Plain string values: Enum members hash by name, so `"5" in {AttendanceOutcome.ATTENDED}` would be False.
ATTENDED_OUTCOMES = frozenset({AttendanceOutcome.ATTENDED.value, AttendanceOutcome.ATTENDED_LATE.value})
CANCELLED_OUTCOMES = frozenset({AttendanceOutcome.CANCELLED_BY_PATIENT.value, AttendanceOutcome.CANCELLED_BY_PROVIDER.value})
MISSED_OUTCOMES = frozenset({AttendanceOutcome.DID_NOT_ATTEND.value, AttendanceOutcome.LATE_NOT_SEEN.value})
# The patient came, even too late to be seen: an assessment with one of these was started.
ASSESSMENT_STARTED_OUTCOMES = ATTENDED_OUTCOMES | {AttendanceOutcome.LATE_NOT_SEEN.value}


class ConsultationMechanism(models.TextChoices):
    FACE_TO_FACE = "01", "Face to face"
    TELEPHONE = "02", "Telephone"
    TALK_TYPE = "04", "Talk type (unable to speak)"
    EMAIL = "05", "Email"
    TEXT_MESSAGE = "09", "Text message"
    INSTANT_MESSAGING = "10", "Instant messaging"
    VIDEO = "11", "Video"
    OTHER = "98", "Other"


class AppointmentType(models.TextChoices):
    ASSESSMENT = "assessment", "Initial assessment"
    TREATMENT = "treatment", "Treatment session"
    REVIEW = "review", "Review"

    @property
    def nhs_code(self) -> str:
        return APPOINTMENT_TYPE_NHS_CODES[self]


# NHS appointment type codes: 01 assessment, 02 treatment, 05 review and treatment.
APPOINTMENT_TYPE_NHS_CODES = {
    AppointmentType.ASSESSMENT: "01",
    AppointmentType.TREATMENT: "02",
    AppointmentType.REVIEW: "05",
}


class TaskKind(models.TextChoices):
    """What an admin task (scheduling.worklist) asks staff to do."""

    REARRANGE_REQUEST = "rearrange_request", "Patient asked to rearrange"
    SMS_FAILED = "sms_failed", "Text message could not be delivered"
    SMS_REPLY = "sms_reply", "Text reply to read"
    WRONG_NUMBER = "wrong_number", "Phone number wrong or not in service"
    SELF_SERVICE_LOCKED = "self_service_locked", "Self-service link locked after 3 wrong dates of birth"


class TaskSource(models.TextChoices):
    CALL_LIST = "call_list", "Call list"
    SMS = "sms", "Text message"
    STAFF = "staff", "Staff"
    SELF_SERVICE = "self_service", "Self-service page"
