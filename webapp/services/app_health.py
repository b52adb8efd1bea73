"""The app's own standing with Meta, for admins: its recent errors, rate limits, settings and a live check.

Merchants' problems live on their dashboards; this is what only the operator can fix or should
know: refused logins, keep-alive failures that are the app's (its settings, Meta-wide trouble, an
app-wide rate limit), the pauses in force, and whether Meta still recognises the app's id and secret.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import Row, and_, func, or_, select

from webapp.extensions import db
from webapp.logging_filters import redact
from webapp.models import ConnectionEvent, InstagramConnection, RateLimitPause, Shop, User
from webapp.services import audit
from webapp.services.connections.causes import CAUSES, CauseId
from webapp.services.connections.connect_errors import (
    FIXER_WORDS,
    REFUSAL_KINDS,
    STEP_OF_KIND,
    STEP_WORDS,
    Fixer,
    fixer_for,
)
from webapp.services.connections.state import end_read_transaction
from webapp.services.keepalive.leases import app_paused_until
from webapp.services.keepalive.policy import Policy
from webapp.services.meta.classifier import APP_WIDE_RATE_LIMIT_CODES, classify_error
from webapp.services.meta.client import InstagramClient, MetaApiError

KEEPALIVE_FAILURE_KINDS = ("check_failed", "refresh_failed", "token_unreadable")
KEEPALIVE_WORDS = {
    "check_failed": "keep-alive: health check",
    "refresh_failed": "keep-alive: token renewal",
    "token_unreadable": "keep-alive: reading the stored token",
}
# Keep-alive failures that are the app's, not one merchant's: its settings, or Meta's trouble.
APP_CAUSES = (CauseId.APP_MISCONFIGURED, CauseId.PROVIDER_ERROR)

# Usage figures older than this say nothing about now; the busiest accounts shown at most.
USAGE_WINDOW = timedelta(hours=1)
BUSIEST_SHOWN = 10

# The check sends this as the login code: Meta knows no such code, so it can only refuse it. How it
# refuses tells whether it recognised the app's id and secret first.
CHECK_CODE = "app-health-check-not-a-real-code"


@dataclass(frozen=True)
class AppError:
    """One recent error that is the app's business, worded for the operator."""

    occurred_at: datetime
    where: str
    cause: str | None
    cause_title: str
    fixer: Fixer
    code: int | None
    subcode: int | None
    message: str
    shop_id: int
    shop_name: str

    @property
    def fixer_words(self) -> str:
        return FIXER_WORDS[self.fixer]


def _keepalive_fixer(cause: str | None) -> Fixer:
    return Fixer.OPERATOR if cause == CauseId.APP_MISCONFIGURED else Fixer.NOBODY


def recent_errors(now: datetime, *, days: int = 30, limit: int = 50) -> list[AppError]:
    """Refused logins and the app's own keep-alive failures of the last `days`, newest first."""
    app_wide = or_(
        ConnectionEvent.cause.in_(APP_CAUSES),
        and_(
            ConnectionEvent.cause == CauseId.RATE_LIMITED,
            ConnectionEvent.meta_code.in_(APP_WIDE_RATE_LIMIT_CODES),
        ),
    )
    # Refused logins and the keep-alive's failures are read separately, each up to `limit`: a merchant
    # answering many logins of their own with made-up error words cannot push the app's failures off.
    rows: list[Row[tuple[ConnectionEvent, int, str]]] = []
    for kinds in (
        ConnectionEvent.kind.in_(REFUSAL_KINDS.values()),
        and_(ConnectionEvent.kind.in_(KEEPALIVE_FAILURE_KINDS), app_wide),
    ):
        rows += db.session.execute(
            select(ConnectionEvent, Shop.id, Shop.name)
            .join(InstagramConnection, InstagramConnection.id == ConnectionEvent.connection_id)
            .join(Shop, Shop.id == InstagramConnection.shop_id)
            .where(ConnectionEvent.occurred_at >= now - timedelta(days=days), kinds)
            .order_by(ConnectionEvent.occurred_at.desc(), ConnectionEvent.id.desc())
            .limit(limit)
        ).all()
    rows.sort(key=lambda row: (row[0].occurred_at, row[0].id), reverse=True)
    errors = []
    for event, shop_id, shop_name in rows:
        step = STEP_OF_KIND.get(event.kind)
        if step is not None:
            where = f"connecting: {STEP_WORDS[step]}"
            fixer = fixer_for(step, event.cause)
        else:
            where = KEEPALIVE_WORDS.get(event.kind, event.kind)
            fixer = _keepalive_fixer(event.cause)
        cause = CAUSES.get(event.cause) if event.cause else None
        errors.append(
            AppError(
                occurred_at=event.occurred_at,
                where=where,
                cause=event.cause,
                cause_title=cause.title if cause else "Cancelled by the merchant",
                fixer=fixer,
                code=event.meta_code,
                subcode=event.meta_subcode,
                # Stored already scrubbed; redacting again costs nothing and guards older rows.
                message=redact(event.message),
                shop_id=shop_id,
                shop_name=shop_name,
            )
        )
    return errors


def count_by_fixer(errors: list[AppError]) -> list[tuple[str, int]]:
    """How many of `errors` each party can fix, in a fixed order (operator first)."""
    counts = Counter(error.fixer for error in errors)
    return [(FIXER_WORDS[fixer], counts[fixer]) for fixer in (Fixer.OPERATOR, Fixer.MERCHANT, Fixer.NOBODY)]


@dataclass(frozen=True)
class PausedAccount:
    shop_id: int
    shop_name: str
    username: str | None
    until: datetime


@dataclass(frozen=True)
class AccountUsage:
    """One account's share of its own limit, from the X-Business-Use-Case-Usage header Meta sent last."""

    shop_id: int
    shop_name: str
    username: str | None
    percent: int
    seen_at: datetime


@dataclass(frozen=True)
class AppUsage:
    """The app's share of its limit, from the X-App-Usage header Meta sent last (when it sends one)."""

    figures: dict  # call_count, total_cputime, total_time: percentages
    seen_at: datetime

    @property
    def percent(self) -> int:
        return int(max((v for v in self.figures.values() if isinstance(v, int | float)), default=0))


@dataclass(frozen=True)
class RateLimits:
    """Meta's limits as the keep-alive last met them."""

    app_paused_until: datetime | None  # an app-wide pause in force now
    last_app_pause: RateLimitPause | None  # the latest one, in force or not
    paused_accounts: list[PausedAccount]
    paused_account_count: int
    slowdown_percent: int
    app_usage: AppUsage | None = None
    busiest_accounts: list[AccountUsage] = field(default_factory=list)


def rate_limits(now: datetime, policy: Policy, *, limit: int = 20) -> RateLimits:
    """The app-wide pause, and the accounts Meta asked us to leave alone for a while."""
    paused = select(InstagramConnection).where(InstagramConnection.paused_until > now)
    rows = db.session.execute(
        select(Shop.id, Shop.name, InstagramConnection.username, InstagramConnection.paused_until)
        .join(InstagramConnection, InstagramConnection.shop_id == Shop.id)
        .where(InstagramConnection.paused_until > now)
        .order_by(InstagramConnection.paused_until.desc())
        .limit(limit)
    ).all()
    count = db.session.execute(select(func.count()).select_from(paused.subquery())).scalar_one()
    busiest = db.session.execute(
        select(
            Shop.id,
            Shop.name,
            InstagramConnection.username,
            InstagramConnection.usage_percent,
            InstagramConnection.usage_seen_at,
        )
        .join(InstagramConnection, InstagramConnection.shop_id == Shop.id)
        .where(InstagramConnection.usage_percent > 0, InstagramConnection.usage_seen_at >= now - USAGE_WINDOW)
        .order_by(InstagramConnection.usage_percent.desc(), InstagramConnection.usage_seen_at.desc())
        .limit(BUSIEST_SHOWN)
    ).all()
    return RateLimits(
        app_paused_until=app_paused_until(now),
        last_app_pause=db.session.get(RateLimitPause, "app"),
        paused_accounts=[PausedAccount(*row) for row in rows],
        paused_account_count=count,
        slowdown_percent=policy.slowdown_percent,
        app_usage=_latest_app_usage(now),
        busiest_accounts=[AccountUsage(*row) for row in busiest],
    )


def _latest_app_usage(now: datetime) -> AppUsage | None:
    """X-App-Usage as Meta sent it last within USAGE_WINDOW (the same figures reach every connection)."""
    row = db.session.execute(
        select(InstagramConnection.usage, InstagramConnection.usage_seen_at)
        .where(InstagramConnection.usage_seen_at >= now - USAGE_WINDOW)
        .order_by(InstagramConnection.usage_seen_at.desc())
        .limit(20)
    ).all()
    for usage, seen_at in row:
        if isinstance(usage, dict) and isinstance(usage.get("app"), dict) and usage["app"]:
            return AppUsage(usage["app"], seen_at)
    return None


@dataclass(frozen=True)
class ConfigFact:
    label: str
    value: str
    note: str = ""


def config_facts(config: Mapping, redirect_uri: str) -> list[ConfigFact]:
    """The settings that decide how Meta sees the app, in words; never the secret itself."""
    sandbox = bool(config.get("INSTAGRAM_SANDBOX"))
    client_id = config.get("INSTAGRAM_CLIENT_ID") or ""
    return [
        ConfigFact(
            "Meta",
            "the built-in sandbox (no real Meta)" if sandbox else "real Meta",
            "INSTAGRAM_SANDBOX. The sandbox answers every call itself and needs no credentials." if sandbox else "",
        ),
        ConfigFact(
            "Login paths",
            "Instagram Login (Business Login)",
            "Facebook Login for Business is not built yet; Instagram Login is the only way to connect.",
        ),
        ConfigFact(
            "Instagram app id (INSTAGRAM_CLIENT_ID)",
            client_id or "missing",
            "The Instagram app's id (App Dashboard: Instagram, API setup with Instagram login), "
            "not the Facebook app's.",
        ),
        ConfigFact(
            "App secret (INSTAGRAM_CLIENT_SECRET)",
            "set" if config.get("INSTAGRAM_CLIENT_SECRET") else "missing",
            "Never shown here.",
        ),
        ConfigFact(
            "Redirect URI sent to Meta",
            redirect_uri,
            "Must be listed exactly like this (scheme, host, path) among the app's valid OAuth redirect URIs.",
        ),
        ConfigFact("Permissions asked for", config.get("INSTAGRAM_SCOPES", ""), "INSTAGRAM_SCOPES"),
        ConfigFact("Graph API version", config.get("INSTAGRAM_GRAPH_VERSION", ""), "INSTAGRAM_GRAPH_VERSION"),
        ConfigFact("Login page", config.get("INSTAGRAM_AUTHORIZE_URL", "")),
        ConfigFact("Code exchange", f"{config.get('INSTAGRAM_API_BASE', '')}/oauth/access_token"),
        ConfigFact("Graph API", config.get("INSTAGRAM_GRAPH_BASE", "")),
    ]


@dataclass(frozen=True)
class AppCheck:
    """The answer to "does Meta still recognise the app?", in words."""

    ok: bool
    headline: str
    explanation: str
    checked_at: datetime
    meta_said: str = ""
    code: int | None = None
    app_usage: dict = field(default_factory=dict)


NOT_PROVEN = (
    "What this cannot prove: that the redirect URI is registered, that the app is Live, or that a given "
    "Instagram account may log in (testers, roles). Only a real login checks those; its refusals are listed "
    "on this page."
)


# What each cause of Meta's refusal says about the app: (passed, headline, explanation).
CHECK_VERDICTS: dict[CauseId, tuple[bool, str, str]] = {
    CauseId.REQUEST_ERROR: (
        True,
        "Meta recognises the app.",
        "Meta accepted the app's id and secret and refused only the made-up login code this check sends, "
        f"as it should. {NOT_PROVEN}",
    ),
    CauseId.APP_MISCONFIGURED: (
        False,
        "Meta refused the app's own settings.",
        "Check that INSTAGRAM_CLIENT_ID and INSTAGRAM_CLIENT_SECRET are the Instagram app's id and secret "
        "(App Dashboard: Instagram, API setup with Instagram login), not the Facebook app's, that the secret "
        "was not reset in the App Dashboard since it was set here, and that the redirect URI above is "
        "registered exactly as shown. Until this is fixed, no merchant can connect.",
    ),
    CauseId.RATE_LIMITED: (
        False,
        "Meta is limiting the app's calls right now.",
        "The limit lifts by itself; the keep-alive already slows down. Run the check again later.",
    ),
    CauseId.PROVIDER_ERROR: (
        False,
        "Meta did not answer properly.",
        "Meta timed out, could not be reached or answered with a server error, so this check learnt nothing "
        "about the app's settings. Run it again in a few minutes.",
    ),
}
UNRECOGNISED_VERDICT = (
    False,
    "Meta answered in a way this check does not recognise.",
    "Read Meta's words below; if they name the app's id, secret, redirect URI or mode, the App Dashboard "
    "is the place to look.",
)


def _check_answer(error: MetaApiError, now: datetime) -> AppCheck:
    ok, headline, explanation = CHECK_VERDICTS.get(classify_error(error).cause, UNRECOGNISED_VERDICT)
    return AppCheck(
        ok, headline, explanation, now, meta_said=error.message, code=error.code, app_usage=dict(error.usage.app)
    )


def check_app(client: InstagramClient, redirect_uri: str, now: datetime, *, actor: User) -> AppCheck:
    """Ask Meta whether it recognises the app's id and secret (one call, no merchant's token); audit it."""
    end_read_transaction()
    try:
        client.exchange_code(CHECK_CODE, redirect_uri)
    except MetaApiError as error:
        result = _check_answer(error, now)
    else:
        # A token for a code nobody issued: nothing to keep, and nothing this check can vouch for.
        result = AppCheck(
            False,
            "Meta accepted a made-up login code.",
            "That should never happen; the code exchange URL may not point at Meta. Check INSTAGRAM_API_BASE.",
            now,
        )
    audit.record("app.checked", now=now, actor=actor, details=f"{'ok' if result.ok else 'failed'}: {result.headline}")
    return result
