"""When connecting Instagram fails: what the merchant reads, who can fix it, and the record of it.

Every refusal in the login callback comes here: Instagram's login page sending the merchant back
with `error=...`, our own check of the reply (`state`), the code exchange's refusal, and a failure
while finishing (the long-lived token, `/me`). Meta's errors are named by the classifier; this module
only words each cause for the moment of connecting, says who can fix it, and records the refusal as
a connection event, which the shop's timeline and the admins' app health page read.

Facebook Login for Business goes through the same steps (its dialog, the reply check, the code
exchange, then the user token, its Pages and the picked Page's token) and the same causes; its
refusals say "Facebook" where the merchant was on Facebook (`path`), and it has refusals of its own
about the Page: none linked to an Instagram account, a role on it too low to act for it.

The merchant's words are fixed sentences: Meta's own text (which may quote the code or a token)
only ever reaches the operators' pages, with every secret the request carried removed.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from sqlalchemy.exc import SQLAlchemyError

from webapp.extensions import db
from webapp.logging_filters import redact, remove_secrets
from webapp.models import LoginPath, Shop, User
from webapp.services.connections import page_roles
from webapp.services.connections.causes import CauseId
from webapp.services.connections.state import Actor, connection_for, record_event
from webapp.services.fingerprint import ClientFingerprint
from webapp.services.meta.classifier import classify_error, classify_fields
from webapp.services.meta.client import MetaApiError

log = logging.getLogger(__name__)


class Step(StrEnum):
    """Where in the login the refusal came."""

    LOGIN_PAGE = "login_page"  # Instagram's login page sent the merchant back with an error
    REPLY_CHECK = "reply_check"  # our own check of the reply: state, missing fields
    CODE_EXCHANGE = "code_exchange"
    FINISH = "finish"  # long-lived token and profile, after Instagram accepted the login


class Fixer(StrEnum):
    """Who can make the next attempt work."""

    MERCHANT = "merchant"
    OPERATOR = "operator"  # the app's own settings at Meta, or our requests
    NOBODY = "nobody"  # Meta's side, and it passes by itself: try again later


# Each step is its own event kind, so the step survives in the record (the timeline titles them).
REFUSAL_KINDS: dict[Step, str] = {step: f"connect_refused_{step}" for step in Step}
STEP_OF_KIND = {kind: step for step, kind in REFUSAL_KINDS.items()}

STEP_WORDS = {
    Step.LOGIN_PAGE: "Instagram's login page",
    Step.REPLY_CHECK: "our check of Instagram's reply",
    Step.CODE_EXCHANGE: "exchanging the login code",
    Step.FINISH: "finishing the connection (long-lived token, profile)",
}
FIXER_WORDS = {
    Fixer.MERCHANT: "the merchant",
    Fixer.OPERATOR: "us (the app's settings at Meta)",
    Fixer.NOBODY: "nobody (Meta's side; it passes)",
}

NOTHING_CHANGED = "Nothing was changed."
TOLD_SUPPORT = "We have recorded the details for our support team."

CANCELLED = f"You cancelled the Instagram login. {NOTHING_CHANGED}"
REPLY_NOT_OURS = (
    f"This Instagram login was not started from this browser, was already used, or took too long. "
    f"{NOTHING_CHANGED} Start again from your dashboard."
)
REPLY_INCOMPLETE = f"Instagram's reply was incomplete. {NOTHING_CHANGED} Start again from your dashboard."
CODE_USED = (
    "Instagram did not accept this login (the link was already used or has expired: each one works once, "
    f"for a short time). {NOTHING_CHANGED} Press Connect to try again."
)
NOT_PROFESSIONAL = (
    "This Instagram account is a personal account; only professional accounts (Business or Creator) can be "
    "connected to a shop. In the Instagram app, open Settings, then Account type and tools, and switch to a "
    f"professional account. Then connect again. {NOTHING_CHANGED}"
)
TEST_MODE = (
    "Our app is still in Meta's test mode, which lets in only Instagram accounts invited as testers. If the "
    "shop's Instagram account was sent a tester invitation, accept it (on instagram.com: Settings, Apps and "
    "websites, Tester invites) and press Connect again. Otherwise this is not something you can fix; "
    f"we have recorded the details for our support team. {NOTHING_CHANGED}"
)
APP_SETTINGS = (
    "Instagram refused this login because of how our app is set up with Meta, not because of anything you did. "
    f"{TOLD_SUPPORT} {NOTHING_CHANGED} Please try again later."
)
OUR_REQUEST = (
    "Instagram accepted the login, but our app then asked it for something it would not give. This is ours to "
    f"fix, not yours. {TOLD_SUPPORT} {NOTHING_CHANGED} Please try again later."
)
RATE_LIMITED = (
    f"Instagram is limiting how often our app may call it right now. {NOTHING_CHANGED} "
    "Please try again in a few minutes."
)
META_TROUBLE = (
    f"Instagram did not answer properly; it may be having trouble. {NOTHING_CHANGED} Please try again in a few minutes."
)
POLICY_BLOCK = (
    f"Instagram has temporarily blocked this account from connected apps. {NOTHING_CHANGED} "
    "The block lifts by itself; try again later."
)
CHECKPOINT = (
    "Instagram wants the account's owner to confirm something first. Open the Instagram app and follow any "
    f"message asking you to confirm your identity or review a login, then press Connect again. {NOTHING_CHANGED}"
)
PERMISSION_MISSING = (
    "Instagram did not give us a permission the connection needs. Press Connect again and leave every "
    f"requested permission switched on. {NOTHING_CHANGED}"
)
ACCESS_WITHDRAWN = (
    "Instagram accepted the login but then refused the access it had just given. "
    f"{NOTHING_CHANGED} Press Connect to try again, and log in with the Instagram account this shop uses."
)
LOGIN_NOT_COMPLETED = (
    f"Instagram did not complete the login. {NOTHING_CHANGED} You can try again; if it keeps failing, "
    "tell support: we have recorded the details."
)

# The same moments on Facebook Login, where the merchant logged in on Facebook (a Page's admin, not
# the Instagram account's owner, is who logs in there).
FACEBOOK_WORDING = {
    CANCELLED: f"You cancelled the Facebook login. {NOTHING_CHANGED}",
    REPLY_NOT_OURS: REPLY_NOT_OURS.replace("This Instagram login", "This Facebook login"),
    REPLY_INCOMPLETE: REPLY_INCOMPLETE.replace("Instagram's reply", "Facebook's reply"),
    CODE_USED: CODE_USED.replace("Instagram did not accept", "Facebook did not accept"),
    TEST_MODE: (
        "Our app is still in Meta's test mode, which lets in only Facebook accounts invited to test it. If you "
        "were sent a tester invitation, accept it (on Facebook, at developers.facebook.com/requests) and press "
        "Connect again. Otherwise this is not something you can fix; we have recorded the details for our "
        f"support team. {NOTHING_CHANGED}"
    ),
    APP_SETTINGS: APP_SETTINGS.replace("Instagram refused", "Facebook refused"),
    OUR_REQUEST: OUR_REQUEST.replace("Instagram accepted", "Facebook accepted"),
    RATE_LIMITED: RATE_LIMITED.replace("Instagram is limiting", "Facebook is limiting"),
    META_TROUBLE: META_TROUBLE.replace("Instagram did not answer", "Facebook did not answer"),
    POLICY_BLOCK: POLICY_BLOCK.replace("Instagram has temporarily blocked", "Facebook has temporarily blocked"),
    CHECKPOINT: (
        "Facebook wants you to confirm something first. Log in at facebook.com and follow any message asking "
        f"you to confirm your identity or review a login, then press Connect again. {NOTHING_CHANGED}"
    ),
    PERMISSION_MISSING: (
        "Facebook did not give us a permission the connection needs. Press Connect again, leave every requested "
        f"permission switched on and tick the shop's Page. {NOTHING_CHANGED}"
    ),
    ACCESS_WITHDRAWN: (
        f"Facebook accepted the login but then refused the access it had just given. {NOTHING_CHANGED} "
        "Press Connect to try again, and log in with the Facebook account that manages the shop's Page."
    ),
    LOGIN_NOT_COMPLETED: LOGIN_NOT_COMPLETED.replace("Instagram did not complete", "Facebook did not complete"),
}
NO_LINKED_PAGE = (
    "None of the Facebook Pages you let us see has an Instagram professional account linked to it, so there "
    f"is nothing to connect yet. {NOTHING_CHANGED}"
)
PAGE_NOT_GRANTED = (
    "Facebook did not give us access to the Page {page}. Press Connect again and, in Facebook's window, make "
    f"sure this Page is ticked. {NOTHING_CHANGED}"
)
ROLE_TOO_LOW = (
    "{role_on_page}: that lets you look at the Page but not act for it, so the shop could not use its Instagram "
    f"account. Ask an admin of the Page to give you at least the {page_roles.ENOUGH_ROLE} role, or full control "
    f"(in Meta Business Suite: Settings, then People), and press Connect again. {NOTHING_CHANGED}"
)


def worded(message: str, path: LoginPath) -> str:
    """The message as the merchant reads it on this login path."""
    return FACEBOOK_WORDING.get(message, message) if path == LoginPath.FACEBOOK else message


# Within the operator's causes, the app's test mode is the one the merchant can help with (a tester
# invitation to accept). Words only: the cause stays the classifier's.
TEST_MODE_WORDS = re.compile(r"developer role|development mode|\btesters?\b|role on (?:the|this) app", re.IGNORECASE)

# Causes that say the merchant's login itself is no good any more (after Instagram had accepted it).
ACCESS_WITHDRAWN_CAUSES = frozenset(
    {
        CauseId.TOKEN_EXPIRED,
        CauseId.PASSWORD_CHANGED,
        CauseId.APP_REMOVED,
        CauseId.SESSION_INVALIDATED,
        CauseId.DATA_ACCESS_EXPIRED,
        CauseId.INVALID_TOKEN,
    }
)


@dataclass(frozen=True)
class ConnectRefusal:
    """One refused login, worded for the merchant, with the technical side for operators."""

    step: Step
    cause: CauseId | None  # None: the merchant cancelled on Instagram's login page
    fixer: Fixer
    message: str  # what the merchant reads: our own words, never Meta's
    level: str  # the flash category
    detail: str = ""  # Meta's own words with every secret removed: operators only
    code: int | None = None
    subcode: int | None = None

    @property
    def kind(self) -> str:
        return REFUSAL_KINDS[self.step]


def fixer_for(step: Step, cause: CauseId | str | None) -> Fixer:
    """Who can fix a refusal of this cause at this step."""
    if cause == CauseId.APP_MISCONFIGURED:
        return Fixer.OPERATOR
    if cause == CauseId.REQUEST_ERROR and step == Step.FINISH:
        return Fixer.OPERATOR  # our own requests after the login: a field or path Meta refuses
    if cause in (CauseId.RATE_LIMITED, CauseId.PROVIDER_ERROR, CauseId.POLICY_BLOCK):
        return Fixer.NOBODY
    return Fixer.MERCHANT


def _merchant_words(step: Step, cause: CauseId, meta_text: str) -> tuple[str, str]:
    """(message, flash level) for a refusal the classifier named `cause`."""
    if cause == CauseId.APP_MISCONFIGURED:
        return (TEST_MODE if TEST_MODE_WORDS.search(meta_text) else APP_SETTINGS), "error"
    if cause == CauseId.REQUEST_ERROR:
        return (OUR_REQUEST, "error") if step == Step.FINISH else (CODE_USED, "error")
    if cause == CauseId.RATE_LIMITED:
        return RATE_LIMITED, "warning"
    if cause == CauseId.PROVIDER_ERROR:
        return META_TROUBLE, "warning"
    if cause == CauseId.POLICY_BLOCK:
        return POLICY_BLOCK, "warning"
    if cause == CauseId.ACCOUNT_NOT_PROFESSIONAL:
        return NOT_PROFESSIONAL, "error"
    if cause == CauseId.ACCOUNT_CHECKPOINT:
        return CHECKPOINT, "error"
    if cause == CauseId.PERMISSIONS_CHANGED:
        return PERMISSION_MISSING, "error"
    if cause in ACCESS_WITHDRAWN_CAUSES:
        return ACCESS_WITHDRAWN, "error"
    return (LOGIN_NOT_COMPLETED, "warning") if step == Step.LOGIN_PAGE else (ACCESS_WITHDRAWN, "error")


def _scrubbed(text: str, secrets: list[str], path: LoginPath = LoginPath.INSTAGRAM) -> str:
    # Operators read both paths' refusals on one page: a Facebook one says where it came from.
    prefix = "Facebook Login: " if path == LoginPath.FACEBOOK else ""
    return redact(remove_secrets(prefix + text, secrets))[:900]


def from_login_page(
    error: str,
    reason: str | None,
    description: str | None,
    secrets: list[str],
    path: LoginPath = LoginPath.INSTAGRAM,
) -> ConnectRefusal:
    """The login page (Instagram's, or Facebook's dialog) sent the merchant back with `error`, `error_reason`...

    `secrets` are the values the reply carried (state, code) that must not reach any page.
    """
    meta_text = " ".join(part for part in (description, reason) if part)
    cause = classify_fields(error_type=error, message=meta_text or error).cause
    detail = _scrubbed(
        f"{error}" + (f" ({reason})" if reason else "") + (f": {description}" if description else ""), secrets, path
    )
    if error == "access_denied" and cause != CauseId.APP_MISCONFIGURED:
        # The merchant said no on the login page: their choice, not an error to name a cause for.
        return ConnectRefusal(Step.LOGIN_PAGE, None, Fixer.MERCHANT, worded(CANCELLED, path), "info", detail)
    message, level = _merchant_words(Step.LOGIN_PAGE, cause, meta_text)
    return ConnectRefusal(
        Step.LOGIN_PAGE, cause, fixer_for(Step.LOGIN_PAGE, cause), worded(message, path), level, detail
    )


def from_reply_check(*, state_mismatch: bool, detail: str, path: LoginPath = LoginPath.INSTAGRAM) -> ConnectRefusal:
    """Our own check of the reply failed: not the login this browser started, or fields missing."""
    message = worded(REPLY_NOT_OURS if state_mismatch else REPLY_INCOMPLETE, path)
    return ConnectRefusal(
        Step.REPLY_CHECK, CauseId.REQUEST_ERROR, Fixer.MERCHANT, message, "error", _scrubbed(detail, [], path)
    )


def from_meta_error(
    step: Step, error: MetaApiError, secrets: list[str], path: LoginPath = LoginPath.INSTAGRAM
) -> ConnectRefusal:
    """Meta refused the code exchange or a call while finishing; the client already removed what it sent."""
    cause = classify_error(error).cause
    message, level = _merchant_words(step, cause, error.message)
    return ConnectRefusal(
        step,
        cause,
        fixer_for(step, cause),
        worded(message, path),
        level,
        _scrubbed(error.message, secrets, path),
        code=error.code,
        subcode=error.subcode,
    )


def no_linked_page() -> ConnectRefusal:
    """Facebook Login came back without a Page linked to an Instagram professional account."""
    return ConnectRefusal(
        Step.FINISH,
        CauseId.PAGE_UNLINKED,
        Fixer.MERCHANT,
        NO_LINKED_PAGE,
        "warning",
        "Facebook Login: no Page the person granted has an Instagram account linked",
    )


def page_not_granted(page_name: str) -> ConnectRefusal:
    """The picked Page came without a token of its own: Facebook did not give the app access to it."""
    return ConnectRefusal(
        Step.FINISH,
        CauseId.PERMISSIONS_CHANGED,
        Fixer.MERCHANT,
        PAGE_NOT_GRANTED.format(page=_quoted(page_name)),
        "error",
        f"Facebook Login: /me/accounts gave no Page token for {_quoted(page_name)}",
    )


def role_too_low(page_name: str, tasks: list[str] | tuple[str, ...]) -> ConnectRefusal:
    """The merchant picked a Page on which their role cannot act for it (Advertiser, Analyst...)."""
    role = page_roles.role_for(tasks)
    page = _quoted(page_name)
    role_on_page = f"Your role on the Facebook Page {page} is {role}" if role else f"You have no role on {page}"
    return ConnectRefusal(
        Step.FINISH,
        CauseId.PERMISSIONS_CHANGED,
        Fixer.MERCHANT,
        ROLE_TOO_LOW.format(role_on_page=role_on_page),
        "error",
        f"Facebook Login: role on the Page {_quoted(page_name)} too low: {page_roles.describe(tasks)}",
    )


def _quoted(page_name: str) -> str:
    return f"\u201c{page_name}\u201d"


def record(
    refusal: ConnectRefusal, *, shop: Shop, user: User, now: datetime, client_fingerprint: ClientFingerprint
) -> None:
    """Keep the refusal on the shop's connection, for its timeline and the app health page.

    Only an event is added (and the shop's not-connected row, the first time): the connection's
    state, token and version stay as they were. A failure to record never hides the merchant's message.
    """
    try:
        connection = connection_for(shop)
        record_event(
            connection,
            refusal.kind,
            now,
            Actor.for_user(user),
            cause=refusal.cause,
            meta_code=refusal.code,
            meta_subcode=refusal.subcode,
            message=refusal.detail or refusal.message,
            ip_prefix=client_fingerprint.ip_prefix,
            user_agent_family=client_fingerprint.user_agent_family,
        )
        db.session.commit()
    except SQLAlchemyError:
        db.session.rollback()
        log.exception("could not record a refused login for shop %s", shop.id)
