"""Log lines a collector can parse (logfmt), with patient identifiers scrubbed as a last line of defence.

Code must not log patient data in the first place; this catches what slips through, such as an NHS number
or phone number in a request URL that Django or gunicorn logs, or in a database error's traceback
(`DETAIL: Key (nhs_number)=(...) already exists.`). The formatters redact the whole formatted line,
traceback included: the filter alone could only rewrite the message, and the traceback is added after it.
"""

import logging
import re

# 10-digit NHS numbers (also written 3-3-4), UK/E.164 phone numbers, and long digit runs in general.
# Whole tokens only, so hexadecimal ids and timestamps are left alone.
_PATTERNS = [
    re.compile(r"(?<![0-9A-Za-z])\d{3}[ -]?\d{3}[ -]?\d{4}(?![0-9A-Za-z])"),
    re.compile(r"(?:\+|%2B)\d{10,14}(?![0-9A-Za-z])"),
    re.compile(r"(?<![0-9A-Za-z])0\d{3,4}[ -]?\d{3}[ -]?\d{3,4}(?![0-9A-Za-z])"),
    # The patient's self-service link (/s/<token>, scheduling.patient_links): the token opens their page.
    re.compile(r"(?<=/s/)[^/\s\"'?&]+"),
]
REDACTED = "[redacted]"
# A database constraint's detail quotes the row's values, whatever they are (names, dates, numbers in any
# format): keep the column names, drop the values. Ends at ") already exists", ") conflicts with ...",
# ") is not present ...", ") is still referenced ..." or the closing ")." of the second key.
_KEY_DETAIL = re.compile(r"(\)=\()(.*?)(\)(?: already exists| conflicts with| is not present| is still referenced|\.|$))", re.M)


def redact(text: str) -> str:
    text = _KEY_DETAIL.sub(rf"\g<1>{REDACTED}\g<3>", text)
    for pattern in _PATTERNS:
        text = pattern.sub(REDACTED, text)
    return text


class RedactPatientDataFilter(logging.Filter):
    """Rewrites the message and the traceback text on the record, for any formatter that reads them."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = redact(record.getMessage())
        record.args = None
        if record.exc_info and not record.exc_text:
            # logging.Formatter uses exc_text instead of formatting exc_info again.
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


class RedactingFormatter(logging.Formatter):
    """Any format string; the whole formatted output (traceback and stack included) is redacted."""

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


class LogfmtFormatter(logging.Formatter):
    """ts=2026-11-22T10:00:00Z level=INFO logger=scheduling msg="..." (one line, quotes escaped, redacted)."""

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        if record.exc_info or record.exc_text:
            message = f"{message} | {record.exc_text or self.formatException(record.exc_info)}"
        if record.stack_info:
            message = f"{message} | {self.formatStack(record.stack_info)}"
        message = redact(message)
        message = message.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
        ts = self.formatTime(record, "%Y-%m-%dT%H:%M:%S%z")
        return redact(f'ts={ts} level={record.levelname} logger={record.name} msg="{message}"')
