"""Read a Meta error someone pasted (JSON in any envelope, a log line, an SDK exception) into its fields."""

from __future__ import annotations

import re
from dataclasses import dataclass

from webapp.logging_filters import redact, redact_token_shaped
from webapp.services.meta import bounded_json
from webapp.services.meta.client import parse_error_body


@dataclass(frozen=True)
class ParsedError:
    code: int | None = None
    subcode: int | None = None
    type: str | None = None
    message: str | None = None
    http_status: int | None = None
    is_transient: bool | None = None
    # Meta's own words for the account owner (error_user_title, error_user_msg), token-shaped text redacted.
    user_title: str | None = None
    user_message: str | None = None

    def as_meta(self) -> dict:
        return {"code": self.code, "subcode": self.subcode, "type": self.type, "message": self.message}


_NUMBER = r"(\d{1,9})"


_TEXT_FIELDS = {
    "code": [rf"[\"']?\bcode[\"']?\s*[:=]\s*[\"']?{_NUMBER}", rf"\(#{_NUMBER}\)", rf"\bcode {_NUMBER}\b"],
    "subcode": [rf"[\"']?\b(?:error_)?subcode[\"']?\s*[:=]\s*[\"']?{_NUMBER}", rf"\bsubcode {_NUMBER}\b"],
    "http_status": [rf"\bHTTP(?:/\d(?:\.\d)?)?\s+{_NUMBER}\b", rf"\bstatus(?:_code)?[\"']?\s*[:=]\s*{_NUMBER}"],
}


_TYPE = re.compile(
    r"\b(OAuthException|IGApiException|GraphMethodException|FacebookApiException|OAuthAccessTokenException|OAuthPermissionsException)\b"
)


_MESSAGE = re.compile(
    r"[\"']?(?:message|error_message|error_description)[\"']?\s*[:=]\s*[\"']([^\"']+)[\"']", re.IGNORECASE
)
# Meta's flat OAuth field: in a wrapper's log line ("message: 'Failed to obtain access token'") it is Meta's own words.
_FLAT_MESSAGE = re.compile(r"[\"']?error_message[\"']?\s*[:=]\s*[\"']([^\"']+)[\"']", re.IGNORECASE)
# Meta's words for the account owner in a log line; quoted either way, as they often hold an apostrophe.
_USER_TITLE = re.compile(r"[\"']?error_user_title[\"']?\s*[:=]\s*(?:\"([^\"]+)\"|'([^']+)')", re.IGNORECASE)
_USER_MESSAGE = re.compile(r"[\"']?error_user_msg[\"']?\s*[:=]\s*(?:\"([^\"]+)\"|'([^']+)')", re.IGNORECASE)


def _first_int(patterns: list[str], text: str) -> int | None:
    for pattern in patterns:
        match = re.search(pattern, text, re.IGNORECASE)
        if match:
            return int(match.group(1))
    return None


def _find_error_object(value, unwrap: int = 3) -> dict | None:
    """Find Meta's error inside whatever JSON was pasted (a response, a log record, a wrapper).

    JSON quoted inside a string is read too, at most `unwrap` strings deep.
    """
    if isinstance(value, dict):
        error = _with_error_data_parsed(value)
        if parse_error_body(error) is not None:
            return error
        for nested in value.values():
            found = _find_error_object(nested, unwrap)
            if found is not None:
                return found
    if isinstance(value, list):
        for item in value:
            found = _find_error_object(item, unwrap)
            if found is not None:
                return found
    if isinstance(value, str) and unwrap > 0 and value.strip().startswith("{"):
        try:
            return _find_error_object(bounded_json.loads(value), unwrap - 1)
        except ValueError:
            return None
    return None


def _with_error_data_parsed(body: dict) -> dict:
    """Parse a JSON-encoded `error_data` here, within bounds, so the client's parser never meets the raw string."""
    error = body.get("error")
    if not isinstance(error, dict) or not isinstance(error.get("error_data"), str):
        return body
    try:
        error_data = bounded_json.loads(error["error_data"])
    except ValueError:
        error_data = {}
    return {**body, "error": {**error, "error_data": error_data}}


def _printable(text: str) -> str:
    """`text` without lone surrogates: JSON may escape one ("\\ud800"), but no page or terminal can print it."""
    return text.encode("utf-8", "replace").decode("utf-8")


def _owner_words(text: str | None) -> str | None:
    """Meta's words for the account owner as pages may show them: printable, token-shaped text redacted."""
    return redact(_printable(text.strip()))[:1000] if text and text.strip() else None


def _meta_number(value) -> int | None:
    """A code or subcode as Meta could send it (a non-negative 64-bit integer), else None."""
    return value if isinstance(value, int) and 0 <= value < 2**63 else None


def parse_raw_error(raw: str) -> ParsedError:
    """Read one Meta error from JSON (any shape, even wrapped) or from free text such as a log line."""
    text = raw.strip()
    candidates = [text]
    brace = text.find("{")
    if brace > 0:
        candidates.append(text[brace : text.rfind("}") + 1])
    for candidate in candidates:
        try:
            found = _find_error_object(bounded_json.loads(candidate))
        except ValueError:
            continue  # not JSON, or too deep to be Meta's: read it as text below
        error = parse_error_body(found) if found is not None else None
        if error is not None:
            return ParsedError(  # pasted JSON may put anything in any field: keep only what fits
                code=_meta_number(error.code),
                subcode=_meta_number(error.subcode),
                type=_printable(error.type) if isinstance(error.type, str) else None,
                message=_printable(error.message),
                http_status=error.http_status,
                is_transient=error.is_transient if isinstance(error.is_transient, bool) else None,
                user_title=_owner_words(error.user_title),
                user_message=_owner_words(error.user_message),
            )
    message = _FLAT_MESSAGE.search(text) or _MESSAGE.search(text)
    type_match = _TYPE.search(text)
    transient = re.search(r"is_transient[\"']?\s*[:=]\s*true", text, re.IGNORECASE) is not None
    return ParsedError(
        code=_first_int(_TEXT_FIELDS["code"], text),
        subcode=_first_int(_TEXT_FIELDS["subcode"], text),
        type=type_match.group(1) if type_match else None,
        # Read from text, it never went through the client's error (which redacts): no token shows on a page.
        # The whole paste is redacted before it is cut, so no token cut in two slips through as a shorter run.
        message=redact_token_shaped(message.group(1)) if message else (redact_token_shaped(text[:2000])[:500] or None),
        http_status=_first_int(_TEXT_FIELDS["http_status"], text),
        is_transient=transient or None,
        user_title=_owner_words(_group(_USER_TITLE, text)),
        user_message=_owner_words(_group(_USER_MESSAGE, text)),
    )


def _group(pattern: re.Pattern, text: str) -> str | None:
    match = pattern.search(text)
    return next((group for group in match.groups() if group), None) if match else None
