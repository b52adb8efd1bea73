"""One place that turns any outcome of a call to Meta into a cause id and what to do about it.

The worker uses it to pick a connection state; the diagnosis engine and `explain-error` build on it.
Cause ids are the stable ones in DESIGN.md. Codes and subcodes win; message text decides only when
Meta sent no code, since people paste log lines and exception strings rather than clean JSON.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from webapp.models import ConnectionState
from webapp.services.meta.client import MetaApiError

# Causes that only the merchant can fix, by reconnecting.
RECONNECT_CAUSES = frozenset(
    {
        "token_expired",
        "password_changed",
        "app_removed",
        "account_checkpoint",
        "session_invalidated",
        "permissions_changed",
        "data_access_expired",
        "invalid_token",
    }
)
# Causes that pass by themselves: retry later.
TRANSIENT_CAUSES = frozenset({"rate_limited", "policy_block", "provider_error"})
ALL_CAUSES = RECONNECT_CAUSES | TRANSIENT_CAUSES | {"app_misconfigured", "request_error", "unknown"}

TOKEN_SUBCODES = {
    458: "app_removed",
    459: "account_checkpoint",
    460: "password_changed",
    461: "session_invalidated",  # the user reinstalled the app: the old session is gone
    463: "token_expired",
    464: "account_checkpoint",
    465: "invalid_token",
    466: "session_invalidated",  # explicitly invalidated through an API call
    467: "session_invalidated",
    468: "data_access_expired",  # app not used for a long time
    483: "account_checkpoint",  # consent app blocking
    490: "account_checkpoint",
    492: "permissions_changed",
    493: "data_access_expired",
}
RATE_LIMIT_CODES = frozenset({4, 17, 32, 613, 341, *range(80000, 80010)})
# App-wide throttles pause every call; the others pause one account.
APP_WIDE_RATE_LIMIT_CODES = frozenset({4, 341})
TRANSIENT_CODES = frozenset({1, 2})

# Message rules, most specific first: a cause and the phrases that give it away. Used when the code
# does not decide. Phrases are regular expressions, matched case-insensitively.
_MESSAGE_PHRASES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("password_changed", (r"changed (?:their|the|your) password", r"password (?:was |has been )?changed")),
    (
        "app_removed",
        (
            r"has not authori[sz]ed application",
            r"not authori[sz]ed (?:the )?app",
            r"app(?:lication)? (?:is )?not installed",
            r"removed (?:the|this) app",
            r"deauthori[sz]ed",
        ),
    ),
    ("data_access_expired", (r"engaged (?:with )?the app in longer than 90 days", r"data access (?:has )?expired")),
    (
        "account_checkpoint",
        (
            r"checkpoint",
            r"log in to (?:https?://)?www\.(?:facebook|instagram)\.com and follow the instructions",
            r"unconfirmed user",
            r"is inactive, checkpointed, or restricted",
            r"consent app blocking",
        ),
    ),
    (
        "session_invalidated",
        (
            r"user logged out",
            r"session is invalid",
            r"session has been invalidated",
            r"changed the session for security reasons",
            r"logged out",
        ),
    ),
    ("token_expired", (r"session has expired", r"token (?:has )?expired", r"expired on")),
    (
        "permissions_changed",
        (
            r"does not have permission",
            r"permissions? error",
            r"\(#(?:10|2\d\d)\)",
            r"appropriate role on the page",
            r"missing permission",
            r"requires the .* permission",
        ),
    ),
    (
        "app_misconfigured",
        (
            r"invalid platform app",
            r"error validating client secret",
            r"redirect_uri is identical",
            r"invalid redirect_uri",
            r"invalid scope",
            r"mutually exclusive",
            r"must provide an app access token",
            r"invalid client_id",
            r"invalid app id",
        ),
    ),
    (
        "rate_limited",
        (
            r"request limit reached",
            r"too many calls",
            r"rate limit",
            r"\(#(?:4|17|32|613)\)",
            r"calls to this (?:instagram|page) account",
        ),
    ),
    ("policy_block", (r"temporarily blocked", r"\(#368\)", r"policies violations", r"restricted (?:as|for) spam")),
    (
        "request_error",
        (
            r"unsupported (?:get|post) request",
            r"nonexisting field",
            r"does not exist",
            r"unknown path components",
            r"deprecated",
            r"\(#100\)",
            r"invalid parameter",
        ),
    ),
    (
        "invalid_token",
        (
            r"error validating access token",
            r"invalid (?:oauth(?: 2\.0)? )?access token",
            r"cannot parse access token",
            r"malformed access token",
            r"OAuthAccessTokenException",
        ),
    ),
    (
        "provider_error",
        (
            r"unexpected error has occurred",
            r"please retry",
            r"temporarily unavailable",
            r"service unavailable",
            r"internal server error",
            r"bad gateway",
            r"gateway time-?out",
            r"timed out",
            r"timeout",
            r"connection (?:reset|refused|aborted)",
            r"is_transient",
        ),
    ),
)
MESSAGE_RULES: tuple[tuple[str, re.Pattern], ...] = tuple(
    (cause, re.compile("|".join(phrases), re.IGNORECASE)) for cause, phrases in _MESSAGE_PHRASES
)


@dataclass(frozen=True)
class Classification:
    cause: str
    needs_reconnect: bool
    retryable: bool
    app_wide: bool = False  # a throttle that applies to every account of the app

    @property
    def state(self) -> ConnectionState:
        """The connection state this outcome calls for (before the expiry window is considered)."""
        return ConnectionState.NEEDS_RECONNECT if self.needs_reconnect else ConnectionState.DEGRADED


def _of(cause: str, app_wide: bool = False) -> Classification:
    return Classification(
        cause=cause,
        needs_reconnect=cause in RECONNECT_CAUSES,
        # Trying again later can work for Meta-side trouble, and for what we cannot name.
        retryable=cause in TRANSIENT_CAUSES or cause == "unknown",
        app_wide=app_wide,
    )


def cause_from_message(message: str | None) -> str | None:
    for cause, pattern in MESSAGE_RULES:
        if message and pattern.search(message):
            return cause
    return None


def classify_fields(
    *,
    code: int | None = None,
    subcode: int | None = None,
    error_type: str | None = None,
    message: str | None = None,
    http_status: int | None = None,
    is_transient: bool | None = None,
) -> Classification:
    """Classify from the parsed fields of one Meta error (any of them may be missing)."""
    if code == 190 or (code == 102 and subcode in TOKEN_SUBCODES):
        if subcode in TOKEN_SUBCODES:
            return _of(TOKEN_SUBCODES[subcode])
        # Meta sometimes puts the reason only in the text (e.g. password changes without 460).
        by_text = cause_from_message(message)
        return _of(by_text if by_text in RECONNECT_CAUSES else "invalid_token")
    if code == 25 and subcode == 2207050:
        return _of("account_checkpoint")
    if code == 4 and subcode == 2207051:
        return _of("policy_block")
    if code in RATE_LIMIT_CODES:
        return _of("rate_limited", app_wide=code in APP_WIDE_RATE_LIMIT_CODES)
    if code == 368:
        return _of("policy_block")
    if code in TRANSIENT_CODES:
        return _of("provider_error")
    if code == 10 or (code is not None and 200 <= code <= 299):
        return _of("permissions_changed")
    if code == 24 and subcode == 2207006:
        return _of("permissions_changed")
    if code in (3, 101):
        return _of("app_misconfigured")
    if code == 102:
        return _of("invalid_token")
    if code == 100:
        # "Invalid parameter": about the request, even when its text mentions permissions.
        return _of("request_error")
    if is_transient:
        return _of("provider_error")
    by_text = cause_from_message(message)
    if by_text:
        return _of(by_text)
    if error_type in ("OAuthAccessTokenException",):
        return _of("invalid_token")
    if http_status is not None and http_status >= 500:
        return _of("provider_error")
    if error_type == "OAuthException" and code is None and http_status in (400, 401):
        return _of("invalid_token")
    return _of("unknown")


def classify_error(error: MetaApiError) -> Classification:
    """Classify a failed call: Meta's error body, a bad status, a timeout or a broken body."""
    if error.failure in ("timeout", "connection"):
        return _of("provider_error")
    if error.failure == "malformed" and (
        error.http_status is None or error.http_status >= 500 or error.http_status < 400
    ):
        # Garbage where JSON was expected is Meta's (or a proxy's) trouble, never a revocation.
        return _of("provider_error")
    return classify_fields(
        code=error.code,
        subcode=error.subcode,
        error_type=error.type,
        message=error.message,
        http_status=error.http_status,
        is_transient=error.is_transient,
    )
