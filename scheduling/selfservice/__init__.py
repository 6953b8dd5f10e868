"""The patient's self-service page: reached from the short link in a text (scheduling.patient_links), no login.
The patient proves who they are with their date of birth, then confirms, asks to cancel or picks another time,
or (on an offer's link) takes the earlier time offered."""
