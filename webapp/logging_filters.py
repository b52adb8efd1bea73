"""Keep secrets out of every log line, including third-party ones (urllib3 logs full URLs)."""

from __future__ import annotations

import logging
import re

# Instagram's refresh and exchange calls put the token in the query string; redact any such value.
_SECRET_PARAMS = re.compile(
    r"(?P<name>access_token|client_secret|fb_exchange_token|input_token|signed_request|code)"
    r"(?P<sep>=|%3D|\":\s*\"|': ')(?P<value>[^&\s\"']+)",
    re.IGNORECASE,
)


def redact(text: str) -> str:
    """Replace secret parameter values in `text` with [redacted]."""
    return _SECRET_PARAMS.sub(lambda m: f"{m.group('name')}{m.group('sep')}[redacted]", text)


_installed = False


def install_redaction() -> None:
    """Redact every log record at creation, whichever logger or handler it reaches."""
    global _installed
    if _installed:
        return
    previous_factory = logging.getLogRecordFactory()

    def factory(*args, **kwargs):
        record = previous_factory(*args, **kwargs)
        try:
            message = record.getMessage()
        except Exception:  # a broken format string must not break logging
            return record
        cleaned = redact(message)
        if cleaned != message or record.args:
            record.msg, record.args = cleaned, None
        return record

    logging.setLogRecordFactory(factory)
    _installed = True
