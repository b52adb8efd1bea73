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


# Anything shaped like a Meta token, wherever it appears (promise 34): Instagram user tokens start
# with IGQV, IGQW or IGAA, Facebook's with EAA and a letter or digit; an app token is the app id, a
# bar and the secret. Shorter runs and other IG... words (usernames, Graph type names) are left alone.
_TOKEN_SHAPED = re.compile(
    r"(?:IGQV|IGQW|IGAA)[A-Za-z0-9_\-]{16,}|(?<![A-Za-z0-9_\-])EAA[A-Za-z0-9][A-Za-z0-9_\-]{16,}"
    r"|(?<![A-Za-z0-9])\d{5,}\|[A-Za-z0-9_\-]{20,}"
)


def redact(text: str) -> str:
    """Replace secret parameter values and token-shaped strings in `text` with [redacted]."""
    text = _SECRET_PARAMS.sub(lambda m: f"{m.group('name')}{m.group('sep')}[redacted]", text)
    return _TOKEN_SHAPED.sub("[redacted]", text)


def redact_token_shaped(text: str) -> str:
    """Replace token-shaped strings only: for free text, where `code=190` is Meta's error code, not a secret."""
    return _TOKEN_SHAPED.sub("[redacted]", text)


def remove_secrets(text: str, secrets: list[str]) -> str:
    """Replace each of `secrets` (values we sent) wherever `text` quotes them."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "[redacted]")
    return text


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
