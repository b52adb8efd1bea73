"""One place that turns any outcome of a call to Meta into a cause id and what to do about it.

The worker uses it to pick a connection state; the diagnosis engine and `explain-error` build on it.
Cause ids are the stable ones in DESIGN.md. Codes and subcodes win; message text decides only when
Meta sent no code, since people paste log lines and exception strings rather than clean JSON.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from webapp.models import ConnectionState
from webapp.services.connections.causes import CAUSES, CauseId
from webapp.services.meta.client import MetaApiError
from webapp.services.meta.facebook import PageRoleTooLow, PageUnlinked, ScopeNarrowed

# Causes that only the merchant can fix, by reconnecting: the catalogue says which.
RECONNECT_CAUSES = frozenset(cause.id for cause in CAUSES.values() if cause.reconnect_fixes)
# Causes that pass by themselves: retry later.
TRANSIENT_CAUSES = frozenset({CauseId.RATE_LIMITED, CauseId.POLICY_BLOCK, CauseId.PROVIDER_ERROR})

TOKEN_SUBCODES = {
    458: CauseId.APP_REMOVED,
    459: CauseId.ACCOUNT_CHECKPOINT,
    460: CauseId.PASSWORD_CHANGED,
    461: CauseId.SESSION_INVALIDATED,  # the user reinstalled the app: the old session is gone
    463: CauseId.TOKEN_EXPIRED,
    464: CauseId.ACCOUNT_CHECKPOINT,
    465: CauseId.INVALID_TOKEN,
    466: CauseId.SESSION_INVALIDATED,  # explicitly invalidated through an API call
    467: CauseId.SESSION_INVALIDATED,
    468: CauseId.DATA_ACCESS_EXPIRED,  # app not used for a long time
    483: CauseId.ACCOUNT_CHECKPOINT,  # consent app blocking
    490: CauseId.ACCOUNT_CHECKPOINT,
    492: CauseId.PERMISSIONS_CHANGED,
    493: CauseId.DATA_ACCESS_EXPIRED,
}
RATE_LIMIT_CODES = frozenset({4, 17, 32, 613, 341, *range(80000, 80010)})
# App-wide throttles pause every call; the others pause one account.
APP_WIDE_RATE_LIMIT_CODES = frozenset({4, 341})
TRANSIENT_CODES = frozenset({1, 2})
# Errors about what was requested or sent: unknown aliases (803), media (9004, 36000), user ids (9010).
REQUEST_CODES = frozenset({803, 9004, 9010, 36000})
# Limits that lift by themselves and that reconnecting cannot lift: Instagram's daily publishing
# limit (2207042) and the messaging window (2534022).
POLICY_SUBCODES = frozenset({2207042, 2534022})
INSTAGRAM_SERVER_SUBCODES = frozenset({2207001})
# An endpoint the Page cannot use (New Pages Experience), reported under the permission code 200.
REQUEST_SUBCODES = frozenset({2069030})
# Graph's rules on what a Page's post may carry, reported under the permission code 200: the request broke
# the rule, nobody lost a permission ("(#200) Posts where the actor is a page cannot also include a target_id").
PAGE_POST_RULES = re.compile(r"posts? where the actor is a page", re.IGNORECASE)
# "(#100) Object does not exist, cannot be loaded due to missing permission ... This endpoint requires the
# 'pages_read_engagement' permission": the object is there, the token lacks the Page permission it names.
ENDPOINT_NEEDS_PERMISSION = re.compile(r"endpoint requires the '[^']+'(?: or '[^']+')* permission", re.IGNORECASE)

# Message rules, most specific first: a cause and the phrases that give it away. Used when the code
# does not decide. Phrases are regular expressions, matched case-insensitively.
_MESSAGE_PHRASES: tuple[tuple[CauseId, tuple[str, ...]], ...] = (
    # The operator's own app, said in words: wins over the code it comes with (#1, #10, #100, #200).
    (
        CauseId.APP_MISCONFIGURED,
        (
            r"invalid platform app",
            r"error validating client secret",
            r"redirect_uri is identical",
            r"invalid redirect_uri",
            # Instagram's flat OAuth shape: "Redirect URI does not match registered redirect URI",
            # "Redirect URI doesn't match original redirect URI".
            r"redirect uri (?:does not|doesn't) match",
            r"invalid scope",
            r"mutually exclusive",
            r"must provide an app access token",
            r"invalid client[ _](?:id|secret)",
            r"invalid app id",
            r"not a sandbox user of this client",
            r"does not match an approved application",
            r"data use checkup",
            r"is currently unavailable for this app",
            r"app secret proof",
            # An app token where a user or Page token belongs: the request reached the app's own node.
            r"on node type \(Application\)",
            r"(?:still )?in development mode",
            r"app not set ?up",
            r"app is not configured",
            r"can't load url",
            r"domain of this url isn't included",
            r"error validating application",
            r"invalid application id",
            r"top level app id is invalid",
            r"requires session when calling from a desktop app",
            r"disabled for non-active apps",
            r"permission \w+ is deprecated",
            # A feature the app must be reviewed or verified for: "(#10) To use 'Page Public Content Access',
            # your use of this endpoint must be reviewed" / "... your app needs to be owned by a verified business".
            r"use of this endpoint must be rev",
            r"to use '[^']+', your app needs",
            # The operator's app: server calls must be signed, or it lacks access for this kind of call.
            r"appsecret_proof",
            r"unsupported request - method type",
            r"insufficient developer role",
            r"app (?:is )?in development mode",
            # The code exchange names the redirect URI after these words; log lines often cut them off.
            r"error validating verification code",
            # A call that carried no user token (an app token, or none): Graph answers 2500 with these words.
            # A user token that expired or was revoked gets 190 instead, so this is our request, not the merchant.
            r"an active access token must be used",
            # A Page post sent with a user token where the Page's own token belongs.
            r"as the page itself",
        ),
    ),
    # The keep-alive's own words for a Page that went (facebook_check.py); they may quote Meta's
    # "Unsupported get request" about the Page, so they come before the rule below.
    (
        CauseId.PAGE_UNLINKED,
        (
            r"facebook page .{1,120} (?:was deleted or unpublished|no longer has an instagram account linked|"
            r"is now linked to)",
        ),
    ),
    # Graph's "Unsupported get request. Object ... does not exist, cannot be loaded due to missing
    # permissions, or does not support this operation" is about the request, whatever else it lists.
    (CauseId.REQUEST_ERROR, (r"unsupported (?:get|post|delete) request",)),
    (
        CauseId.ACCOUNT_NOT_PROFESSIONAL,
        (r"not an instagram business", r"not a (?:business|professional|creator) account"),
    ),
    # Facebook Login: the Page no longer carries a linked Instagram account, or no Page the person manages does.
    (
        CauseId.PAGE_UNLINKED,
        (
            r"(?:connected_instagram_account|instagram_business_account)\b.{0,40}\b(?:not found|missing|null|empty)",
            r"no instagram (?:business|professional) accounts? (?:were |was )?found",
            r"(?:is|was) not linked to (?:a|the|any|your) (?:facebook )?page",
            # 190 for a Page token whose Page was deleted or unpublished (Microsoft BotFramework-Services#36).
            r"belongs to a page that is not accessible",
        ),
    ),
    (CauseId.PASSWORD_CHANGED, (r"changed (?:their|the|your) password", r"password (?:was |has been )?changed")),
    (
        CauseId.APP_REMOVED,
        (
            r"has not authori[sz]ed application",
            r"not authori[sz]ed (?:the )?app",
            r"app(?:lication)? (?:is )?not installed",
            r"removed (?:the|this) app",
            r"deauthori[sz]ed",
        ),
    ),
    (
        CauseId.DATA_ACCESS_EXPIRED,
        (r"engaged (?:with )?the app in longer than 90 days", r"data access (?:has )?expired"),
    ),
    (
        CauseId.ACCOUNT_CHECKPOINT,
        (
            r"checkpoint",
            r"log in to (?:https?://)?www\.(?:facebook|instagram)\.com and follow the instructions",
            r"unconfirmed user",
            r"is inactive, checkpointed, or restricted",
            r"consent app blocking",
            # 190 without a subcode for a user Meta holds at a checkpoint or no longer knows.
            r"session key is malformed",
            r"invalid user id",
        ),
    ),
    (
        CauseId.SESSION_INVALIDATED,
        (
            r"user logged out",
            r"session is invalid",
            r"session has been invalidated",
            r"changed the session for security reasons",
            r"logged out",
        ),
    ),
    (CauseId.TOKEN_EXPIRED, (r"session has expired", r"token (?:has )?expired", r"expired on")),
    (
        CauseId.PERMISSIONS_CHANGED,
        (
            r"does not have permission",
            r"permissions? error",
            r"\(#(?:10|2\d\d)\)",
            r"appropriate role on the page",
            r"missing permission",
            r"requires the .* permission",
            r"not authori[sz]ed with this scope",
            r"OAuthPermissionsException",
            # Page tokens: the merchant's role on the Page or its Page permissions went.
            r"administrator of the page",
            r"sufficient administrative permission",
            r"must be granted before impersonating",
            # 190 without a subcode once the person's role on the Page is gone (snarfed/bridgy#596).
            r"of the page in order to impersonate it",
            # The keep-alive's own words (facebook_check.py) for a lowered role or narrowed permission.
            r"your role on the facebook page .{1,120} is now",
            r"the permission \w+ (?:was taken away|no longer covers)",
        ),
    ),
    (
        CauseId.RATE_LIMITED,
        (
            r"request limit reached",
            r"too many calls",
            r"rate limit",
            r"\(#(?:4|17|32|613)\)",
            r"calls to this (?:instagram|page) account",
        ),
    ),
    (
        CauseId.POLICY_BLOCK,
        (
            r"temporarily blocked",
            r"\(#368\)",
            r"policies violations",
            r"restricted (?:as|for) spam",
            r"deemed abusive",
            r"reported as abusive",
            # Instagram's error-code reference: 4/2207051 (spam restriction) and 9/2207042 (daily publishing cap).
            r"we restrict certain activity to protect our community",
            r"maximum number of posts that is allowed to be published",
        ),
    ),
    (
        CauseId.REQUEST_ERROR,
        (
            r"unsupported (?:get|post) request",
            r"nonexisting field",
            r"does not exist",
            r"unknown path components",
            r"deprecated",
            r"\(#100\)",
            r"invalid parameter",
            r"must be one of the following values",
            r"should not be passed to",  # "client_secret should not be passed to /oauth/token": invalid_request
            r"(?:user|object) cannot be found",
            r"aliases you requested do not exist",
            # The code exchange at connect time: a login link used twice or too late; logging in again works.
            r"authorization code has been used",
            r"code was not found or was already used",
            r"authorization code (?:has )?expired",
            r"invalid authorization code",
            r"code was invalid or expired",
            r"no matching instagram user",
            r"invalid media id",
            r"error code '?2207\d{3}",
        ),
    ),
    (
        CauseId.INVALID_TOKEN,
        (
            r"error validating access token",
            r"invalid (?:oauth(?: 2\.0)? )?access token",
            r"cannot parse access token",
            r"malformed access token",
            r"OAuthAccessTokenException",
            r"access_token provided is invalid",
        ),
    ),
    (
        CauseId.PROVIDER_ERROR,
        (
            r"unexpected error has occurred",
            r"instagram server error",  # -1/2207001 in Instagram's error-code reference
            r"unknown error (?:has )?occurred",
            r"sorry, something went wrong",
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
MESSAGE_RULES: tuple[tuple[CauseId, re.Pattern], ...] = tuple(
    (cause, re.compile("|".join(phrases), re.IGNORECASE)) for cause, phrases in _MESSAGE_PHRASES
)


@dataclass(frozen=True)
class Classification:
    cause: CauseId
    needs_reconnect: bool
    retryable: bool
    app_wide: bool = False  # a throttle that applies to every account of the app

    @property
    def state(self) -> ConnectionState:
        """The connection state this outcome calls for (before the expiry window is considered)."""
        return ConnectionState.NEEDS_RECONNECT if self.needs_reconnect else ConnectionState.DEGRADED


def _of(cause: CauseId, app_wide: bool = False) -> Classification:
    return Classification(
        cause=cause,
        needs_reconnect=cause in RECONNECT_CAUSES,
        # Trying again later can work for Meta-side trouble, and for what we cannot name.
        retryable=cause in TRANSIENT_CAUSES or cause == CauseId.UNKNOWN,
        app_wide=app_wide,
    )


def cause_from_message(message: str | None) -> CauseId | None:
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
        return _of(by_text if by_text in RECONNECT_CAUSES else CauseId.INVALID_TOKEN)
    if code == 25 and subcode == 2207050:
        return _of(CauseId.ACCOUNT_CHECKPOINT)
    if (code == 4 and subcode == 2207051) or subcode in POLICY_SUBCODES:
        return _of(CauseId.POLICY_BLOCK)
    if subcode in INSTAGRAM_SERVER_SUBCODES:
        return _of(CauseId.PROVIDER_ERROR)
    if code in RATE_LIMIT_CODES:
        return _of(CauseId.RATE_LIMITED, app_wide=code in APP_WIDE_RATE_LIMIT_CODES)
    if code == 368:
        return _of(CauseId.POLICY_BLOCK)
    worded = cause_from_message(message)
    if worded in (CauseId.ACCOUNT_NOT_PROFESSIONAL, CauseId.APP_MISCONFIGURED):
        # Said in words under codes that otherwise mean other things (#1, #10, #100, #200): the words
        # decide ("Error validating client secret" arrives with code 1, a transient code).
        return _of(worded)
    if subcode in REQUEST_SUBCODES:
        return _of(CauseId.REQUEST_ERROR)
    if code in TRANSIENT_CODES:
        return _of(CauseId.PROVIDER_ERROR)
    if message and PAGE_POST_RULES.search(message):
        return _of(CauseId.REQUEST_ERROR)
    if code == 10 or (code is not None and 200 <= code <= 299):
        return _of(CauseId.PERMISSIONS_CHANGED)
    if code == 24 and subcode == 2207006:
        return _of(CauseId.PERMISSIONS_CHANGED)
    if code in (3, 101):
        return _of(CauseId.APP_MISCONFIGURED)
    if code == 2500 and worded == CauseId.REQUEST_ERROR:
        return _of(CauseId.REQUEST_ERROR)  # "Unknown path components": the request, not the token
    if code in (102, 2500):
        # 2500's "An active access token must be used..." is ours (no user token sent) and decided above by its words.
        return _of(CauseId.INVALID_TOKEN)
    if code in REQUEST_CODES or (subcode is not None and 2207000 <= subcode <= 2207999):
        # Instagram's publishing errors (media type, size, format, upload): about what was sent.
        return _of(CauseId.REQUEST_ERROR)
    if code == 100 and message and ENDPOINT_NEEDS_PERMISSION.search(message):
        return _of(CauseId.PERMISSIONS_CHANGED)
    if code == 100:
        # "Invalid parameter": about the request, even when its text mentions permissions in passing.
        return _of(CauseId.REQUEST_ERROR)
    if is_transient:
        return _of(CauseId.PROVIDER_ERROR)
    by_text = cause_from_message(message)
    if by_text:
        return _of(by_text)
    if error_type in ("OAuthAccessTokenException",):
        return _of(CauseId.INVALID_TOKEN)
    if http_status is not None and http_status >= 500:
        return _of(CauseId.PROVIDER_ERROR)
    if error_type == "OAuthException" and code is None and http_status in (400, 401):
        return _of(CauseId.INVALID_TOKEN)
    return _of(CauseId.UNKNOWN)


def on_path(classification: Classification, path: str | None) -> Classification:
    """The classification as it applies to a connection on `path`: a cause of the other path only
    (a Page unlinked, on Instagram Login) says nothing true about it, so it counts as an invalid token."""
    only_on = CAUSES[classification.cause].only_on
    if path is None or only_on is None or only_on == path:
        return classification
    return _of(CauseId.INVALID_TOKEN)


def classify_error(error: MetaApiError) -> Classification:
    """Classify a failed call: Meta's error body, a bad status, a timeout or a broken body."""
    if error.failure in ("timeout", "connection"):
        return _of(CauseId.PROVIDER_ERROR)
    if isinstance(error, PageUnlinked):
        return _of(CauseId.PAGE_UNLINKED)
    if isinstance(error, PageRoleTooLow | ScopeNarrowed):
        return _of(CauseId.PERMISSIONS_CHANGED)
    if error.failure == "malformed" and (
        error.http_status is None or error.http_status >= 500 or error.http_status < 400
    ):
        # Garbage where JSON was expected is Meta's (or a proxy's) trouble, never a revocation.
        return _of(CauseId.PROVIDER_ERROR)
    return classify_fields(
        code=error.code,
        subcode=error.subcode,
        error_type=error.type,
        message=error.message,
        http_status=error.http_status,
        is_transient=error.is_transient,
    )
