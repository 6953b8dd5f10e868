"""Clinical notes: who may read and write them, writing one, amending one (as a new version), and
reading a referral's notes as chains of versions.

Notes are read by PWPs working the caseload (their own or one they cover) and by managers, never by
admin staff. Note text is never logged, never put in an exception message and never searched.
"""

from dataclasses import dataclass, field
from datetime import timedelta

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from scheduling.caseload.models import ClinicalNote, Referral
from scheduling.caseload.selectors import can_view_clinical_notes, can_view_referral

# A second identical note from the same author on the same referral this soon is the same note sent twice.
DUPLICATE_WINDOW = timedelta(minutes=2)


# --- Who may ------------------------------------------------------------------------------------

def can_read_notes(user, referral: Referral) -> bool:
    return can_view_clinical_notes(user) and can_view_referral(user, referral)


def can_write_notes(user, referral: Referral) -> bool:
    """PWPs on their own caseload or one they cover (can_view_referral decides which caseloads)."""
    return user.has_perm("scheduling.add_clinicalnote") and can_read_notes(user, referral)


# --- Writes -------------------------------------------------------------------------------------

def text_problem(text: str) -> str | None:
    """What is wrong with a note's text (already stripped), in words naming the field, or None."""
    if not text:
        return "Note: write the note before saving it."
    if len(text) > ClinicalNote.MAX_LENGTH:
        return f"Note: at most {ClinicalNote.MAX_LENGTH:,} characters (this one has {len(text):,})."
    return None


def _clean_text(text) -> str:
    text = (text or "").strip()
    problem = text_problem(text)
    if problem:
        raise ValidationError({"text": problem})
    return text


def write_note(*, referral: Referral, author, text: str, appointment=None, contact_attempt=None) -> ClinicalNote:
    """Write a note on a referral; a session note names its appointment, a note on a call its attempt.

    The same text by the same author on the same referral within DUPLICATE_WINDOW is recorded once
    (the earlier note is returned), so a double click or a resent form does not file it twice.
    """
    text = _clean_text(text)
    errors = {}
    if appointment is not None and appointment.referral_id != referral.pk:
        errors["appointment"] = "Appointment: that appointment belongs to another referral."
    if contact_attempt is not None and contact_attempt.referral_id != referral.pk:
        errors["contact_attempt"] = "Call: that call attempt belongs to another referral."
    if errors:
        raise ValidationError(errors)
    now = timezone.now()
    with transaction.atomic():
        # Lock the referral row: two identical posts serialise here and the second finds the first.
        Referral.objects.select_for_update().filter(pk=referral.pk).exists()
        earlier = (
            ClinicalNote.objects.filter(
                referral=referral, author=author, text=text, supersedes__isnull=True, written_at__gte=now - DUPLICATE_WINDOW
            )
            .order_by("-written_at", "-id")
            .first()
        )
        if earlier is not None:
            return earlier
        return ClinicalNote.objects.create(
            referral=referral, author=author, text=text, written_at=now,
            appointment=appointment, contact_attempt=contact_attempt,
        )


def amend_note(*, note: ClinicalNote, author, text: str) -> ClinicalNote:
    """Amend a note: a new version that supersedes `note`, which stays as it was.

    Only the latest version can be amended (someone else's amendment in between is not silently
    overwritten). Sending the same amendment twice returns the first one.
    """
    text = _clean_text(text)
    with transaction.atomic():
        Referral.objects.select_for_update().filter(pk=note.referral_id).exists()
        current = ClinicalNote.objects.select_related("superseded_by").get(pk=note.pk)
        later = getattr(current, "superseded_by", None)
        if later is not None:
            if later.author_id == author.pk and later.text == text:
                return later
            raise ValidationError(
                {"text": "Note: this note was amended by someone else since you opened it. Read the latest version and amend that."},
                code="stale",
            )
        if text == current.text:
            raise ValidationError({"text": "Note: the amended text is the same as the note. Change it, or leave the note as it is."})
        try:
            with transaction.atomic():
                return ClinicalNote.objects.create(
                    referral_id=current.referral_id, author=author, text=text, written_at=timezone.now(),
                    appointment_id=current.appointment_id, contact_attempt_id=current.contact_attempt_id,
                    supersedes=current,
                )
        except IntegrityError:
            # The one-to-one on `supersedes` is the last guard against two amendments at once.
            raise ValidationError(
                {"text": "Note: this note was amended by someone else at the same moment. Read the latest version and amend that."},
                code="stale",
            ) from None


# --- Reads --------------------------------------------------------------------------------------

@dataclass
class NoteThread:
    """One note as the record shows it: its latest version first, the earlier ones oldest first."""

    latest: ClinicalNote
    earlier: list[ClinicalNote] = field(default_factory=list)

    @property
    def first(self) -> ClinicalNote:
        return self.earlier[0] if self.earlier else self.latest

    @property
    def amended(self) -> bool:
        return bool(self.earlier)

    @property
    def earlier_newest_first(self) -> list[ClinicalNote]:
        return list(reversed(self.earlier))


def note_threads(notes) -> list[NoteThread]:
    """Group notes (all versions, any order) into threads, ordered by when each was first written."""
    notes = list(notes)
    by_pk = {n.pk: n for n in notes}
    successor = {n.supersedes_id: n for n in notes if n.supersedes_id}
    threads = []
    for note in sorted(notes, key=lambda n: (n.written_at, n.pk)):
        if note.supersedes_id is not None and note.supersedes_id in by_pk:
            continue  # not the first version: reached from its original
        versions = [note]
        while versions[-1].pk in successor:
            versions.append(successor[versions[-1].pk])
        threads.append(NoteThread(latest=versions[-1], earlier=versions[:-1]))
    return threads


def notes_for_referral(*, referral: Referral, user) -> list[NoteThread]:
    """The referral's notes for someone who may read them; an empty list for anyone else."""
    if not can_read_notes(user, referral):
        return []
    return note_threads(referral.clinical_notes.select_related("author", "appointment", "contact_attempt"))
