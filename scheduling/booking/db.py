"""The database's own guarantee that a practitioner never holds two overlapping live appointments.

PostgreSQL: an exclusion constraint over (practitioner, [start, end)) for rows not cancelled (btree_gist).
SQLite: triggers that refuse an insert or update creating an overlap. The app's SQLite transactions
are IMMEDIATE (settings), so writers are serialised and a trigger's check cannot race another writer.
SQLite drops triggers when Django rebuilds a table (some later ALTERs do), so they are also re-created
after every migrate (post_migrate, idempotent).
"""

from scheduling.codes import CANCELLED_OUTCOMES

OVERLAP_GUARD_NAME = "appointment_no_overlap"
# The cancelled outcomes as an SQL list, "('2', '4')": cancelled appointments free their time.
CANCELLED = "(" + ", ".join(f"'{code}'" for code in sorted(CANCELLED_OUTCOMES)) + ")"

POSTGRES_FORWARD = [
    "CREATE EXTENSION IF NOT EXISTS btree_gist",
    f"""ALTER TABLE scheduling_appointment ADD CONSTRAINT {OVERLAP_GUARD_NAME}
        EXCLUDE USING gist (practitioner_id WITH =, tstzrange("start", "end", '[)') WITH &&)
        WHERE (outcome NOT IN {CANCELLED})""",
]
POSTGRES_REVERSE = [f"ALTER TABLE scheduling_appointment DROP CONSTRAINT IF EXISTS {OVERLAP_GUARD_NAME}"]

_SQLITE_CLASH = f"""EXISTS (SELECT 1 FROM scheduling_appointment a WHERE a.practitioner_id = NEW.practitioner_id
    AND a.outcome NOT IN {CANCELLED} AND a."start" < NEW."end" AND a."end" > NEW."start" AND a.id IS NOT NEW.id)"""
_SQLITE_RAISE = f"SELECT RAISE(ABORT, '{OVERLAP_GUARD_NAME}: the practitioner already has an overlapping appointment');"

SQLITE_FORWARD = [
    f"""CREATE TRIGGER IF NOT EXISTS {OVERLAP_GUARD_NAME}_insert BEFORE INSERT ON scheduling_appointment
        WHEN NEW.outcome NOT IN {CANCELLED} AND {_SQLITE_CLASH}
        BEGIN {_SQLITE_RAISE} END""",
    f"""CREATE TRIGGER IF NOT EXISTS {OVERLAP_GUARD_NAME}_update
        BEFORE UPDATE OF "start", "end", practitioner_id, outcome ON scheduling_appointment
        WHEN NEW.outcome NOT IN {CANCELLED} AND {_SQLITE_CLASH}
        BEGIN {_SQLITE_RAISE} END""",
]
SQLITE_REVERSE = [
    f"DROP TRIGGER IF EXISTS {OVERLAP_GUARD_NAME}_insert",
    f"DROP TRIGGER IF EXISTS {OVERLAP_GUARD_NAME}_update",
]


def install_overlap_guard(schema_editor) -> None:
    vendor = schema_editor.connection.vendor
    statements = {"postgresql": POSTGRES_FORWARD, "sqlite": SQLITE_FORWARD}.get(vendor, [])
    for sql in statements:
        schema_editor.execute(sql)


def remove_overlap_guard(schema_editor) -> None:
    vendor = schema_editor.connection.vendor
    for sql in {"postgresql": POSTGRES_REVERSE, "sqlite": SQLITE_REVERSE}.get(vendor, []):
        schema_editor.execute(sql)


def ensure_sqlite_overlap_guard(using="default", **kwargs) -> None:
    """post_migrate: put the SQLite triggers back if a table rebuild dropped them."""
    from django.db import connections

    connection = connections[using]
    if connection.vendor != "sqlite":
        return
    tables = connection.introspection.table_names()
    if "scheduling_appointment" not in tables:
        return
    with connection.cursor() as cursor:
        for sql in SQLITE_FORWARD:
            cursor.execute(sql)


def is_overlap_violation(exc: Exception) -> bool:
    return OVERLAP_GUARD_NAME in str(exc)


# At most one assessment still to happen per referral: a partial unique index, which
# PostgreSQL and SQLite both enforce. SQLite's message names the column, not the index.
OPEN_ASSESSMENT_GUARD_NAME = "appointment_one_open_assessment_per_referral"
_SQLITE_OPEN_ASSESSMENT_MESSAGE = "UNIQUE constraint failed: scheduling_appointment.referral_id"


def is_open_assessment_violation(exc: Exception) -> bool:
    text = str(exc)
    return OPEN_ASSESSMENT_GUARD_NAME in text or _SQLITE_OPEN_ASSESSMENT_MESSAGE in text


# PostgreSQL's deadlock_detected and serialization_failure (psycopg's errors.DeadlockDetected and
# errors.SerializationFailure), which Django wraps in OperationalError.
LOST_RACE_SQLSTATES = frozenset({"40P01", "40001"})


def is_lost_race(exc: Exception) -> bool:
    cause = exc.__cause__ or exc
    return getattr(cause, "sqlstate", None) in LOST_RACE_SQLSTATES
