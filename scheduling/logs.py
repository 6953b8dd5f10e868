"""Log lines a collector can parse (logfmt), with patient identifiers scrubbed as a last line of defence.

Code must not log patient data in the first place; this filter catches what slips through, such as an
NHS number or phone number in a request URL that Django or gunicorn logs.
"""

import logging
import re

# 10-digit NHS numbers (also written 3-3-4), UK/E.164 phone numbers, and long digit runs in general.
# Whole tokens only, so hexadecimal ids and timestamps are left alone.
_PATTERNS = [
    re.compile(r"(?<![0-9A-Za-z])\d{3}[ -]?\d{3}[ -]?\d{4}(?![0-9A-Za-z])"),
    re.compile(r"(?:\+|%2B)\d{10,14}(?![0-9A-Za-z])"),
    re.compile(r"(?<![0-9A-Za-z])0\d{3,4}[ -]?\d{3}[ -]?\d{3,4}(?![0-9A-Za-z])"),
]
REDACTED = "[redacted]"


def redact(text: str) -> str:
    for pattern in _PATTERNS:
        text = pattern.sub(REDACTED, text)
    return text


class RedactPatientDataFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = redact(record.getMessage())
        record.args = None
        return True


class LogfmtFormatter(logging.Formatter):
    """ts=2026-11-22T10:00:00Z level=INFO logger=scheduling msg="..." (one line, quotes escaped)."""

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        if record.exc_info:
            message = f"{message} | {self.formatException(record.exc_info)}"
        message = message.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
        ts = self.formatTime(record, "%Y-%m-%dT%H:%M:%S%z")
        return f'ts={ts} level={record.levelname} logger={record.name} msg="{message}"'
