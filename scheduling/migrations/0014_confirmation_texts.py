# Confirmation texts: two more editable templates and a switch in the SMS settings.

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('scheduling', '0013_patient_details'),
    ]

    operations = [
        migrations.AddField(
            model_name='smssettings',
            name='send_confirmations',
            field=models.BooleanField(default=True, help_text='Text the patient when a call is booked or moved (a service that tells them otherwise may turn it off).'),
        ),
        migrations.AlterField(
            model_name='messagetemplate',
            name='key',
            field=models.CharField(choices=[('reminder', 'Appointment reminder (days before)'), ('reminder_same_day', 'Appointment reminder (on the day)'), ('opt_in_invitation', 'Invitation to get in touch (calls unanswered)'), ('confirmation', 'Booking confirmation (when a call is booked)'), ('confirmation_moved', 'Confirmation of a new time (when a call is moved)')], max_length=30, unique=True),
        ),
        migrations.AlterField(
            model_name='reminderrule',
            name='template',
            field=models.CharField(choices=[('reminder', 'Appointment reminder (days before)'), ('reminder_same_day', 'Appointment reminder (on the day)'), ('opt_in_invitation', 'Invitation to get in touch (calls unanswered)'), ('confirmation', 'Booking confirmation (when a call is booked)'), ('confirmation_moved', 'Confirmation of a new time (when a call is moved)')], default='reminder', max_length=30),
        ),
    ]
