"""Settings for painplatform.

Every setting comes from the environment, with safe development defaults, so the same code runs
the embedded demo (SQLite, ORM queue broker, one machine) and a production service (PostgreSQL,
Redis, many processes). README.md lists every variable.
"""

import importlib.util
import os
import sys
from pathlib import Path

import dj_database_url

BASE_DIR = Path(__file__).resolve().parent.parent


def env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_list(name: str, default: str = "") -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


DEBUG = env_bool("DJANGO_DEBUG", True)
SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "")
if not SECRET_KEY:
    if not DEBUG:
        # A production process must never run on a key that is in the repository.
        from django.core.exceptions import ImproperlyConfigured

        raise ImproperlyConfigured("DJANGO_SECRET_KEY must be set when DJANGO_DEBUG is off.")
    SECRET_KEY = "dev-only-insecure-key-do-not-use-in-production"

ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", "localhost,127.0.0.1,[::1],testserver")
CSRF_TRUSTED_ORIGINS = env_list("DJANGO_CSRF_TRUSTED_ORIGINS")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.postgres",
    "django_q",
    "axes",
    "scheduling",
]
# Development tools (the fake Twilio server, the benchmark commands): never in production. The package is
# left out of the wheel and the image, so it is added only where this project's copy can be imported (an
# unrelated "devtools" distribution from PyPI is not an app).
devtools_spec = importlib.util.find_spec("devtools")
if (
    (DEBUG or env_bool("PAINPLATFORM_DEVTOOLS", False))
    and devtools_spec is not None
    and Path(devtools_spec.origin).resolve() == BASE_DIR / "devtools" / "__init__.py"
):
    INSTALLED_APPS.append("devtools")

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # Before any view or the once-only check reads a form: a NUL in any field is a 400 naming it.
    "scheduling.params.RefuseNulMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    # After authentication: a duplicate form post gets the first post's answer (submissions.py).
    "scheduling.submissions.OnceOnlyFormMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django.contrib.auth.middleware.LoginRequiredMiddleware",
    "csp.middleware.CSPMiddleware",
    # Last, as django-axes asks: it turns a locked-out login into a 429 page.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "painplatform.urls"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "scheduling.context_processors.roles",
            ],
            # {% form_token %} (and the other project tags) in every template without a {% load %}.
            "builtins": ["scheduling.templatetags.painplatform"],
        },
    },
]

WSGI_APPLICATION = "painplatform.wsgi.application"

# A queue worker keeps its database connection between tasks: django-q2 calls Django's
# close_old_connections() before every task, which with CONN_MAX_AGE 0 opened a new connection (a new
# PostgreSQL backend process) per task. Health checks replace a connection that broke while idle.
RUNNING_QCLUSTER = sys.argv[1:2] == ["qcluster"]
DATABASES = {
    "default": dj_database_url.parse(
        os.environ.get("DATABASE_URL", f"sqlite:///{BASE_DIR / 'var' / 'painplatform.sqlite3'}"),
        conn_max_age=int(os.environ.get("DATABASE_CONN_MAX_AGE", "600" if RUNNING_QCLUSTER else "0")),
        conn_health_checks=True,
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    # A database host that stops answering fails a request in seconds instead of holding a web worker.
    DATABASES["default"].setdefault("OPTIONS", {}).setdefault("connect_timeout", 10)
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # IMMEDIATE transactions take SQLite's write lock at BEGIN, so two bookings in two threads
    # serialise instead of failing half-way with "database is locked".
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {"transaction_mode": "IMMEDIATE", "timeout": 20, "init_command": "PRAGMA journal_mode=WAL;"}
    )
    DATABASES["default"].setdefault("TEST", {})

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-gb"
TIME_ZONE = "Europe/London"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = BASE_DIR / "staticfiles"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}

# --- Phone numbers -------------------------------------------------------------------------
# Ofcom's drama range (07700 900000-900999) is invalid to libphonenumber. Development, demo and
# tests accept exactly that range as fictional mobiles; production must not (see README).
PHONE_ACCEPT_FICTIONAL_NUMBERS = env_bool("PHONE_ACCEPT_FICTIONAL_NUMBERS", DEBUG)

# --- Background queue (django-q2) ----------------------------------------------------------
REDIS_URL = os.environ.get("REDIS_URL", "")
Q_CLUSTER = {
    "name": "painplatform",
    "workers": int(os.environ.get("Q_WORKERS", "2")),
    # A task is killed after `timeout` seconds and may be re-delivered after `retry` seconds;
    # retry well above timeout means a running task is never handed to a second worker.
    "timeout": 60,
    "retry": 180,
    "max_attempts": 3,
    "catch_up": False,
    # Successful results are not kept: the SMS outbox and its events are the record of every send,
    # and keeping a capped list makes django-q's single monitor lock and prune the whole list after
    # every task (the bench_reminders figures in the README). Failed tasks are still kept.
    "save_limit": -1,
    "ack_failures": True,
    # Each worker process is replaced after this many tasks (django-q2's default is 500). A send task
    # carries up to 50 texts, and a new worker opens a new database connection and Twilio client.
    "recycle": 5000,
    "label": "Background queue",
}
if REDIS_URL:
    Q_CLUSTER["redis"] = REDIS_URL
else:
    Q_CLUSTER["orm"] = "default"

# --- SMS (scheduling/reminders) ------------------------------------------------------------
# console: nothing leaves the machine (demo, development); twilio: the real thing.
SMS_BACKEND = os.environ.get("SMS_BACKEND", "console")
TWILIO_ACCOUNT_SID = os.environ.get("TWILIO_ACCOUNT_SID", "")
TWILIO_AUTH_TOKEN = os.environ.get("TWILIO_AUTH_TOKEN", "")
# Only while rotating the token: webhooks signed with the old one are still accepted.
TWILIO_AUTH_TOKEN_PREVIOUS = os.environ.get("TWILIO_AUTH_TOKEN_PREVIOUS", "")
TWILIO_FROM_NUMBER = os.environ.get("TWILIO_FROM_NUMBER", "")
TWILIO_MESSAGING_SERVICE_SID = os.environ.get("TWILIO_MESSAGING_SERVICE_SID", "")
# Only for tests and trying the product: points the twilio client at the fake Twilio server.
TWILIO_API_BASE_URL = os.environ.get("TWILIO_API_BASE_URL", "")
# Public https address Twilio reaches us on: delivery-report URLs are built from it, and webhook
# signatures are checked against it (not against what a proxy passed on).
SMS_PUBLIC_BASE_URL = os.environ.get("SMS_PUBLIC_BASE_URL", "")
# Below the queue's task timeout (60 s), so a hung request ends in our hands, not in a killed task.
SMS_HTTP_TIMEOUT_SECONDS = float(os.environ.get("SMS_HTTP_TIMEOUT_SECONDS", "10"))
# A message still "sending" this long after it was claimed belonged to a worker that died.
SMS_STUCK_AFTER_SECONDS = int(os.environ.get("SMS_STUCK_AFTER_SECONDS", "120"))

# --- Logging: logfmt lines a collector can parse; never patient data ----------------------
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"redact_patient_data": {"()": "scheduling.logs.RedactPatientDataFilter"}},
    # Every formatter redacts its whole output, traceback included (scheduling/logs.py).
    "formatters": {"logfmt": {"()": "scheduling.logs.LogfmtFormatter"}},
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": "logfmt", "filters": ["redact_patient_data"]},
    },
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
        # The twilio client logs request URLs at INFO, with phone numbers in their query strings.
        "twilio.http_client": {"level": "WARNING"},
        "django.server": {"handlers": ["console"], "level": "INFO", "propagate": False},
        # Replaces Django's default handlers for "django" (an unformatted console in DEBUG, mail_admins):
        # request errors with their tracebacks go through the redacting handler only.
        "django": {"handlers": ["console"], "level": "INFO", "propagate": False},
    },
}

# --- Security -------------------------------------------------------------------------------
AUTHENTICATION_BACKENDS = [
    # django-axes first: it refuses logins for a locked-out username/address pair.
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = int(os.environ.get("AXES_FAILURE_LIMIT", "5"))
AXES_COOLOFF_TIME = float(os.environ.get("AXES_COOLOFF_HOURS", "0.5"))  # hours
# Lock the username from that address, so a stranger cannot lock a clinician out from elsewhere.
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
# The client's address, read by django-ipware (axes uses it when installed). Behind N trusted proxies that
# each append the address they received from to X-Forwarded-For (Caddy: N = 1), the client is the N-th
# entry from the right; anything further left was written by the client and is ignored, so rotating it
# does not escape a lockout. N = 0 (no proxy): REMOTE_ADDR only. Behind a proxy REMOTE_ADDR is the proxy
# for everyone, so lockouts by it would let anyone lock a clinician out from anywhere.
axes_proxy_count = int(os.environ.get("AXES_PROXY_COUNT", "0"))
if axes_proxy_count > 0:
    AXES_IPWARE_META_PRECEDENCE_ORDER = ("HTTP_X_FORWARDED_FOR", "REMOTE_ADDR")
    # django-ipware counts the proxies listed in the header; the last one is REMOTE_ADDR, not listed.
    AXES_IPWARE_PROXY_COUNT = axes_proxy_count - 1
else:
    AXES_IPWARE_META_PRECEDENCE_ORDER = ("REMOTE_ADDR",)
    AXES_IPWARE_PROXY_COUNT = None
AXES_IPWARE_PROXY_ORDER = "left-most"
# Not strict: a longer chain (the client's own X-Forwarded-For in front of what the proxy appended) is read
# from the right instead of being rejected (which would fall back to the proxy's address).
IPWARE_STRICT = False
AXES_HTTP_RESPONSE_CODE = 429  # Too Many Requests (axes' default too; the page says when to try again)
AXES_LOCKOUT_TEMPLATE = "registration/locked_out.html"

# Shared clinical PCs: sessions end after inactivity and when the browser closes.
SESSION_COOKIE_AGE = int(os.environ.get("SESSION_IDLE_MINUTES", "20")) * 60
SESSION_SAVE_EVERY_REQUEST = True
SESSION_EXPIRE_AT_BROWSER_CLOSE = True
SESSION_COOKIE_HTTPONLY = True
X_FRAME_OPTIONS = "DENY"
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"

# Strict Content-Security-Policy, the same in every environment so tests catch violations:
# no inline scripts or styles, nothing from other origins.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "img-src": ["'self'", "data:"],
        "font-src": ["'self'"],
        "connect-src": ["'self'"],
        "object-src": ["'none'"],
        "base-uri": ["'none'"],
        "frame-ancestors": ["'none'"],
        "form-action": ["'self'"],
    },
}

if not DEBUG:
    # Behind a TLS-terminating proxy that sets X-Forwarded-Proto.
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = env_bool("DJANGO_SECURE_SSL_REDIRECT", True)
    # Health checks come from the proxy or orchestrator over plain HTTP inside the host.
    SECURE_REDIRECT_EXEMPT = [r"^healthz$"]
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = int(os.environ.get("DJANGO_HSTS_SECONDS", "31536000"))
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = env_bool("DJANGO_HSTS_PRELOAD", True)
    STORAGES["staticfiles"] = {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"}

if REDIS_URL:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}}
