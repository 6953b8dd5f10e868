"""For tests that start real processes (qcluster, manage.py) which must use the test database."""

from django.db import connection


def shared_test_database_url() -> str:
    """The test database as a DATABASE_URL (pytest-django has already switched NAME to it). The
    SQLite test database is a file (conftest.py), so other processes can open it too."""
    db = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{db['NAME']}"
    password = f":{db['PASSWORD']}" if db.get("PASSWORD") else ""
    return f"postgres://{db['USER']}{password}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"
