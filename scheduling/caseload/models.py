"""Who is on the caseload and who works it: staff, patients, referrals and admin tasks (the audit log is
scheduling.audit)."""

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from scheduling.caseload.nhs_number import NHS_NUMBER_REGEX, REPEATED_DIGIT_NUMBERS, validate_stored_nhs_number
from scheduling.caseload.phones import (
    E164_REGEX,
    UK_MOBILE_REGEX,
    validate_stored_phone,
    validate_stored_uk_mobile,
)
from scheduling.codes import EndOfCare, ReferralSource
from scheduling.singletons import SingletonSettings

WEEKDAY_NAMES = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]


class TimeOfDay(models.TextChoices):
    MORNING = "morning", "Morning (08:00-12:00)"
    AFTERNOON = "afternoon", "Afternoon (12:00-17:00)"
    EVENING = "evening", "Early evening (17:00-20:00)"


# Local (Europe/London) hour ranges [start, end) of each part of the day.
TIME_OF_DAY_HOURS = {
    TimeOfDay.MORNING: (8, 12),
    TimeOfDay.AFTERNOON: (12, 17),
    TimeOfDay.EVENING: (17, 20),
}


def time_of_day_for(local_hour: int) -> str | None:
    for part, (start, end) in TIME_OF_DAY_HOURS.items():
        if start <= local_hour < end:
            return part
    return None


class Team(models.Model):
    name = models.CharField(max_length=100, unique=True)

    def __str__(self):
        return self.name


class PractitionerProfile(models.Model):
    """A clinician (usually a PWP). Imported practitioners may have a user with no usable login."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="practitioner")
    team = models.ForeignKey(Team, null=True, blank=True, on_delete=models.PROTECT, related_name="practitioners")
    job_title = models.CharField(max_length=100, default="Psychological Wellbeing Practitioner")
    # How many unanswered tries within a booked telephone slot before it is recorded as a DNA.
    tries_before_dna = models.PositiveSmallIntegerField(default=2)
    is_active_clinician = models.BooleanField(default=True)

    class Meta:
        ordering = ["user__last_name", "user__first_name"]

    def __str__(self):
        return self.user.get_full_name() or self.user.get_username()


class CaseloadCover(models.Model):
    """`covering` works `covered`'s caseload between two dates (leave, sickness, vacancy)."""

    covering = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="covers_given")
    covered = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="covers_received")
    starts_on = models.DateField()
    ends_on = models.DateField()
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(ends_on__gte=models.F("starts_on")), name="cover_ends_after_start"),
            models.CheckConstraint(condition=~Q(covering=models.F("covered")), name="cover_not_self"),
        ]

    def __str__(self):
        return f"{self.covering} covers {self.covered} {self.starts_on}-{self.ends_on}"


class Patient(models.Model):
    # The validators refuse bad values in model forms (Django admin included); the check constraints
    # below refuse them from every other path, bulk writes and raw SQL too.
    nhs_number = models.CharField("NHS number", max_length=10, unique=True, validators=[validate_stored_nhs_number])
    given_name = models.CharField(max_length=100)
    family_name = models.CharField(max_length=100)
    date_of_birth = models.DateField(null=True, blank=True)  # nullable: the activity import has no date of birth
    # E.164 ("+447700900123"); validated and normalised by scheduling.caseload.phones.
    # Texts go here, so it holds UK mobiles only; other_phone may be any valid number.
    mobile_phone = models.CharField(max_length=16, blank=True, validators=[validate_stored_uk_mobile])
    mobile_is_mobile = models.BooleanField(default=False, editable=False)
    other_phone = models.CharField(max_length=16, blank=True, validators=[validate_stored_phone])
    sms_consent = models.BooleanField("consents to SMS", default=False)
    sms_consent_recorded_at = models.DateTimeField(null=True, blank=True)
    voicemail_allowed = models.BooleanField("voicemail may be left", default=False)
    # Preferred contact windows: weekdays 0=Mon..6=Sun, and parts of the day (TimeOfDay values).
    # Both empty means "any time in working hours".
    preferred_days = models.JSONField(default=list, blank=True)
    preferred_times = models.JSONField(default=list, blank=True)
    sms_opted_out = models.BooleanField(default=False)
    sms_opted_out_at = models.DateTimeField(null=True, blank=True)
    is_demo = models.BooleanField(default=False, editable=False)
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["family_name", "given_name"]
        indexes = [models.Index(fields=["mobile_phone"]), models.Index(fields=["family_name", "given_name"])]
        constraints = [
            models.CheckConstraint(
                condition=Q(nhs_number__regex=NHS_NUMBER_REGEX) & ~Q(nhs_number__in=REPEATED_DIGIT_NUMBERS),
                name="patient_nhs_number_ten_ascii_digits",
                violation_error_message="An NHS number is stored as 10 digits 0-9, not one digit repeated.",
            ),
            models.CheckConstraint(
                condition=Q(mobile_phone="") | Q(mobile_phone__regex=UK_MOBILE_REGEX),
                name="patient_mobile_phone_uk_mobile_e164",
                violation_error_message="The mobile for texts is stored as a UK mobile in E.164 (+447...).",
            ),
            models.CheckConstraint(
                condition=Q(other_phone="") | Q(other_phone__regex=E164_REGEX),
                name="patient_other_phone_e164",
                violation_error_message="The other phone is stored in E.164 (+ and up to 15 digits).",
            ),
        ]

    def __str__(self):
        return self.full_name

    @property
    def full_name(self) -> str:
        return f"{self.given_name} {self.family_name}"

    @property
    def nhs_number_display(self) -> str:
        n = self.nhs_number
        return f"{n[:3]} {n[3:6]} {n[6:]}"

    def age_on(self, day) -> int | None:
        dob = self.date_of_birth
        if dob is None:
            return None
        return day.year - dob.year - ((day.month, day.day) < (dob.month, dob.day))

    @property
    def can_receive_sms(self) -> bool:
        return bool(self.sms_consent and not self.sms_opted_out and self.mobile_phone and self.mobile_is_mobile)

    @property
    def contact_windows_display(self) -> str:
        days = sorted(int(d) for d in self.preferred_days)
        if not days or days == list(range(7)):
            day_text = "any day"
        elif days == [0, 1, 2, 3, 4]:
            day_text = "weekdays"
        elif set(days) < {0, 1, 2, 3, 4} and len(days) == 4:
            missing = ({0, 1, 2, 3, 4} - set(days)).pop()
            day_text = f"weekdays, not {WEEKDAY_NAMES[missing]}"
        else:
            day_text = ", ".join(WEEKDAY_NAMES[d] for d in days)
        labels = {TimeOfDay.MORNING: "mornings", TimeOfDay.AFTERNOON: "afternoons", TimeOfDay.EVENING: "early evenings"}
        times = [labels[t] for t in TimeOfDay.values if t in self.preferred_times]
        time_text = " and ".join(times) if times else "any time"
        return f"{day_text}, {time_text}"


class Referral(models.Model):
    class Status(models.TextChoices):
        AWAITING_CONTACT = "awaiting_contact", "Awaiting first contact"
        CONTACTED = "contacted", "Contacted"
        ASSESSMENT_BOOKED = "assessment_booked", "Assessment booked"
        ASSESSED = "assessed", "Assessed"
        IN_TREATMENT = "in_treatment", "In treatment"
        DISCHARGED = "discharged", "Discharged"

    # Which status changes the service functions allow. Anything else is refused.
    TRANSITIONS = {
        Status.AWAITING_CONTACT: {Status.CONTACTED, Status.ASSESSMENT_BOOKED, Status.DISCHARGED},
        Status.CONTACTED: {Status.ASSESSMENT_BOOKED, Status.DISCHARGED},
        # Back to "contacted" when the booked assessment is cancelled or missed and must be rebooked.
        Status.ASSESSMENT_BOOKED: {Status.ASSESSED, Status.CONTACTED, Status.DISCHARGED},
        Status.ASSESSED: {Status.IN_TREATMENT, Status.DISCHARGED},
        Status.IN_TREATMENT: {Status.DISCHARGED},
        Status.DISCHARGED: set(),
    }
    OPEN_STATUSES = list(TRANSITIONS)[:-1]  # every status but discharged

    patient = models.ForeignKey(Patient, on_delete=models.PROTECT, related_name="referrals")
    source = models.CharField(max_length=2, choices=ReferralSource.choices)
    received_on = models.DateField()
    reason = models.CharField("reason for referral", max_length=200)
    step = models.PositiveSmallIntegerField(choices=[(2, "Step 2"), (3, "Step 3")], default=2)
    assigned_practitioner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="assigned_referrals", null=True, blank=True
    )
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.AWAITING_CONTACT, editable=False)
    end_code = models.CharField(max_length=2, choices=EndOfCare.choices, blank=True, editable=False)
    ended_on = models.DateField(null=True, blank=True, editable=False)
    # Identifier from another system (activity import); unique when present.
    external_id = models.CharField(max_length=64, blank=True)
    is_demo = models.BooleanField(default=False, editable=False)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+", null=True, blank=True
    )

    class Meta:
        ordering = ["received_on", "id"]
        indexes = [
            models.Index(fields=["assigned_practitioner", "status"]),
            models.Index(fields=["status", "received_on"]),
            # The open referrals held longest (capacity report) in order, without reading the discharged
            # ones: the condition is OPEN_STATUSES, spelt out because Meta cannot see the class body.
            models.Index(
                fields=["received_on", "id"],
                condition=Q(status__in=["awaiting_contact", "contacted", "assessment_booked", "assessed", "in_treatment"]),
                name="referral_open_received_idx",
            ),
        ]
        constraints = [
            models.UniqueConstraint(fields=["external_id"], condition=~Q(external_id=""), name="referral_external_id_unique"),
        ]
        permissions = [
            ("view_all_caseloads", "Can open every practitioner's caseload and call list"),
            ("book_appointments", "Can book, rebook and cancel appointments"),
            ("log_contact", "Can log call attempts and session outcomes"),
            ("view_reports", "Can view capacity and waiting-time reports"),
            ("manage_service_settings", "Can change service settings, policies and templates"),
            ("discharge_referral", "Can discharge a referral"),
        ]

    def __str__(self):
        return f"Referral {self.pk} for {self.patient}"


class ClinicalNote(models.Model):
    """Free-text clinical note. Admin staff cannot read these (no view_clinicalnote permission).

    Never edited or deleted: an amendment is a new row that `supersedes` the version it replaces, so
    every earlier wording stays readable. Written through scheduling.caseload.notes."""

    MAX_LENGTH = 5000

    referral = models.ForeignKey(Referral, on_delete=models.PROTECT, related_name="clinical_notes")
    author = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    written_at = models.DateTimeField(default=timezone.now)
    text = models.TextField()
    # A session note names its appointment; a note written on a call names the attempt.
    appointment = models.ForeignKey(
        "scheduling.Appointment", on_delete=models.PROTECT, related_name="clinical_notes", null=True, blank=True
    )
    contact_attempt = models.ForeignKey(
        "scheduling.ContactAttempt", on_delete=models.PROTECT, related_name="clinical_notes", null=True, blank=True
    )
    # One-to-one: a version is replaced at most once, so two amendments of the same version cannot both win.
    supersedes = models.OneToOneField(
        "self", on_delete=models.PROTECT, related_name="superseded_by", null=True, blank=True
    )

    class Meta:
        ordering = ["written_at", "id"]
        indexes = [models.Index(fields=["referral", "written_at"], name="clinicalnote_referral_at_idx")]

    def __str__(self):
        # No text here: __str__ ends up in admin pages, logs and error reports.
        return f"Clinical note {self.pk} on referral {self.referral_id}"




class ServiceSettings(SingletonSettings):
    """Service-wide settings a manager changes in the database. A single row (pk=1)."""

    late_cancellation_notice_hours = models.PositiveSmallIntegerField(
        default=24, help_text="A patient cancellation or rearrangement with less notice than this is a late cancellation."
    )
    failed_call_minutes = models.PositiveSmallIntegerField(
        default=5, help_text="Clinician minutes each unsuccessful call attempt costs (outside booked sessions)."
    )
    clinician_hourly_cost_pence = models.PositiveIntegerField(
        default=3500, help_text="Cost of one clinician hour, in pence, used to show lost time in pounds."
    )
    booking_lead_time_hours = models.PositiveSmallIntegerField(
        default=24, help_text="Earliest a new appointment may be offered, in hours from now."
    )
    service_name = models.CharField(max_length=100, default="Pain Platform Talking Therapies")
    service_phone = models.CharField(max_length=20, default="01632 960000", help_text="Number patients call back on.")

    class Meta:
        verbose_name_plural = "service settings"

    def __str__(self):
        return "Service settings"
