"""Django finds the app's models here; each capability keeps its own in its own package."""

from scheduling.audit import AuditEntry  # noqa: F401
from scheduling.booking.models import Appointment, Rearrangement  # noqa: F401
from scheduling.booking.models import AvailabilityException, BookingSettings, WorkingHours  # noqa: F401
from scheduling.calls.models import (  # noqa: F401
    CallOutcomeEffect, ContactAttempt, ContactAttemptUndo, ContactPolicy, OptInInvitation, WrongNumberMark,
)
from scheduling.caseload.models import (  # noqa: F401
    CaseloadCover,
    ClinicalNote,
    Patient,
    PractitionerProfile,
    Referral,
    ServiceSettings,
    Team,
)
from scheduling.patient_links import PatientLink  # noqa: F401
from scheduling.offers.models import OfferedSlot, OfferInvitation, OfferSettings  # noqa: F401
from scheduling.reports.models import ImportedEvent  # noqa: F401
from scheduling.selfservice.models import RateCounter  # noqa: F401
from scheduling.submissions import FormSubmission  # noqa: F401
from scheduling.reminders.models import (  # noqa: F401
    DispatchHeartbeat,
    InboundMessage,
    MessageEvent,
    MessageTemplate,
    OutboundMessage,
    ReminderRule,
    SmsSettings,
)
from scheduling.worklist.models import AdminTask, WorklistClaim  # noqa: F401
