"""Why did the connection break? Ranked causes with a confidence and evidence, and raw-error explanations.

Built on the classifier (webapp/services/meta/classifier.py): the error decides the first guess, and the
connection's own history (Meta's callbacks, reconnects and their coarse fingerprints, token age at
death, our own refresh attempts, permissions) raises, lowers or explains it. Only what happened since
the latest connect explains the current trouble, and a fact of our own that does not fit Meta's answer
lowers the cause to "possible" and is shown beside it.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import select

from webapp.extensions import db
from webapp.models import ConnectionEvent, ConnectionState, InstagramConnection, LoginPath
from webapp.services import webhooks
from webapp.services.connections.causes import (
    CAUSES,
    DATA_ACCESS_WINDOW,
    PATTERNS,
    Cause,
    CauseId,
    Pattern,
    words_for,
)
from webapp.services.meta.classifier import RECONNECT_CAUSES, TOKEN_SUBCODES, classify_fields
from webapp.services.meta.client import LONG_LIVED_TOKEN_LIFETIME
from webapp.services.meta.error_text import ParsedError, parse_raw_error
from webapp.services.meta.facebook import is_page_check_finding

log = logging.getLogger(__name__)

# What our own calls (/me and the refresh) need: a permission error on them means one of these was taken away.
REQUIRED_PERMISSIONS = ("instagram_business_basic",)
# Facebook Login: the Page check (keepalive/facebook_check.py) needs to see the Page and its Instagram account.
REQUIRED_FACEBOOK_PERMISSIONS = ("instagram_basic", "pages_show_list")


def required_permissions(connection: InstagramConnection) -> tuple[str, ...]:
    return REQUIRED_FACEBOOK_PERMISSIONS if connection.via_facebook else REQUIRED_PERMISSIONS


# A permission's name in Meta's text, e.g. "(#200) Requires instagram_business_basic permission".
PERMISSION_NAME = re.compile(r"\b(?:instagram|pages|business|ads|catalog)_[a-z_]+\b")


CONNECT_KINDS = ("connected", "reconnected", "switched_account")


DIAGNOSTIC_EVENT_KINDS = (
    "connected",
    "reconnected",
    "switched_account",
    "deauthorized",
    "expired",
    "refresh_failed",
    "check_failed",
    "token_unreadable",
)


HISTORY_WINDOW = timedelta(days=30)


CONFIDENCE_ORDER = {"certain": 0, "likely": 1, "possible": 2}
# Subcodes whose own text in Meta's answer names more than one reason: strong evidence, not certainty.
TWO_REASON_SUBCODES = {
    460: "Meta's text for it names two reasons: a password change, or Meta changing the session for security reasons."
}


def explain_error(raw: str, path: str = LoginPath.INSTAGRAM) -> dict:
    """The `explain-error` answer for one raw Meta error (JSON or text), in the words of login `path`."""
    parsed = parse_raw_error(raw)
    classification = classify_fields(
        code=parsed.code,
        subcode=parsed.subcode,
        error_type=parsed.type,
        message=parsed.message,
        http_status=parsed.http_status,
        is_transient=parsed.is_transient,
    )
    if not raw.strip():
        classification = classify_fields()
    if classification.cause == CauseId.UNKNOWN and parsed.code is None and parsed.type is None:
        # Nothing recognised: report nothing as parsed, but Meta's words for the owner if it sent some.
        parsed = ParsedError(
            http_status=parsed.http_status, user_title=parsed.user_title, user_message=parsed.user_message
        )
    cause = words_for(classification.cause, path)
    return {
        "cause": cause.id,
        "path": str(path),
        "needs_reconnect": classification.needs_reconnect,
        "retryable": classification.retryable,
        "title": cause.title,
        "explanation": cause.explanation,
        "checklist": list(cause.checklist),
        "nothing_to_do": cause.nothing_to_do,
        "prevention": list(cause.prevention),
        "support_notes": cause.support_notes,
        "meta": parsed.as_meta(),
        "meta_user_title": parsed.user_title,
        "meta_user_message": parsed.user_message,
    }


@dataclass
class RankedCause:
    cause: Cause
    confidence: str  # certain | likely | possible
    evidence: list[str] = field(default_factory=list)
    pattern: Pattern | None = None
    doubts: list[str] = field(default_factory=list)  # our own facts that do not fit this cause

    @property
    def checklist(self) -> list[str]:
        """The cause's steps first (they fix this incident), then the pattern's (they keep it from coming back)."""
        extra = [step for step in self.pattern.checklist if step not in self.cause.checklist] if self.pattern else []
        return list(self.cause.checklist) + extra


@dataclass
class Diagnosis:
    causes: list[RankedCause]
    incident_started_at: datetime | None
    # Meta's own words for the account owner (error_user_title, error_user_msg), where it sent them.
    meta_user_title: str | None = None
    meta_user_message: str | None = None

    @property
    def primary(self) -> RankedCause | None:
        return self.causes[0] if self.causes else None

    @property
    def others(self) -> list[RankedCause]:
        return self.causes[1:]


def _age(delta: timedelta) -> str:
    days = delta.days
    if days >= 1:
        return f"{days} day{'s' if days != 1 else ''}"
    hours = int(delta.total_seconds() // 3600)
    if hours >= 1:
        return f"{hours} hour{'s' if hours != 1 else ''}"
    minutes = int(delta.total_seconds() // 60)
    if minutes < 1:
        return "less than a minute"
    return f"{minutes} minute{'s' if minutes != 1 else ''}"


def latest_connect(connection: InstagramConnection, events: list[ConnectionEvent]) -> datetime | None:
    """When the current token was linked: the later of the row's connected_at and the newest connect event."""
    times = [e.occurred_at for e in events if e.kind in CONNECT_KINDS]
    if connection.connected_at is not None:
        times.append(connection.connected_at)
    return max(times, default=None)


@dataclass(frozen=True)
class PermissionFacts:
    granted: list[str]  # granted at the last connect and not refused since
    removed: list[str]  # granted at the last connect, refused by Instagram in the current trouble


def permission_facts(connection: InstagramConnection) -> PermissionFacts:
    """The permissions in force: those granted at the last connect, less those Instagram now refuses."""
    granted = connection.permissions
    if connection.cause != CauseId.PERMISSIONS_CHANGED:
        return PermissionFacts(granted, [])
    # Meta often names no permission ("(#10) Application does not have permission for this action"); our
    # calls need only REQUIRED_PERMISSIONS, so then one of those is what it took away.
    named = set(PERMISSION_NAME.findall(connection.last_error_message or ""))
    if not named and not connection.via_facebook:
        named = set(REQUIRED_PERMISSIONS)
    # On Facebook Login a role on the Page can go while every permission stays: only a permission
    # Meta (or the Page check) names was taken away.
    removed = [p for p in granted if p in named]
    return PermissionFacts([p for p in granted if p not in removed], removed)


def diagnose(connection: InstagramConnection, events: list[ConnectionEvent], now: datetime) -> Diagnosis:
    """Rank the likely causes of the connection's current trouble, most likely first.

    Meta's callbacks and our failures from before the latest connect, reconnect or switch belonged to
    the token it replaced: they never explain the current trouble.
    """
    if connection.state in (ConnectionState.HEALTHY, ConnectionState.NOT_CONNECTED) or connection.cause is None:
        return Diagnosis([], None)
    events = sorted(events, key=lambda e: e.occurred_at)
    connected = latest_connect(connection, events)
    current = [e for e in events if connected is None or e.occurred_at >= connected]
    ranked: dict[str, RankedCause] = {}

    def add(cause_id: str, confidence: str, *evidence: str, pattern: str | None = None) -> RankedCause:
        entry = ranked.get(cause_id)
        if entry is None:
            entry = ranked[cause_id] = RankedCause(words_for(cause_id, connection.login_path), confidence, [])
        elif CONFIDENCE_ORDER[confidence] < CONFIDENCE_ORDER[entry.confidence]:
            entry.confidence = confidence
        entry.evidence += [line for line in evidence if line and line not in entry.evidence]
        if pattern:
            entry.pattern = PATTERNS[pattern]
        return entry

    failure = next((e for e in reversed(current) if e.cause == connection.cause), None)
    incident_started = _incident_start(connection, failure)
    deauthorized = next((e for e in reversed(current) if e.kind == "deauthorized"), None)
    if deauthorized:
        add(
            CauseId.APP_REMOVED,
            "certain",
            f"Meta told us on {deauthorized.occurred_at:%d %b %Y at %H:%M} UTC that the app was removed "
            "from this Instagram account.",
        )

    cause_id = connection.cause
    code, subcode = connection.last_error_code, connection.last_error_subcode
    if failure is not None:
        code, subcode = failure.meta_code or code, failure.meta_subcode or subcode
    doubts = _doubts(connection, cause_id, failure, connected, incident_started)
    # Who answered: Facebook Login's calls go to Facebook's Graph API, Instagram Login's to Instagram's.
    meta = "Facebook" if connection.via_facebook else "Instagram"
    page_finding = connection.via_facebook and is_page_check_finding(connection.last_error_message)
    expired = failure is not None and failure.kind == "expired"
    if failure is not None and expired and cause_id in (CauseId.TOKEN_EXPIRED, CauseId.DATA_ACCESS_EXPIRED):
        add(cause_id, "certain", failure.message)
    elif page_finding:
        # Meta answered; what its answer showed is our own finding, quoted whole (it names the Page and role).
        add(cause_id, "certain", f"Our check of the Facebook Page found: {connection.last_error_message}")
    elif code == 190 and subcode in TWO_REASON_SUBCODES:
        add(cause_id, "likely", f"{meta} answered with error 190, subcode {subcode}. {TWO_REASON_SUBCODES[subcode]}")
    elif code == 190 and subcode in TOKEN_SUBCODES:
        meaning = "." if doubts else ", which means exactly this."
        add(cause_id, "certain", f"{meta} answered with error 190, subcode {subcode}{meaning}")
    elif code is not None:
        add(
            cause_id,
            "likely",
            f"{meta} answered with error code {code}" + (f", subcode {subcode}" if subcode else "") + ".",
        )
    elif cause_id in CAUSES:
        add(
            cause_id,
            "likely",
            f"Recognised from the wording of {meta}'s message." if connection.last_error_message else "",
        )
    if connection.last_error_message and not page_finding and not expired and cause_id != CauseId.TOKEN_EXPIRED:
        ranked[cause_id].evidence.append(f"{meta}'s message: “{connection.last_error_message[:200]}”")
    if doubts:
        ranked[cause_id].doubts += doubts

    if cause_id in RECONNECT_CAUSES and connection.token_issued_at and incident_started:
        age = incident_started - connection.token_issued_at
        if connection.via_facebook:
            if cause_id != CauseId.DATA_ACCESS_EXPIRED and age < DATA_ACCESS_WINDOW - timedelta(days=1):
                ranked[cause_id].evidence.append(
                    f"Access was {_age(age)} old when it stopped working, long before its "
                    f"{DATA_ACCESS_WINDOW.days}-day data access window ended: it was taken away, not worn out."
                )
        elif cause_id != CauseId.TOKEN_EXPIRED and age < LONG_LIVED_TOKEN_LIFETIME - timedelta(days=1):
            ranked[cause_id].evidence.append(
                f"The token was {_age(age)} old when it stopped working, long before its "
                f"{LONG_LIVED_TOKEN_LIFETIME.days}-day end: it was revoked, not worn out."
            )

    if connection.refresh_failures and cause_id == CauseId.TOKEN_EXPIRED:
        ranked[cause_id].evidence.append(
            f"Our automatic refresh failed {connection.refresh_failures} time(s) before the expiry"
            + (f" (last: {connection.last_refresh_error})." if connection.last_refresh_error else ".")
            + " That is on our side, not yours."
        )

    incident_began = _incident_began(connection, current, incident_started)
    _reason_from_history(events, now, cause_id, add, incident_began)

    removed = permission_facts(connection).removed
    if cause_id == CauseId.PERMISSIONS_CHANGED and removed:
        ranked[cause_id].evidence.append(
            f"At the last connect {meta} granted {', '.join(connection.permissions)}; "
            f"now it refuses {', '.join(removed)}."
        )
    missing = [
        p for p in required_permissions(connection) if connection.permissions and p not in connection.permissions
    ]
    if missing:
        add(
            CauseId.PERMISSIONS_CHANGED,
            "likely",
            f"At the last connect {meta} granted {', '.join(connection.permissions)}, without {', '.join(missing)}.",
        )

    if cause_id == CauseId.INVALID_TOKEN:
        for other in (CauseId.PASSWORD_CHANGED, CauseId.SESSION_INVALIDATED, CauseId.APP_REMOVED):
            if other not in ranked:
                add(other, "possible", "Instagram often answers this way after this, without saying so.")

    for entry in ranked.values():
        if entry.doubts:  # a confidence word never stands beside a fact that contradicts it
            entry.confidence = "possible"
    causes = sorted(ranked.values(), key=lambda c: CONFIDENCE_ORDER[c.confidence])
    told = failure if failure is not None and (failure.meta_user_title or failure.meta_user_message) else None
    return Diagnosis(
        causes,
        incident_started,
        meta_user_title=told.meta_user_title if told else None,
        meta_user_message=told.meta_user_message if told else None,
    )


def _doubts(
    connection: InstagramConnection,
    cause_id: str,
    failure: ConnectionEvent | None,
    connected: datetime | None,
    incident_started: datetime | None,
) -> list[str]:
    """Our own facts that do not fit what Meta's answer says happened."""
    if incident_started is None:
        return []
    if cause_id == CauseId.DATA_ACCESS_EXPIRED and connected is not None:
        since_connect = incident_started - connected
        if since_connect < DATA_ACCESS_WINDOW:
            days = DATA_ACCESS_WINDOW.days
            return [
                f"But this shop connected only {_age(since_connect)} before it stopped working, and connecting "
                f"starts a fresh {days} days: {days} days without use does not fit, so we are not sure."
            ]
    our_own_expiry = failure is not None and failure.kind == "expired"
    if cause_id == CauseId.TOKEN_EXPIRED and not our_own_expiry and connection.token_expires_at is not None:
        left = connection.token_expires_at - incident_started
        if left > timedelta(days=1):
            return [
                f"But by our records the token was valid until {connection.token_expires_at:%d %b %Y}, "
                f"{_age(left)} later: it had not reached its end, so we are not sure."
            ]
    return []


def _incident_start(connection: InstagramConnection, failure: ConnectionEvent | None) -> datetime | None:
    """When this stretch of trouble began: the key of its checklist ticks, so a later failure for the same
    reason (a "Test now", a retry) keeps them."""
    if connection.state == ConnectionState.NEEDS_RECONNECT and connection.incident_started_at is not None:
        return connection.incident_started_at
    if connection.state in (ConnectionState.DEGRADED, ConnectionState.EXPIRING) and connection.failing_since:
        return connection.failing_since
    return failure.occurred_at if failure else connection.state_changed_at


def _incident_began(
    connection: InstagramConnection, current: list[ConnectionEvent], incident_started: datetime | None
) -> datetime | None:
    """When Instagram first ended the connection in this incident (later failures may repeat it)."""
    if connection.state == ConnectionState.NEEDS_RECONNECT and connection.incident_started_at is not None:
        return connection.incident_started_at
    first = next((e for e in current if e.state_after == ConnectionState.NEEDS_RECONNECT), None)
    return first.occurred_at if first else incident_started


def _reason_from_history(
    events: list[ConnectionEvent],
    now: datetime,
    cause_id: str,
    add: Callable[..., RankedCause],
    incident_began: datetime | None,
) -> None:
    """Many connects from many networks or browsers point at the behavioural causes.

    Only this incident's connects count: those of the last 30 days since Instagram last ended the
    connection before, without the reconnect that fixed that (a merchant's fix is not a risk). A
    break that healed without a reconnect leaves no event here, so the next connect after it is
    taken for its fix: that errs towards counting less.
    """
    if cause_id not in (
        CauseId.SESSION_INVALIDATED,
        CauseId.PASSWORD_CHANGED,
        CauseId.INVALID_TOKEN,
        CauseId.ACCOUNT_CHECKPOINT,
    ):
        return
    since = now - HISTORY_WINDOW
    connects: list[ConnectionEvent] = []
    last_break: ConnectionEvent | None = None  # the latest time Instagram ended the connection before this incident
    fix: ConnectionEvent | None = None  # the reconnect that followed it
    for event in events:
        if incident_began is not None and event.occurred_at >= incident_began:
            break
        if event.kind in CONNECT_KINDS:
            if last_break is not None and fix is None:
                fix = event
            else:
                connects.append(event)
        elif event.state_after == ConnectionState.NEEDS_RECONNECT:
            last_break, fix = event, None
            connects = []  # the connects before an earlier break were explained with it
    connects = [e for e in connects if e.occurred_at >= since]
    networks = {e.ip_prefix for e in connects if e.ip_prefix}
    browsers = {e.user_agent_family for e in connects if e.user_agent_family}
    if last_break is not None and last_break.occurred_at >= since:
        period = f"since Instagram last ended the connection on {last_break.occurred_at:%d %b}"
    else:
        period = "in the last 30 days"
    summary = (
        f"Connected {len(connects)} times {period}, from {len(networks)} network(s) and {len(browsers)} browser(s)"
        + (", not counting the reconnect that fixed that." if fix is not None and fix.occurred_at >= since else ".")
    )
    target = CauseId.SESSION_INVALIDATED if cause_id == CauseId.INVALID_TOKEN else cause_id
    if len(networks) >= 3 or len(browsers) >= 3:
        add(target, "likely", summary, pattern="many_devices")
    elif len(connects) >= 3:
        add(target, "likely", summary, pattern="frequent_reconnects")


def diagnose_connection(connection: InstagramConnection | None, now: datetime) -> Diagnosis:
    """Load the connection's recent history and diagnose it."""
    if connection is None or connection.state in (ConnectionState.HEALTHY, ConnectionState.NOT_CONNECTED):
        return Diagnosis([], None)
    # Routine successes ("checked", "refreshed") are most of the history and say nothing about a break.
    events = db.session.scalars(
        select(ConnectionEvent)
        .where(
            ConnectionEvent.connection_id == connection.id,
            ConnectionEvent.occurred_at >= now - timedelta(days=90),
            ConnectionEvent.kind.in_(DIAGNOSTIC_EVENT_KINDS),
        )
        .order_by(ConnectionEvent.occurred_at.desc())
        .limit(500)
    ).all()
    return diagnose(connection, list(events), now)


# Bump when the stored shape changes: a record of another format is worked out again when read.
RECORD_FORMAT = 1


def as_record(diagnosis: Diagnosis, connection: InstagramConnection) -> dict:
    """The diagnosis as JSON, with the state and cause it explains (a later change makes it stale)."""
    return {
        "format": RECORD_FORMAT,
        "state": str(connection.state),
        "cause": connection.cause,
        "incident_started_at": diagnosis.incident_started_at.isoformat() if diagnosis.incident_started_at else None,
        "meta_user_title": diagnosis.meta_user_title,
        "meta_user_message": diagnosis.meta_user_message,
        "causes": [
            {
                "cause": str(entry.cause.id),
                "confidence": entry.confidence,
                "evidence": entry.evidence,
                "pattern": entry.pattern.id if entry.pattern else None,
                "doubts": entry.doubts,
            }
            for entry in diagnosis.causes
        ],
    }


def from_record(record: dict | None, connection: InstagramConnection) -> Diagnosis | None:
    """The stored diagnosis, or None when there is none that explains the connection as it is now.

    Only the findings are stored (which causes, how sure, the evidence); the words of each cause and
    pattern come from the catalogue, so a better explanation reaches old incidents too.
    """
    if not isinstance(record, dict) or record.get("format") != RECORD_FORMAT:
        return None
    if record.get("state") != connection.state or record.get("cause") != connection.cause:
        return None
    try:
        causes = [
            RankedCause(
                words_for(entry["cause"], connection.login_path),
                entry["confidence"],
                list(entry["evidence"]),
                PATTERNS[entry["pattern"]] if entry.get("pattern") else None,
                list(entry.get("doubts") or []),
            )
            for entry in record["causes"]
        ]
        started = record.get("incident_started_at")
        return Diagnosis(
            causes,
            datetime.fromisoformat(started) if started else None,
            meta_user_title=record.get("meta_user_title"),
            meta_user_message=record.get("meta_user_message"),
        )
    except (KeyError, TypeError, ValueError):  # a cause or pattern no longer in the catalogue
        return None


def store_diagnosis(connection: InstagramConnection, now: datetime) -> Diagnosis:
    """Work out the connection's diagnosis and keep it on the row; call it where its trouble begins or changes.

    The worker's write-back and Meta's callbacks call it in the transaction that records the
    failure, so the page, the mails and support read one answer and never work it out per request.
    """
    diagnosis = diagnose_connection(connection, now)
    if diagnosis.causes:
        connection.diagnosis, connection.diagnosed_at = as_record(diagnosis, connection), now
    else:
        connection.diagnosis = connection.diagnosed_at = None
    webhooks.diagnosis_stored(connection)  # the state change's webhook carries it
    return diagnosis


def current_diagnosis(connection: InstagramConnection | None, now: datetime) -> Diagnosis:
    """The stored diagnosis of the connection's trouble; worked out here only when none fits the row.

    That happens for trouble recorded before diagnoses were stored, and it is logged: every writer
    that changes a connection's trouble is meant to store its diagnosis.
    """
    if connection is None or connection.state in (ConnectionState.HEALTHY, ConnectionState.NOT_CONNECTED):
        return Diagnosis([], None)
    if connection.cause is None:
        return Diagnosis([], None)
    stored = from_record(connection.diagnosis, connection)
    if stored is not None:
        return stored
    log.info(
        "connection %s: no stored diagnosis fits %s/%s; working it out",
        connection.id,
        connection.state,
        connection.cause,
    )
    return diagnose_connection(connection, now)


def incident_key(diagnosis: Diagnosis) -> str | None:
    return diagnosis.incident_started_at.isoformat(timespec="seconds") if diagnosis.incident_started_at else None
