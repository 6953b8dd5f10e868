"""Counters for the self-service page's rate limits, kept in the database so every web process (production
runs two gunicorn workers) counts the same requests; a per-process memory cache would not."""

from django.db import models


class RateCounter(models.Model):
    """Requests in one fixed window for one key ("link:<hash prefix>" or "addr:<keyed hash of the address>").
    Counters are bookkeeping, not records: windows older than a day are deleted as new ones start."""

    key = models.CharField(max_length=80)
    window_start = models.DateTimeField()
    hits = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["key", "window_start"], name="rate_counter_one_per_window")]
        indexes = [models.Index(fields=["window_start"], name="rate_counter_window_idx")]

    def __str__(self):
        return f"{self.key[:12]}… {self.hits}"
