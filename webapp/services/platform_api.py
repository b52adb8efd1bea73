"""What the Platform API reads: a shop's connection and its diagnosis, its usable token, pages of connections."""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select

from webapp.extensions import db
from webapp.models import ApiKey, ConnectionState, InstagramConnection, LoginPath, Shop
from webapp.services import audit
from webapp.services.connections.causes import CauseId, words_for
from webapp.services.connections.diagnosis import Diagnosis, RankedCause, current_diagnosis
from webapp.services.connections.state import read_token
from webapp.services.token_vault import TokenVault, TokenVaultError

# A token is handed out only in these states, and only before its own end date.
USABLE_STATES = (ConnectionState.HEALTHY, ConnectionState.EXPIRING, ConnectionState.DEGRADED)
CURSOR_PREFIX = "c1:"


class TokenUnavailable(Exception):
    """The shop's token must not be used now; `state` and `cause` say why."""

    def __init__(self, detail: str, *, state: str, cause: str | None):
        super().__init__(detail)
        self.detail, self.state, self.cause = detail, state, cause


class KeyRevoked(Exception):
    """The API key was revoked while the request was being answered."""


class InvalidCursor(ValueError):
    """A cursor this API never gave out."""


@dataclass(frozen=True)
class CurrentToken:
    shop_id: int
    access_token: str
    token_expires_at: datetime | None
    login_path: str
    token_fingerprint: str | None
    state: str

    def __repr__(self) -> str:  # never the token, in a traceback or a log line
        return f"<CurrentToken shop={self.shop_id} fingerprint={self.token_fingerprint}>"


def connection_of(shop: Shop) -> InstagramConnection | None:
    return db.session.scalar(select(InstagramConnection).where(InstagramConnection.shop_id == shop.id))


def describe(shop: Shop, connection: InstagramConnection | None, now: datetime) -> dict:
    """A connection as the API shows it (a shop that never connected reads as `not_connected`)."""
    if connection is None:
        connection = InstagramConnection(shop_id=shop.id, state=ConnectionState.NOT_CONNECTED)
    issued = connection.token_issued_at if connection.has_token else None
    expires = connection.token_expires_at if connection.has_token else None
    via_facebook = connection.login_path == LoginPath.FACEBOOK
    return {
        "shop_id": shop.id,
        "shop_name": shop.name,
        "state": str(connection.state),
        "cause": connection.cause,
        "state_changed_at": connection.state_changed_at,
        "login_path": str(connection.login_path or LoginPath.INSTAGRAM),
        "account": {
            "username": connection.username,
            "instagram_user_id": connection.instagram_user_id,
            "facebook_page_id": connection.facebook_page_id if via_facebook else None,
            "facebook_page_name": connection.facebook_page_name if via_facebook else None,
        },
        "token_issued_at": issued,
        "token_age_seconds": max(0, int((now - issued).total_seconds())) if issued else None,
        "token_expires_at": expires,
        "expiry_kind": None if expires is None else ("data_access_window" if via_facebook else "token"),
        "last_checked_at": connection.last_checked_at,
        "last_check_ok": connection.last_check_ok,
        "last_refreshed_at": connection.last_refreshed_at,
    }


def _ranked(entry: RankedCause) -> dict:
    return {
        "cause": str(entry.cause.id),
        "title": entry.cause.title,
        "confidence": entry.confidence,
        "evidence": list(entry.evidence) + list(entry.doubts),
        "checklist": entry.checklist,
    }


def describe_diagnosis(connection: InstagramConnection | None, now: datetime) -> dict | None:
    """The stored diagnosis of the connection's trouble (worked out only where none is stored), or None."""
    diagnosis: Diagnosis = current_diagnosis(connection, now)
    if connection is None or diagnosis.primary is None:
        return None
    primary = diagnosis.primary
    return {
        **_ranked(primary),
        "explanation": primary.cause.explanation,
        "incident_started_at": diagnosis.incident_started_at,
        "diagnosed_at": connection.diagnosed_at,
        "meta_user_title": diagnosis.meta_user_title,
        "meta_user_message": diagnosis.meta_user_message,
        "other_causes": [_ranked(entry) for entry in diagnosis.others],
    }


def read_current_token(shop: Shop, *, api_key: ApiKey, now: datetime, vault: TokenVault) -> CurrentToken:
    """The shop's token while it is usable; every call is audited (never the token, only its fingerprint).

    Raises TokenUnavailable otherwise: not connected, broken, or past its own end date; KeyRevoked when
    `api_key` was revoked since the request was authenticated.
    """
    connection = connection_of(shop)
    try:
        token = _usable_token(connection, now, vault)
    except TokenUnavailable as refusal:
        _audit(api_key, shop, now, "api.token_refused", f"{refusal.state}/{refusal.cause or '-'}")
        raise
    assert connection is not None  # _usable_token refuses a shop without one
    # The key was checked when the request came in; one revoked since gets nothing. On PostgreSQL the
    # row stays share-locked until the audit row commits: a revocation waits, so none can slip between.
    db.session.refresh(api_key, with_for_update={"read": True})
    if api_key.revoked_at is not None:
        raise KeyRevoked()
    _audit(api_key, shop, now, "api.token_read", f"fingerprint {connection.token_fingerprint}, {connection.state}")
    return CurrentToken(
        shop_id=shop.id,
        access_token=token,
        token_expires_at=connection.token_expires_at,
        login_path=str(connection.login_path),
        token_fingerprint=connection.token_fingerprint,
        state=str(connection.state),
    )


def _usable_token(connection: InstagramConnection | None, now: datetime, vault: TokenVault) -> str:
    if connection is None or connection.token_ciphertext is None:
        raise TokenUnavailable(
            "The shop has not connected Instagram (or disconnected it).",
            state=ConnectionState.NOT_CONNECTED,
            cause=None,
        )
    state, cause = str(connection.state), connection.cause
    if connection.state not in USABLE_STATES:
        why = f" ({words_for(cause, connection.login_path).title})" if cause else ""
        raise TokenUnavailable(
            f"Meta no longer accepts this shop's token{why}. Only the merchant can fix it, by reconnecting.",
            state=state,
            cause=cause,
        )
    if connection.token_expires_at is not None and connection.token_expires_at <= now:
        ended = CauseId.DATA_ACCESS_EXPIRED if connection.via_facebook else CauseId.TOKEN_EXPIRED
        raise TokenUnavailable(
            f"The token's end date ({connection.token_expires_at:%Y-%m-%d %H:%M} UTC) has passed.",
            state=state,
            cause=str(ended),
        )
    try:
        return read_token(connection, vault)
    except TokenVaultError:
        raise TokenUnavailable(
            "The stored token cannot be read with the configured keys; the operators have to fix this.",
            state=state,
            cause=str(CauseId.APP_MISCONFIGURED),
        ) from None


def _audit(api_key: ApiKey, shop: Shop, now: datetime, action: str, details: str) -> None:
    audit.record(
        action, now=now, actor=None, label=api_key.label, subject_shop_id=shop.id, details=details, commit=True
    )


def encode_cursor(last_id: int) -> str:
    return base64.urlsafe_b64encode(f"{CURSOR_PREFIX}{last_id}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> int:
    """The id a cursor continues after; InvalidCursor for anything this API did not give out."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise InvalidCursor() from None
    number = raw.removeprefix(CURSOR_PREFIX)
    if not raw.startswith(CURSOR_PREFIX) or not number.isascii() or not number.isdigit() or len(number) > 10:
        raise InvalidCursor()
    return int(number)


def page_of_connections(
    *, state: str | None, cause: str | None, cursor: str | None, limit: int, now: datetime
) -> tuple[list[dict], str | None]:
    """One page of connections in id order, filtered; the cursor for the next page, or None on the last."""
    after = decode_cursor(cursor) if cursor else 0
    query = (
        select(InstagramConnection, Shop)
        .join(Shop, Shop.id == InstagramConnection.shop_id)
        .where(InstagramConnection.id > after)
        .order_by(InstagramConnection.id)
        .limit(limit + 1)
    )
    if state:
        query = query.where(InstagramConnection.state == state)
    if cause:
        query = query.where(InstagramConnection.cause == cause)
    rows = db.session.execute(query).all()
    more = len(rows) > limit
    rows = rows[:limit]
    items = [describe(shop, connection, now) for connection, shop in rows]
    return items, encode_cursor(rows[-1][0].id) if more and rows else None
