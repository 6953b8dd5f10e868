"""Service-wide settings kept in the database as a single row a manager changes."""

from typing import Self

from django.db import models


class SingletonSettings(models.Model):
    """A settings model with one row (pk=1), created with the field defaults the first time it is read.
    Abstract and without fields, so a model that inherits it keeps its own table and migrations."""

    class Meta:
        abstract = True

    def save(self, *args, **kwargs):
        self.pk = 1  # a second row can never be written: every save is the single row
        super().save(*args, **kwargs)

    @classmethod
    def current(cls) -> Self:
        obj, _ = cls.objects.get_or_create(pk=1)
        return obj
