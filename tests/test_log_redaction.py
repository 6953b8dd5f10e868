"""Tracebacks go through the same redaction as messages: a database error's DETAIL line, an NHS number or a
phone number in an exception never reaches the log, from Django's handlers or from gunicorn's."""

import logging
import logging.config
import runpy
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.db import IntegrityError

from scheduling.logs import LogfmtFormatter, RedactingFormatter, RedactPatientDataFilter

NHS = "9990000018"
SECRETS = [NHS, "999 000 0018", "+447700900123", "07700 900123", "07700900123", "Smith-Jones"]
DETAIL = f'duplicate key value violates unique constraint "patient_nhs_number_key"\nDETAIL:  Key (nhs_number)=({NHS}) already exists.'
EXCLUSION = (
    'conflicting key value violates exclusion constraint "no_overlap"\nDETAIL:  Key (practitioner_id, tstzrange(start, "end"))'
    '=(7, ["2026-06-10 13:00:00+00","2026-06-10 13:45:00+00")) conflicts with existing key '
    '(practitioner_id, tstzrange(start, "end"))=(7, ["Smith-Jones","2026-06-10 13:30:00+00")).'
)


def _raise_with_patient_data():
    nhs_number, phone, local = NHS, "+447700900123", "07700 900123"  # noqa: F841 (in the frame, as in a real traceback)
    try:
        raise IntegrityError(DETAIL)
    except IntegrityError as exc:
        raise ValueError(f"patient 999 000 0018 on {phone} / {local} / 07700900123\n{EXCLUSION}") from exc


def _log_exception(logger_name):
    try:
        _raise_with_patient_data()
    except ValueError:
        logging.getLogger(logger_name).exception("Creating a referral for %s failed", NHS)


def _assert_clean(output):
    for secret in SECRETS:
        assert secret not in output, (secret, output)
    assert "Key (nhs_number)=([redacted]) already exists" in output
    assert "ValueError" in output and "IntegrityError" in output  # the traceback itself is still there


@pytest.mark.parametrize("logger_name", ["django.request", "scheduling.referrals", "django.db.backends", "q"])
def test_the_configured_handler_redacts_the_traceback_of_a_logged_exception(capsys, logger_name):
    # The handler exactly as settings.LOGGING configures it (stream: stderr, which capsys captures).
    logging.config.dictConfig(django_settings.LOGGING)
    try:
        logging.getLogger("django.db.backends").setLevel(logging.DEBUG)
        _log_exception(logger_name)
    finally:
        logging.config.dictConfig(django_settings.LOGGING)
    output = capsys.readouterr().err
    assert f"logger={logger_name}" in output
    _assert_clean(output)
    assert output.count("logger=") == 1  # one line, not a second unformatted copy


def test_every_configured_handler_uses_a_redacting_formatter():
    formatters = django_settings.LOGGING["formatters"]
    for name, handler in django_settings.LOGGING["handlers"].items():
        factory = formatters[handler["formatter"]]["()"]
        assert factory in ("scheduling.logs.LogfmtFormatter", "scheduling.logs.RedactingFormatter"), name


@pytest.mark.parametrize("formatter", [LogfmtFormatter(), RedactingFormatter("%(levelname)s %(message)s")])
def test_a_formatter_redacts_the_traceback_without_the_filter(formatter):
    try:
        _raise_with_patient_data()
    except ValueError:
        record = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed for %s", (NHS,), exc_info=__import__("sys").exc_info())
    _assert_clean(formatter.format(record))


def test_the_filter_redacts_the_traceback_for_any_formatter():
    try:
        _raise_with_patient_data()
    except ValueError:
        record = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed for %s", (NHS,), exc_info=__import__("sys").exc_info())
    RedactPatientDataFilter().filter(record)
    _assert_clean(logging.Formatter("%(message)s").format(record))


def test_gunicorns_error_and_access_logs_are_redacted(capsys):
    from gunicorn.config import Config
    from gunicorn.glogging import Logger

    conf = runpy.run_path(str(Path(django_settings.BASE_DIR) / "deploy" / "gunicorn.conf.py"))
    cfg = Config()
    for name, value in conf.items():
        if name in cfg.settings:
            cfg.set(name, value)
    assert cfg.logconfig_dict
    gunicorn_log = Logger(cfg)
    try:
        try:
            _raise_with_patient_data()
        except ValueError:
            gunicorn_log.exception("Error handling request /referrals/?q=%s", NHS)
        logging.getLogger("gunicorn.access").info("path=/sms/%s status=200", "+447700900123")
        output = capsys.readouterr()
    finally:
        for name in ("gunicorn.error", "gunicorn.access"):
            logging.getLogger(name).handlers.clear()
        logging.config.dictConfig(django_settings.LOGGING)
    assert "logger=gunicorn.error" in output.err and "status=200" in output.out
    _assert_clean(output.err)
    assert "+447700900123" not in output.out
