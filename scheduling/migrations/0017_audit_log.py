"""One audit log for any subject: AuditEntry (same table) gets a subject (type and id), an action, a patient
link and structured data, and takes in PatientDetailChange's rows, whose model goes."""

import django.db.models.deletion
from django.db import migrations, models

BATCH = 2000


def subjects_and_patient_changes(apps, schema_editor):
    AuditEntry = apps.get_model("scheduling", "AuditEntry")
    PatientDetailChange = apps.get_model("scheduling", "PatientDetailChange")
    # Until now every entry was about a referral, or one of its appointments.
    AuditEntry.objects.filter(appointment__isnull=False).update(subject_type="appointment", subject_id=models.F("appointment_id"))
    AuditEntry.objects.filter(appointment__isnull=True).update(subject_type="referral", subject_id=models.F("referral_id"))
    batch = []
    for change in PatientDetailChange.objects.order_by("at", "id").iterator(chunk_size=BATCH):
        batch.append(AuditEntry(
            subject_type="patient", subject_id=change.patient_id, action="changed", patient_id=change.patient_id,
            field=change.field, old_value=change.old_value, new_value=change.new_value, data={},
            actor_id=change.actor_id, at=change.at, reason=change.reason,
        ))
        if len(batch) >= BATCH:
            AuditEntry.objects.bulk_create(batch)
            batch = []
    AuditEntry.objects.bulk_create(batch)


def back_to_patient_detail_changes(apps, schema_editor):
    AuditEntry = apps.get_model("scheduling", "AuditEntry")
    PatientDetailChange = apps.get_model("scheduling", "PatientDetailChange")
    others = AuditEntry.objects.filter(referral__isnull=True).exclude(subject_type="patient").count()
    if others:
        # An audit entry is never deleted, and the old table needs a referral on every row.
        raise RuntimeError(f"{others} audit entries (settings, rules, absences) cannot go back to the old audit table.")
    patient_entries = AuditEntry.objects.filter(subject_type="patient").order_by("at", "id")
    PatientDetailChange.objects.bulk_create(
        PatientDetailChange(
            patient_id=entry.patient_id, field=entry.field, old_value=entry.old_value[:100],
            new_value=entry.new_value[:100], actor_id=entry.actor_id, at=entry.at, reason=entry.reason,
        )
        for entry in patient_entries.iterator(chunk_size=BATCH)
    )
    patient_entries.delete()


class Migration(migrations.Migration):

    dependencies = [
        ("scheduling", "0016_report_indexes"),
    ]

    operations = [
        migrations.AddField(
            model_name="auditentry",
            name="subject_type",
            field=models.CharField(
                choices=[
                    ("referral", "Referral"), ("appointment", "Appointment"), ("patient", "Patient"),
                    ("service_settings", "Service settings"), ("booking_settings", "Booking settings"),
                    ("working_hours", "Working hours"), ("availability_exception", "Availability exception"),
                    ("contact_policy", "Contact policy"), ("sms_settings", "SMS settings"),
                    ("message_template", "Message template"), ("reminder_rule", "Reminder rule"),
                ],
                default="referral",
                max_length=30,
            ),
            preserve_default=False,
        ),
        migrations.AddField(
            model_name="auditentry",
            name="subject_id",
            field=models.PositiveBigIntegerField(default=0),
            preserve_default=False,
        ),
        migrations.AddField(
            model_name="auditentry",
            name="action",
            field=models.CharField(
                choices=[("changed", "Changed"), ("added", "Added"), ("withdrawn", "Withdrawn"), ("removed", "Removed")],
                default="changed",
                max_length=20,
            ),
        ),
        migrations.AddField(
            model_name="auditentry",
            name="patient",
            field=models.ForeignKey(
                blank=True, db_index=False, null=True, on_delete=django.db.models.deletion.PROTECT,
                related_name="audit_entries", to="scheduling.patient",
            ),
        ),
        migrations.AddField(
            model_name="auditentry",
            name="data",
            field=models.JSONField(blank=True, default=dict),
        ),
        migrations.AlterField(
            model_name="auditentry",
            name="referral",
            field=models.ForeignKey(
                blank=True, null=True, on_delete=django.db.models.deletion.PROTECT, related_name="audit_entries",
                to="scheduling.referral",
            ),
        ),
        migrations.AlterField(
            model_name="auditentry",
            name="field",
            field=models.CharField(blank=True, max_length=50),
        ),
        migrations.AlterField(
            model_name="auditentry",
            name="old_value",
            field=models.CharField(blank=True, max_length=200),
        ),
        migrations.AlterField(
            model_name="auditentry",
            name="new_value",
            field=models.CharField(blank=True, max_length=200),
        ),
        migrations.AddIndex(
            model_name="auditentry",
            index=models.Index(fields=["patient", "at"], name="audit_patient_at_idx"),
        ),
        migrations.AddIndex(
            model_name="auditentry",
            index=models.Index(fields=["subject_type", "subject_id", "at"], name="audit_subject_at_idx"),
        ),
        # After every schema change to the table (none is left deferred to the end): PostgreSQL refuses to
        # alter or index a table with rows written earlier in the same transaction.
        migrations.RunPython(subjects_and_patient_changes, back_to_patient_detail_changes),
        migrations.DeleteModel(
            name="PatientDetailChange",
        ),
    ]
