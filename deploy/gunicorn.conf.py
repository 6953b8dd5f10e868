"""gunicorn settings for painplatform. Override any of them with GUNICORN_* environment variables."""

import os

bind = os.environ.get("GUNICORN_BIND", "0.0.0.0:8000")
workers = int(os.environ.get("GUNICORN_WORKERS", "3"))
threads = int(os.environ.get("GUNICORN_THREADS", "2"))
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "30"))
# Longer than the proxy keeps idle upstream connections (Caddyfile: 60 s): if gunicorn closed an idle
# connection first, a request the proxy sent on it at that moment would fail ("connection reset").
keepalive = int(os.environ.get("GUNICORN_KEEPALIVE", "75"))
graceful_timeout = 20
max_requests = 2000
max_requests_jitter = 200
forwarded_allow_ips = os.environ.get("GUNICORN_FORWARDED_ALLOW_IPS", "127.0.0.1")
accesslog = "-"
# The path only (%(U)s), never the query string: searches can carry NHS numbers or names.
access_log_format = 'ts=%(t)s level=INFO logger=gunicorn.access method=%(m)s path="%(U)s" status=%(s)s bytes=%(B)s duration_us=%(D)s'
errorlog = "-"
# gunicorn's own logs go through the app's redacting formatters (scheduling/logs.py), so a worker's
# traceback cannot put an NHS number or phone number in the log; propagate False, or Django's root
# handler would print every line a second time. Merged by gunicorn over its defaults.
logconfig_dict = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "logfmt": {"()": "scheduling.logs.LogfmtFormatter"},
        "access": {"()": "scheduling.logs.RedactingFormatter", "fmt": "%(message)s"},
    },
    "handlers": {
        "error_console": {"class": "logging.StreamHandler", "formatter": "logfmt", "stream": "ext://sys.stderr"},
        "console": {"class": "logging.StreamHandler", "formatter": "access", "stream": "ext://sys.stdout"},
    },
    "root": {"level": "INFO", "handlers": ["error_console"]},
    "loggers": {
        "gunicorn.error": {"level": "INFO", "handlers": ["error_console"], "propagate": False},
        "gunicorn.access": {"level": "INFO", "handlers": ["console"], "propagate": False},
    },
}
