"""The sandbox's rules: how Instagram answers each call, including every way a token dies.

Messages and shapes follow what Meta really sends (see shared/knowledge/meta-platform.md).
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from sqlalchemy import ColumnElement, select

from webapp.extensions import db
from webapp.models import ChecklistTick, ConnectionEvent, InstagramConnection
from webapp.sandbox.models import ALL_SCOPES, SandboxAccount, SandboxCode, SandboxToken, token_hash
from webapp.services.connections.causes import CauseId
from webapp.services.connections.diagnosis import store_diagnosis
from webapp.services.connections.state import fenced_write
from webapp.services.keepalive.leases import ACTIVE_STATES
from webapp.services.meta.client import LONG_LIVED_TOKEN_LIFETIME

SHORT_LIVED = timedelta(hours=1)
CODE_LIFETIME = timedelta(hours=1)
REFRESH_MIN_AGE = timedelta(hours=24)


@dataclass
class SandboxReply:
    """An HTTP answer in Meta's shape."""

    status: int
    body: dict
    headers: dict = field(default_factory=dict)


def graph_error(code: int, message: str, subcode: int | None = None, *, status: int = 400, **extra) -> SandboxReply:
    error = {"message": message, "type": extra.pop("error_type", "OAuthException"), "code": code}
    if subcode is not None:
        error["error_subcode"] = subcode
    error.update(extra)
    error["fbtrace_id"] = "Sbx" + secrets.token_urlsafe(8)
    return SandboxReply(status, {"error": error})


def oauth_error(message: str) -> SandboxReply:
    return SandboxReply(400, {"error_type": "OAuthException", "code": 400, "error_message": message})


def account_now(account: SandboxAccount, now: datetime) -> datetime:
    """The sandbox clock for one account: real time plus the days the tester moved it forward."""
    return now + timedelta(days=account.clock_offset_days)


def new_account(username: str, now: datetime) -> SandboxAccount:
    account = SandboxAccount(
        instagram_user_id=str(17841400000000000 + secrets.randbelow(10**9)),
        username=username,
        display_name=username.replace("_", " ").replace(".", " ").title(),
        granted_scopes=",".join(ALL_SCOPES[:1]),
        created_at=now,
    )
    db.session.add(account)
    db.session.flush()
    return account


def issue_code(account: SandboxAccount, redirect_uri: str, scopes: str, now: datetime) -> str:
    code = "AQ" + secrets.token_urlsafe(48)
    account.app_authorized = True
    account.granted_scopes = scopes
    account.removed_scopes = ""
    account.checkpointed = False
    account.data_access_expired = False
    db.session.add(SandboxCode(code=code, account=account, redirect_uri=redirect_uri, scopes=scopes, created_at=now))
    db.session.commit()
    return code


def _issue_token(account: SandboxAccount, kind: str, now: datetime, scopes: str) -> tuple[str, SandboxToken]:
    token = ("IGAA" if kind == "long" else "IGQV") + secrets.token_urlsafe(96)
    issued = account_now(account, now)
    row = SandboxToken(
        token_hash=token_hash(token),
        account=account,
        kind=kind,
        issued_at=issued,
        expires_at=issued + (LONG_LIVED_TOKEN_LIFETIME if kind == "long" else SHORT_LIVED),
        password_version=account.password_version,
        session_generation=account.session_generation,
        scopes=scopes,
    )
    db.session.add(row)
    return token, row


def exchange_code(form: dict, client_id: str, client_secret: str, now: datetime) -> SandboxReply:
    if form.get("client_id") != client_id or form.get("client_secret") != client_secret:
        return oauth_error("Invalid platform app")
    if form.get("grant_type") != "authorization_code":
        return oauth_error("Unsupported grant_type")
    code = db.session.get(SandboxCode, (form.get("code") or "").removesuffix("#_"))
    if code is None or code.used_at is not None or now - code.created_at > CODE_LIFETIME:
        return oauth_error("Matching code was not found or was already used")
    if form.get("redirect_uri") != code.redirect_uri:
        return oauth_error(
            "Error validating verification code. Please make sure your redirect_uri is identical to the one "
            "you used in the OAuth dialog request"
        )
    code.used_at = now
    token, _ = _issue_token(code.account, "short", now, code.scopes)
    db.session.commit()
    return SandboxReply(
        200,
        {"data": [{"access_token": token, "user_id": code.account.login_user_id, "permissions": code.scopes}]},
    )


def _find_token(token: str | None) -> SandboxToken | None:
    if not token:
        return None
    return db.session.get(SandboxToken, token_hash(token))


def check_token(token: str | None, now: datetime, *, needs_scope: str | None = "instagram_business_basic"):
    """Return (row, None) for a usable token, or (row, error reply) explaining why Meta would refuse it."""
    row = _find_token(token)
    if row is None:
        return None, graph_error(190, "Invalid OAuth access token - Cannot parse access token")
    account = row.account
    if account.outage:
        return row, graph_error(
            2, "An unexpected error has occurred. Please retry your request later.", status=500, is_transient=True
        )
    if account.rate_limited_calls > 0:
        account.rate_limited_calls -= 1
        db.session.commit()
        # One account's Business Use Case limit, as Instagram draws it: that account pauses, the app's
        # other shops go on (an app-wide limit would be code 4 with X-App-Usage near 100%).
        reply = graph_error(
            80002,
            "There have been too many calls to this Instagram account. Wait a bit and try again.",
            is_transient=True,
        )
        reply.headers["X-Business-Use-Case-Usage"] = json.dumps(
            {
                account.instagram_user_id: [
                    {
                        "type": "instagram",
                        "call_count": 100,
                        "total_cputime": 12,
                        "total_time": 40,
                        "estimated_time_to_regain_access": 20,
                    }
                ]
            }
        )
        return row, reply
    if not account.app_authorized:
        return row, graph_error(
            190, "Error validating access token: The user has not authorized application sandbox-app-id.", 458
        )
    if account.checkpointed:
        return row, graph_error(
            190,
            "Error validating access token: You cannot access the app till you log in to www.instagram.com "
            "and follow the instructions given.",
            459,
        )
    if row.password_version != account.password_version:
        return row, graph_error(
            190,
            "Error validating access token: The session has been invalidated because the user changed their "
            "password or Facebook has changed the session for security reasons.",
            460,
        )
    if row.session_generation != account.session_generation:
        return row, graph_error(
            190, "Error validating access token: The session is invalid because the user logged out.", 467
        )
    if account.data_access_expired:
        return row, graph_error(
            190, "The access token is invalid since the user hasn't engaged the app in longer than 90 days.", 493
        )
    current = account_now(account, now)
    if row.expires_at <= current:
        return row, graph_error(
            190,
            f"Error validating access token: Session has expired on {row.expires_at:%A, %d-%b-%y %H:%M:%S} UTC. "
            f"The current time is {current:%A, %d-%b-%y %H:%M:%S} UTC.",
            463,
        )
    if needs_scope and needs_scope not in account.scopes:
        return row, graph_error(10, "(#10) Application does not have permission for this action")
    return row, None


def exchange_for_long_lived(args: dict, client_secret: str, now: datetime) -> SandboxReply:
    if args.get("grant_type") != "ig_exchange_token":
        return graph_error(100, "Unsupported grant_type", error_type="IGApiException")
    if args.get("client_secret") != client_secret:
        return graph_error(101, "Error validating client secret.")
    row, error = check_token(args.get("access_token"), now)
    if error:
        return error
    if row.kind != "short":
        return graph_error(100, "Only short-lived tokens can be exchanged", error_type="IGApiException")
    token, long_row = _issue_token(row.account, "long", now, row.scopes)
    db.session.commit()
    return SandboxReply(
        200,
        {
            "access_token": token,
            "token_type": "bearer",
            "expires_in": int(LONG_LIVED_TOKEN_LIFETIME.total_seconds()),
        },
    )


def refresh(args: dict, now: datetime) -> SandboxReply:
    if args.get("grant_type") != "ig_refresh_token":
        return graph_error(100, "Unsupported grant_type", error_type="IGApiException")
    row, error = check_token(args.get("access_token"), now)
    if error:
        return error
    if row.kind != "long":
        return graph_error(190, "Invalid OAuth access token - Cannot parse access token")
    if account_now(row.account, now) - row.issued_at < REFRESH_MIN_AGE:
        # Meta documents the rule but not its error text; this is the sandbox's own wording.
        return graph_error(
            100, "(#100) The access token is not old enough to be refreshed (24 hours).", error_type="IGApiException"
        )
    token, _ = _issue_token(row.account, "long", now, row.scopes)
    row.superseded = True
    db.session.commit()
    return SandboxReply(
        200,
        {
            "access_token": token,
            "token_type": "bearer",
            "expires_in": int(LONG_LIVED_TOKEN_LIFETIME.total_seconds()),
        },
    )


# IG User fields the sandbox knows but does not fill in; any other field is refused as Graph does.
OTHER_USER_FIELDS = frozenset({"biography", "followers_count", "follows_count", "media_count", "website"})


def me(args: dict, now: datetime) -> SandboxReply:
    row, error = check_token(args.get("access_token"), now)
    if error:
        return error
    account = row.account
    fields = [f.strip() for f in (args.get("fields") or "id,username").split(",") if f.strip()]
    profile = {
        "id": account.scoped_id,
        "user_id": account.instagram_user_id,
        "username": account.username,
        "name": account.display_name,
        "account_type": account.account_type,
        "profile_picture_url": None,
    }
    unknown = [name for name in fields if name not in profile and name not in OTHER_USER_FIELDS]
    if unknown:
        return graph_error(
            100,
            f"(#100) Tried accessing nonexisting field ({unknown[0]}) on node type (User)",
            error_type="IGApiException",
        )
    body = {key: value for key, value in profile.items() if key in fields and value is not None}
    body.setdefault("id", account.scoped_id)  # Graph always answers with the node's id
    reply = SandboxReply(200, body)
    reply.headers["X-App-Usage"] = '{"call_count":2,"total_cputime":1,"total_time":3}'
    return reply


def accounts() -> list[SandboxAccount]:
    return list(db.session.scalars(select(SandboxAccount).order_by(SandboxAccount.username)))


# The buttons of the control panel: what each one does to the account, in the taxonomy's terms.
ACTIONS = {
    "change_password": ("Change password", CauseId.PASSWORD_CHANGED),
    "remove_app": ("Remove the app (sends a deauthorize callback)", CauseId.APP_REMOVED),
    "checkpoint": ("Put the account in a checkpoint", CauseId.ACCOUNT_CHECKPOINT),
    "log_out_everywhere": ("Log out everywhere", CauseId.SESSION_INVALIDATED),
    "remove_permission": ("Remove a permission", CauseId.PERMISSIONS_CHANGED),
    "expire_data_access": ("Data access expired (90 days unused)", CauseId.DATA_ACCESS_EXPIRED),
    "rate_limit": ("Rate-limit the next 5 calls", CauseId.RATE_LIMITED),
    "outage": ("Start or end an outage", CauseId.PROVIDER_ERROR),
    "age_token": ("Move the clock forward", CauseId.TOKEN_EXPIRED),
    "switch_to_personal": ("Switch to a personal account", CauseId.ACCOUNT_NOT_PROFESSIONAL),
    "reset": ("Clear every problem", None),
}


def apply_action(account: SandboxAccount, action: str, days: int = 0) -> str:
    """Change the account as the button says; return a sentence describing the result."""
    if action == "change_password":
        account.password_version += 1
        result = "Password changed: every token issued before now is invalid (190/460)."
    elif action == "remove_app":
        account.app_authorized = False
        result = "App removed from the account: tokens are invalid (190/458)."
    elif action == "checkpoint":
        account.checkpointed = True
        result = "Account checkpointed (190/459) until you clear it."
    elif action == "log_out_everywhere":
        account.session_generation += 1
        result = "Logged out everywhere: tokens are invalid (190/467)."
    elif action == "remove_permission":
        account.removed_scopes = "instagram_business_basic"
        result = "instagram_business_basic removed: calls fail with code 10."
    elif action == "expire_data_access":
        account.data_access_expired = True
        result = "Data access expired (190/493)."
    elif action == "rate_limit":
        account.rate_limited_calls = 5
        result = "The next 5 calls about this account answer code 80002 (its own rate limit; other shops go on)."
    elif action == "outage":
        account.outage = not account.outage
        result = "Outage started: calls answer HTTP 500, code 2." if account.outage else "Outage over."
    elif action == "age_token":
        account.clock_offset_days += days
        result = f"Clock moved forward {days} day(s); now {account.clock_offset_days} day(s) ahead."
    elif action == "switch_to_personal":
        account.account_type = "PERSONAL"
        result = "Switched to a personal account: /me answers account_type PERSONAL."
    elif action == "reset":
        account.account_type = "BUSINESS"
        account.checkpointed = account.data_access_expired = account.outage = False
        account.removed_scopes = ""
        account.rate_limited_calls = 0
        account.clock_offset_days = 0
        result = "Every problem cleared (password and log-outs stay: reconnect for a fresh token)."
    else:
        raise ValueError(f"unknown sandbox action {action!r}")
    db.session.commit()
    return result


# A linked connection's own times that move with the sandbox clock. Not moved: the schedule (set
# below), a worker's lease (it runs on the real clock), and the notice bookkeeping
# (incident_started_at, resolved_incident_at), whose times key each mail so that it goes once.
SHIFTED_CONNECTION_TIMES = (
    "created_at",
    "connected_at",
    "state_changed_at",
    "token_issued_at",
    "token_expires_at",
    "last_refreshed_at",
    "last_refresh_attempt_at",
    "last_checked_at",
    "failing_since",
    "refresh_due_at",
)


@fenced_write
def nudge_linked_connections(account: SandboxAccount, now: datetime, shift_days: int = 0) -> int:
    """Make the dashboard notice a sandbox change at its next worker cycle (sandbox only).

    Real Meta tells nobody when it revokes a token; the dashboard finds out at its next health check,
    hours later. Here the check is made due now. Moving the clock moves the dashboard's past back by
    the same number of days (the row's times, its events, the checklist ticks of its incidents), so
    both sides agree on the token's age and the history stays in the order it happened. Only the
    connections the keep-alive looks after move: a token Instagram already refused is not aged by a clock.
    """
    return nudge_matching(InstagramConnection.instagram_user_id == account.instagram_user_id, now, shift_days)


def nudge_matching(linked_by: ColumnElement[bool], now: datetime, shift_days: int = 0) -> int:
    """Make the connections `linked_by` selects due for a check now (the sandbox's Instagram and Facebook sides).

    The caller holds the fence (`fenced_write`).
    """
    linked = db.session.scalars(
        select(InstagramConnection).where(
            linked_by,
            InstagramConnection.token_ciphertext.is_not(None),
            InstagramConnection.state.in_(ACTIVE_STATES),
        )
    ).all()
    shift = timedelta(days=shift_days)
    for connection in linked:
        if shift:
            _shift_history(connection, shift)
            if connection.diagnosis:
                store_diagnosis(connection, now)  # its evidence quotes the times that just moved
        connection.check_due_at = now
        connection.retry_at = None
        connection.paused_until = None
        connection.recompute_due_at()
    db.session.commit()
    return len(linked)


def _shift_history(connection: InstagramConnection, shift: timedelta) -> None:
    """Move everything the connection remembers `shift` into the past."""
    for name in SHIFTED_CONNECTION_TIMES:
        value = getattr(connection, name)
        if value is not None:
            setattr(connection, name, value - shift)
    if connection.last_failure_on:
        connection.last_failure_on = (date.fromisoformat(connection.last_failure_on) - shift).isoformat()
    for event in db.session.scalars(select(ConnectionEvent).where(ConnectionEvent.connection_id == connection.id)):
        event.occurred_at -= shift
    # A tick belongs to the incident that began at the time in its key; the key moves with that time.
    for tick in db.session.scalars(select(ChecklistTick).where(ChecklistTick.connection_id == connection.id)):
        tick.ticked_at -= shift
        tick.incident_key = (datetime.fromisoformat(tick.incident_key) - shift).isoformat(timespec="seconds")
