"""Connect, reconnect, switch and disconnect Instagram; apply Meta's deauthorize and deletion requests."""

from __future__ import annotations

import functools
import json
import logging
import random
import secrets
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import ParamSpec, TypeVar, cast

from sqlalchemy import CursorResult, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm.exc import StaleDataError

from webapp.extensions import db
from webapp.models import ConnectionEvent, InstagramConnection, MetaCallback, PendingConnection, Shop, User
from webapp.services.fingerprint import ip_prefix, user_agent_family
from webapp.services.instagram_client import InstagramClient, Profile, TokenGrant
from webapp.services.schedule import Policy, schedule_after_success
from webapp.services.token_vault import TokenVault, TokenVaultError, fingerprint

log = logging.getLogger(__name__)

LONG_LIVED_DEFAULT = timedelta(days=60)
RECONNECTED_AFTER = {
    "needs_reconnect": " after Instagram had ended the connection",
    "degraded": " while Instagram was having trouble",
    "expiring": " shortly before the old connection would have expired",
}
PENDING_SWITCH_LIFETIME = timedelta(minutes=15)


@dataclass(frozen=True)
class Actor:
    kind: str  # merchant | system | support | meta
    id: int | None = None

    @classmethod
    def for_user(cls, user: User) -> Actor:
        return cls("support" if user.is_staff else "merchant", user.id)


SYSTEM = Actor("system")
META = Actor("meta")


@dataclass(frozen=True)
class ClientFingerprint:
    """Coarse: the /24 or /48 network and 'Browser on OS', never the full address."""

    ip_prefix: str
    user_agent_family: str

    @classmethod
    def from_request(cls, remote_addr: str | None, user_agent: str | None) -> ClientFingerprint:
        return cls(ip_prefix(remote_addr), user_agent_family(user_agent))


class AccountSwitchRequired(Exception):
    """The merchant authorised a different Instagram account; they must confirm the switch."""

    def __init__(self, pending: PendingConnection, current_username: str | None):
        super().__init__("a different Instagram account was authorised")
        self.pending = pending
        self.current_username = current_username


class PendingSwitchExpired(Exception):
    """The switch confirmation is gone or too old; the merchant must connect again."""


class ConnectionChanged(Exception):
    """Another writer kept changing this connection while we tried to; nothing was written."""


P = ParamSpec("P")
R = TypeVar("R")
FENCED_WRITE_ATTEMPTS = 3


def fenced_write(write: Callable[P, R]) -> Callable[P, R]:
    """Run a writer of connections as one transaction; start it again on fresh rows when it lost a race.

    Every update of a connection is checked against the version it was read at and moves it
    (`version_id_col`), so a write based on an older read fails with StaleDataError instead of
    undoing someone else's. The writer then runs again from a fresh read, and its own write lands.
    """

    @functools.wraps(write)
    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        for attempt in range(1, FENCED_WRITE_ATTEMPTS + 1):
            try:
                return write(*args, **kwargs)
            except StaleDataError:
                db.session.rollback()
                log.info("%s: a connection changed under us (attempt %d); reading it again", write.__name__, attempt)
        raise ConnectionChanged(f"{write.__name__} kept losing races for the same connection")

    return run


def connection_for(shop: Shop) -> InstagramConnection:
    """Return the shop's connection row, creating a `not_connected` one the first time."""
    connection = db.session.scalar(select(InstagramConnection).where(InstagramConnection.shop_id == shop.id))
    if connection is None:
        connection = InstagramConnection(shop=shop, state="not_connected")
        db.session.add(connection)
        db.session.flush()
    return connection


def record_event(connection: InstagramConnection, kind: str, now: datetime, actor: Actor, **fields) -> ConnectionEvent:
    if connection.id is None:
        db.session.flush()
    event = ConnectionEvent(
        connection_id=connection.id,
        kind=kind,
        occurred_at=now,
        actor_kind=actor.kind,
        actor_id=actor.id,
        state_after=connection.state,
        **fields,
    )
    db.session.add(event)
    return event


def set_state(connection: InstagramConnection, state: str, now: datetime, cause: str | None = None) -> None:
    """Move the connection to `state`, keeping track of incidents (stretches of needs_reconnect)."""
    if connection.state != state:
        connection.state_changed_at = now
    if state == "needs_reconnect" and connection.incident_started_at is None:
        connection.incident_started_at = now
    elif state == "healthy" and connection.incident_started_at is not None:
        connection.resolved_incident_at = connection.incident_started_at  # "restored" mail is due
        connection.incident_started_at = None
    elif state == "not_connected":
        connection.incident_started_at = connection.resolved_incident_at = None
    connection.state = state
    connection.cause = cause


def read_token(connection: InstagramConnection, vault: TokenVault) -> str:
    """Decrypt the connection's token; raise TokenVaultError when it is missing or unreadable."""
    if connection.token_ciphertext is None:
        raise TokenVaultError("this connection has no token")
    return vault.decrypt(connection.token_ciphertext)


def store_token(
    connection: InstagramConnection, token: str, vault: TokenVault, issued_at: datetime, expires_at: datetime
) -> None:
    connection.token_ciphertext = vault.encrypt(token)
    connection.token_fingerprint = fingerprint(token)
    connection.token_issued_at = issued_at
    connection.token_expires_at = expires_at


def forget_token(connection: InstagramConnection) -> None:
    """Delete the token and stop every scheduled call that would have used it.

    A worker still holding a lease on the row loses it: this write moves the version its write-back
    is fenced on, so nothing it brings back can restore the token (promise 33).
    """
    connection.token_ciphertext = None
    connection.token_fingerprint = None
    connection.lease_owner = connection.lease_expires_at = None
    connection.schedule()


def _update_profile(connection: InstagramConnection, profile: Profile, permissions: tuple[str, ...]) -> None:
    """Copy what Meta sent; an empty value never overwrites a stored one (promise 22)."""
    connection.instagram_user_id = profile.user_id
    for attribute in ("username", "profile_picture_url", "account_type"):
        value = getattr(profile, attribute)
        if value:
            setattr(connection, attribute, value)
    if profile.name:
        connection.display_name = profile.name
    if permissions:
        connection.granted_permissions = ",".join(permissions)


def complete_connect(
    *,
    shop: Shop,
    user: User,
    short_grant: TokenGrant,
    client: InstagramClient,
    vault: TokenVault,
    now: datetime,
    client_fingerprint: ClientFingerprint,
    policy: Policy | None = None,
) -> InstagramConnection:
    """Finish the login: long-lived token, profile, then store; a different account must be confirmed.

    Raises AccountSwitchRequired (with the new account parked, encrypted) when the shop is still linked
    to another Instagram account, and MetaApiError when Meta refuses a step.
    """
    long_grant = client.exchange_for_long_lived(short_grant.access_token)
    profile = client.me(long_grant.access_token)
    expires_at = long_grant.expires_at(now) or now + LONG_LIVED_DEFAULT
    return _store_connect(shop, user, short_grant, long_grant, profile, expires_at, vault, now, client_fingerprint)


@fenced_write
def _store_connect(
    shop: Shop,
    user: User,
    short_grant: TokenGrant,
    long_grant: TokenGrant,
    profile: Profile,
    expires_at: datetime,
    vault: TokenVault,
    now: datetime,
    client_fingerprint: ClientFingerprint,
) -> InstagramConnection:
    """Store what Meta granted; park it instead when the shop is linked to another account."""
    connection = connection_for(shop)
    linked_elsewhere = connection.instagram_user_id and connection.instagram_user_id != profile.user_id
    if linked_elsewhere and connection.state != "not_connected":
        db.session.execute(db.delete(PendingConnection).where(PendingConnection.shop_id == shop.id))
        pending = PendingConnection(
            shop_id=shop.id,
            user_id=user.id,
            instagram_user_id=profile.user_id,
            username=profile.username,
            profile_json=json.dumps({**asdict(profile), "permissions": list(short_grant.permissions)}),
            token_ciphertext=vault.encrypt(long_grant.access_token),
            token_expires_at=expires_at,
            created_at=now,
            expires_at=now + PENDING_SWITCH_LIFETIME,
        )
        db.session.add(pending)
        db.session.commit()
        raise AccountSwitchRequired(pending, connection.username)
    _apply_new_token(
        connection,
        profile,
        short_grant.permissions,
        long_grant.access_token,
        expires_at,
        user,
        now,
        client_fingerprint,
        vault,
    )
    db.session.commit()
    return connection


def _apply_new_token(
    connection: InstagramConnection,
    profile: Profile,
    permissions: tuple[str, ...],
    token: str,
    expires_at: datetime,
    user: User,
    now: datetime,
    client_fingerprint: ClientFingerprint,
    vault: TokenVault,
    switched_from: str | None = None,
    policy: Policy | None = None,
) -> None:
    if switched_from:
        kind = "switched_account"
    elif connection.connected_at is not None and connection.instagram_user_id == profile.user_id:
        kind = "reconnected"
    else:
        kind = "connected"
    previous_state = connection.state
    _update_profile(connection, profile, permissions)
    store_token(connection, token, vault, issued_at=now, expires_at=expires_at)
    # A refresh still in flight for the old token loses its lease with this write (promise 33).
    connection.lease_owner = connection.lease_expires_at = None
    connection.connected_at = now
    connection.connected_by_id = user.id
    connection.last_checked_at = now
    connection.last_error_code = connection.last_error_subcode = None
    connection.last_error_message = None
    set_state(connection, "healthy", now)
    # A fresh token starts a fresh timetable; earlier trouble, pauses and leases no longer apply.
    connection.consecutive_failures = connection.failure_days = connection.refresh_failures = 0
    connection.failing_since = connection.last_failure_on = connection.last_refresh_error = None
    connection.paused_until = None
    connection.last_check_ok = True
    schedule_after_success(connection, now, policy or Policy(), random.Random())
    username = f"@{connection.username}" if connection.username else "the Instagram account"
    messages = {
        "connected": f"Connected {username}.",
        "reconnected": f"Reconnected {username}{RECONNECTED_AFTER.get(previous_state, '')}.",
        "switched_account": f"Switched from @{switched_from} to {username}.",
    }
    record_event(
        connection,
        kind,
        now,
        Actor.for_user(user),
        message=messages[kind],
        instagram_user_id=profile.user_id,
        ip_prefix=client_fingerprint.ip_prefix,
        user_agent_family=client_fingerprint.user_agent_family,
    )


def live_pending_switch(shop: Shop, now: datetime) -> PendingConnection | None:
    pending = db.session.scalar(
        select(PendingConnection).where(PendingConnection.shop_id == shop.id).order_by(PendingConnection.id.desc())
    )
    if pending is None or pending.expires_at < now:
        return None
    return pending


@fenced_write
def confirm_switch(
    *,
    shop: Shop,
    user: User,
    vault: TokenVault,
    now: datetime,
    client_fingerprint: ClientFingerprint,
    policy: Policy | None = None,
) -> InstagramConnection:
    """Replace the shop's account with the parked one the merchant just authorised."""
    pending = live_pending_switch(shop, now)
    if pending is None:
        raise PendingSwitchExpired()
    connection = connection_for(shop)
    details = json.loads(pending.profile_json)
    permissions = tuple(details.pop("permissions", ()))
    profile = Profile(**details)
    old_username = connection.username or "the previous account"
    token = vault.decrypt(pending.token_ciphertext)
    # A new account's profile replaces the old one entirely, not field by field.
    connection.username = connection.display_name = connection.profile_picture_url = connection.account_type = None
    connection.granted_permissions = ""
    expires_at = pending.token_expires_at or now + LONG_LIVED_DEFAULT
    _apply_new_token(
        connection,
        profile,
        permissions,
        token,
        expires_at,
        user,
        now,
        client_fingerprint,
        vault,
        switched_from=old_username,
    )
    db.session.delete(pending)
    db.session.commit()
    return connection


def cancel_switch(shop: Shop) -> None:
    """Discard the parked account (its token with it); the current connection stays as it was."""
    db.session.execute(db.delete(PendingConnection).where(PendingConnection.shop_id == shop.id))
    db.session.commit()


@fenced_write
def disconnect(connection: InstagramConnection, user: User, now: datetime) -> None:
    """Delete the token and mark the shop not connected; the history stays."""
    from webapp.services import audit

    forget_token(connection)
    set_state(connection, "not_connected", now)
    record_event(connection, "disconnected", now, Actor.for_user(user), message="Disconnected by the shop.")
    audit.record(
        "instagram.disconnected",
        now=now,
        actor=user,
        subject_user=user,
        subject_shop_id=connection.shop_id,
        commit=False,
    )
    db.session.commit()


def _claim_callback(kind: str, instagram_user_id: str, issued_at: int, now: datetime) -> MetaCallback | None:
    """Record a Meta callback once; return None when the very same request was already handled."""
    existing = db.session.scalar(
        select(MetaCallback).where(
            MetaCallback.kind == kind,
            MetaCallback.instagram_user_id == instagram_user_id,
            MetaCallback.issued_at == issued_at,
        )
    )
    if existing is not None:
        return None
    callback = MetaCallback(kind=kind, instagram_user_id=instagram_user_id, issued_at=issued_at, received_at=now)
    if kind == "data_deletion":
        callback.confirmation_code = secrets.token_hex(8).upper()
    db.session.add(callback)
    try:
        db.session.flush()
    except IntegrityError:
        db.session.rollback()  # a parallel delivery of the same request won the race
        return None
    return callback


@fenced_write
def apply_deauthorize(instagram_user_id: str, issued_at: int, now: datetime) -> int:
    """Meta says the user removed our app: the token is dead. Return how many connections changed."""
    callback = _claim_callback("deauthorize", instagram_user_id, issued_at, now)
    if callback is None:
        return 0
    issued = issued_at or int(now.timestamp())
    changed = 0
    connections = db.session.scalars(
        select(InstagramConnection).where(InstagramConnection.instagram_user_id == instagram_user_id)
    ).all()
    for connection in connections:
        # issued_at has whole seconds; a deauthorize from the same second as the connect still counts.
        if connection.connected_at and issued < int(connection.connected_at.timestamp()):
            # Older than the latest connect: a replay or a late delivery cannot undo a reconnect.
            continue
        if connection.state == "not_connected" and not connection.has_token:
            continue
        forget_token(connection)
        set_state(connection, "needs_reconnect", now, cause="app_removed")
        record_event(
            connection,
            "deauthorized",
            now,
            META,
            cause="app_removed",
            instagram_user_id=instagram_user_id,
            message="Meta reported that this app was removed from the Instagram account's authorised apps.",
        )
        changed += 1
    callback.status = "completed"
    callback.completed_at = now
    callback.connections_affected = changed
    db.session.commit()
    log.info("deauthorize callback for an Instagram user: %d connection(s) changed", changed)
    return changed


@fenced_write
def request_data_deletion(instagram_user_id: str, issued_at: int, now: datetime) -> MetaCallback:
    """Delete everything we hold from this Instagram user; the same request again returns the same code."""
    callback = _claim_callback("data_deletion", instagram_user_id, issued_at, now)
    if callback is None:  # the same request came before: its row holds the code we answered
        return db.session.execute(
            select(MetaCallback).where(
                MetaCallback.kind == "data_deletion",
                MetaCallback.instagram_user_id == instagram_user_id,
                MetaCallback.issued_at == issued_at,
            )
        ).scalar_one()
    connections = db.session.scalars(
        select(InstagramConnection).where(InstagramConnection.instagram_user_id == instagram_user_id)
    ).all()
    for connection in connections:
        forget_token(connection)
        connection.instagram_user_id = connection.username = connection.display_name = None
        connection.profile_picture_url = connection.account_type = None
        connection.granted_permissions = ""
        set_state(connection, "not_connected", now)
        db.session.execute(
            db.update(ConnectionEvent)
            .where(ConnectionEvent.connection_id == connection.id)
            .values(instagram_user_id=None, message="(Instagram details deleted at the account owner's request)")
        )
        record_event(
            connection,
            "instagram_data_deleted",
            now,
            META,
            message="Instagram data deleted at the account owner's request "
            f"(confirmation {callback.confirmation_code}).",
        )
    db.session.execute(db.delete(PendingConnection).where(PendingConnection.instagram_user_id == instagram_user_id))
    callback.status = "completed"
    callback.completed_at = now
    callback.connections_affected = len(connections)
    db.session.commit()
    return callback


@dataclass
class RotationReport:
    rotated: int
    failed: list[str]
    # Rows other writers kept changing while we re-encrypted them: still under an older key.
    changed_meanwhile: int = 0


ROTATION_BATCH = 200


def rotate_token_keys(vault: TokenVault, batch_size: int = ROTATION_BATCH) -> RotationReport:
    """Re-encrypt every stored token under the newest key, in short batches, never over a newer write.

    Each row is replaced only if its ciphertext is still the one that was read (compare-and-set),
    so a disconnect, a data deletion or a refresh made meanwhile stands. A connection's version
    moves too, so a refresh in flight cannot write back over the rotation either (promise 33).
    Unreadable rows are reported, not fatal.
    """
    report = RotationReport(0, [])
    for model, label in ((InstagramConnection, "connection"), (PendingConnection, "pending switch")):
        last_id = 0
        while True:
            rows = db.session.execute(
                select(model.id, model.shop_id, model.token_ciphertext)
                .where(model.token_ciphertext.is_not(None), model.id > last_id)
                .order_by(model.id)
                .limit(batch_size)
            ).all()
            db.session.rollback()  # no transaction open while decrypting and encrypting
            if not rows:
                break
            for row in rows:
                _rotate_row(model, label, row, vault, report)
            db.session.commit()
            last_id = rows[-1].id
    return report


def _rotate_row(model, label: str, row, vault: TokenVault, report: RotationReport) -> None:
    ciphertext = row.token_ciphertext
    for _ in range(FENCED_WRITE_ATTEMPTS):
        try:
            new_ciphertext = vault.rotate(ciphertext)
        except TokenVaultError:
            report.failed.append(f"{label} {row.id} (shop {row.shop_id})")
            return
        values: dict[str, object] = {"token_ciphertext": new_ciphertext}
        if model is InstagramConnection:
            values["version"] = InstagramConnection.version + 1
        # Session.execute types every result as a plain Result; an UPDATE's is a CursorResult.
        result = cast(
            CursorResult,
            db.session.execute(
                update(model)
                .where(model.id == row.id, model.token_ciphertext == ciphertext)
                .values(**values)
                .execution_options(synchronize_session=False)
            ),
        )
        if result.rowcount == 1:
            report.rotated += 1
            return
        # Someone wrote the row since we read it: rotate what is there now, if anything.
        ciphertext = db.session.scalar(select(model.token_ciphertext).where(model.id == row.id))
        if ciphertext is None:
            return  # deleted meanwhile: nothing left to re-encrypt
    report.changed_meanwhile += 1


def toggle_checklist_item(connection: InstagramConnection, incident: str, item: int, user: User, now: datetime) -> bool:
    """Tick the step if it was not ticked, untick it otherwise; return whether it is now ticked."""
    from webapp.models import ChecklistTick

    existing = db.session.scalar(
        select(ChecklistTick).where(
            ChecklistTick.connection_id == connection.id,
            ChecklistTick.incident_key == incident,
            ChecklistTick.item == item,
        )
    )
    if existing is not None:
        db.session.delete(existing)
        db.session.commit()
        return False
    db.session.add(
        ChecklistTick(connection_id=connection.id, incident_key=incident, item=item, user_id=user.id, ticked_at=now)
    )
    try:
        db.session.commit()
    except IntegrityError:
        db.session.rollback()  # a double click: already ticked
    return True


def connection_ids_for(instagram_user_id: str) -> list[int]:
    return list(
        db.session.scalars(
            select(InstagramConnection.id).where(InstagramConnection.instagram_user_id == instagram_user_id)
        )
    )
