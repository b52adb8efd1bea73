"""Connect, reconnect, switch accounts and disconnect: the merchant's own changes to the link.

Instagram Login's side lives here; Facebook Login's (the user token, its Pages, the picked Page) in
facebook_linking.py, which stores through the same `apply_new_token`: either path's login replaces
everything the other path left on the connection.
"""

from __future__ import annotations

import json
import random
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import select

from webapp.extensions import db
from webapp.models import ConnectionState, InstagramConnection, LoginPath, PendingConnection, Shop, User
from webapp.services import audit, webhooks
from webapp.services.connections.page_roles import tasks_column
from webapp.services.connections.state import (
    Actor,
    connection_for,
    end_read_transaction,
    fenced_write,
    forget_token,
    record_event,
    set_state,
    store_token,
)
from webapp.services.fingerprint import ClientFingerprint
from webapp.services.keepalive.policy import Policy, schedule_after_success
from webapp.services.meta.client import LONG_LIVED_TOKEN_LIFETIME, InstagramClient, Profile, TokenGrant
from webapp.services.token_vault import TokenVault

RECONNECTED_AFTER: dict[str, str] = {
    ConnectionState.NEEDS_RECONNECT: " after Instagram had ended the connection",
    ConnectionState.DEGRADED: " while Instagram was having trouble",
    ConnectionState.EXPIRING: " shortly before the old connection would have expired",
}


PENDING_SWITCH_LIFETIME = timedelta(minutes=15)


@dataclass(frozen=True)
class Linked:
    """What a finished login or switch did: the connection, and the event it recorded."""

    connection: InstagramConnection
    kind: str  # connected | reconnected | switched_account
    # The state before: a reconnect of a connection that still worked restored nothing.
    previous_state: str = ConnectionState.NOT_CONNECTED

    @property
    def restored(self) -> bool:
        return self.kind == "reconnected" and self.previous_state != ConnectionState.HEALTHY


@dataclass(frozen=True)
class FacebookPageLink:
    """Facebook Login's side of a new connection: who logged in, the Page they picked, their user token."""

    facebook_user_id: str | None
    page_id: str
    page_name: str | None
    page_tasks: tuple[str, ...]
    user_token: str = field(repr=False)
    user_token_expires_at: datetime | None = None

    @property
    def page_words(self) -> str:
        return f"the Facebook Page \u201c{self.page_name or self.page_id}\u201d"


class AccountSwitchRequired(Exception):
    """The merchant authorised a different Instagram account; they must confirm the switch."""

    def __init__(self, pending: PendingConnection, current_username: str | None):
        super().__init__("a different Instagram account was authorised")
        self.pending = pending
        self.current_username = current_username


class PendingSwitchExpired(Exception):
    """The switch confirmation is gone or too old; the merchant must connect again."""


def _parked_profile(profile: Profile, permissions: tuple[str, ...]) -> str:
    """The profile as a parked switch keeps it: Meta's usage headers of that moment are not kept."""
    details = asdict(profile)
    del details["usage"]
    return json.dumps({**details, "permissions": list(permissions)})


def same_account(connection: InstagramConnection, profile: Profile, login_user_id: str | None) -> bool | None:
    """Whether a login is the account the shop is linked to; None when no id is known on both sides.

    Meta gives one account several ids (see InstagramConnection), so ids are compared kind with kind,
    never across kinds. The account's own id decides when both sides have it: an app-scoped id would
    change with the app, the account's own would not.
    """
    pairs = (
        (connection.instagram_user_id, profile.user_id),
        (connection.instagram_scoped_id, profile.scoped_id),
        (connection.login_user_id, login_user_id),
    )
    for stored, new in pairs:
        if stored and new:
            return stored == new
    return None


def _update_profile(
    connection: InstagramConnection, profile: Profile, permissions: tuple[str, ...], login_user_id: str | None
) -> None:
    """Copy what Meta sent; an empty value never overwrites a stored one (promise 22)."""
    connection.instagram_user_id = profile.user_id
    if profile.scoped_id:
        connection.instagram_scoped_id = profile.scoped_id
    if login_user_id:
        connection.login_user_id = login_user_id
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
    policy: Policy,
) -> Linked:
    """Finish the login: long-lived token, profile, then store; a different account must be confirmed.

    Raises AccountSwitchRequired (with the new account parked, encrypted) when the shop is still linked
    to another Instagram account, AccountNotProfessional (nothing stored) when /me says the account is a
    personal one, and MetaApiError when Meta refuses a step.
    """
    end_read_transaction()  # the long-lived exchange and /me follow
    long_grant = client.exchange_for_long_lived(short_grant.access_token)
    profile = client.me(long_grant.access_token)
    expires_at = long_grant.expires_at(now) or now + LONG_LIVED_TOKEN_LIFETIME
    return _store_connect(
        shop, user, short_grant, long_grant, profile, expires_at, vault, now, client_fingerprint, policy
    )


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
    policy: Policy,
) -> Linked:
    """Store what Meta granted; park it instead when the shop is linked to another account."""
    connection = connection_for(shop)
    linked_elsewhere = same_account(connection, profile, short_grant.user_id) is False
    if linked_elsewhere and connection.state != ConnectionState.NOT_CONNECTED:
        db.session.execute(db.delete(PendingConnection).where(PendingConnection.shop_id == shop.id))
        pending = PendingConnection(
            shop_id=shop.id,
            user_id=user.id,
            instagram_user_id=profile.user_id,
            instagram_scoped_id=profile.scoped_id,
            login_user_id=short_grant.user_id,
            username=profile.username,
            profile_json=_parked_profile(profile, short_grant.permissions),
            token_ciphertext=vault.encrypt(long_grant.access_token),
            token_expires_at=expires_at,
            created_at=now,
            expires_at=now + PENDING_SWITCH_LIFETIME,
        )
        db.session.add(pending)
        db.session.commit()
        raise AccountSwitchRequired(pending, connection.username)
    previous_state = connection.state
    kind = apply_new_token(
        connection,
        profile,
        short_grant.user_id,
        short_grant.permissions,
        long_grant.access_token,
        expires_at,
        user,
        now,
        client_fingerprint,
        vault,
        policy=policy,
    )
    db.session.commit()
    return Linked(connection, kind, previous_state)


def apply_new_token(
    connection: InstagramConnection,
    profile: Profile,
    login_user_id: str | None,
    permissions: tuple[str, ...],
    token: str,
    expires_at: datetime,
    user: User,
    now: datetime,
    client_fingerprint: ClientFingerprint,
    vault: TokenVault,
    policy: Policy,
    switched_from: str | None = None,
    facebook: FacebookPageLink | None = None,
) -> str:
    """Store the new token and profile as a fresh, healthy start; return the kind of event recorded.

    `facebook` is there for a Facebook Login (the token is then the Page's); without it the login
    was Instagram Login's, and whatever an earlier Facebook Login left goes.
    """
    if switched_from:
        kind = "switched_account"
    elif connection.connected_at is not None and same_account(connection, profile, login_user_id):
        kind = "reconnected"
    else:
        kind = "connected"
    previous_state = connection.state
    previous_login_path, previous_expires_at = connection.login_path, connection.token_expires_at
    _set_login_path(connection, facebook, vault)
    _update_profile(connection, profile, permissions, login_user_id)
    store_token(connection, token, vault, issued_at=now, expires_at=expires_at)
    # A refresh still in flight for the old token loses its lease with this write (promise 33).
    connection.lease_owner = connection.lease_expires_at = None
    connection.connected_at = now
    connection.connected_by_id = user.id
    connection.last_checked_at = now
    connection.last_error_code = connection.last_error_subcode = None
    connection.last_error_message = None
    set_state(connection, ConnectionState.HEALTHY, now)
    # A fresh token starts a fresh timetable; earlier trouble, pauses and leases no longer apply.
    connection.consecutive_failures = connection.failure_days = connection.refresh_failures = 0
    connection.failing_since = connection.last_failure_on = connection.last_refresh_error = None
    connection.paused_until = None
    connection.last_check_ok = True
    schedule_after_success(connection, now, policy, random.Random())
    username = f"@{connection.username}" if connection.username else "the Instagram account"
    via = f" through {facebook.page_words}" if facebook else ""
    messages = {
        "connected": f"Connected {username}{via}.",
        "reconnected": f"Reconnected {username}{via}{RECONNECTED_AFTER.get(previous_state, '')}.",
        "switched_account": f"Switched from @{switched_from} to {username}{via}.",
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
    webhooks.connection_linked(
        connection,
        kind,
        previous_state=previous_state,
        previous_login_path=previous_login_path,
        previous_expires_at=previous_expires_at,
        now=now,
    )
    return kind


def _set_login_path(connection: InstagramConnection, facebook: FacebookPageLink | None, vault: TokenVault) -> None:
    """Record which login made the connection; nothing of the other path's stays behind."""
    if facebook is None:
        connection.login_path = LoginPath.INSTAGRAM
        connection.facebook_user_id = connection.facebook_page_id = connection.facebook_page_name = None
        connection.facebook_page_tasks = ""
        connection.user_token_ciphertext = connection.user_token_expires_at = None
        return
    connection.login_path = LoginPath.FACEBOOK
    connection.facebook_user_id = facebook.facebook_user_id
    connection.facebook_page_id = facebook.page_id
    connection.facebook_page_name = facebook.page_name
    connection.facebook_page_tasks = tasks_column(facebook.page_tasks)
    connection.user_token_ciphertext = vault.encrypt(facebook.user_token)
    connection.user_token_expires_at = facebook.user_token_expires_at
    # Instagram Login's own ids are the Instagram app's numbering: the Instagram app's callbacks no
    # longer reach this connection, so kept here they could never be deleted on request.
    connection.instagram_scoped_id = connection.login_user_id = None


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
    policy: Policy,
) -> Linked:
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
    # A new account's profile and ids replace the old ones entirely, not field by field.
    connection.username = connection.display_name = connection.profile_picture_url = connection.account_type = None
    connection.instagram_scoped_id = connection.login_user_id = None
    connection.granted_permissions = ""
    expires_at = pending.token_expires_at or now + LONG_LIVED_TOKEN_LIFETIME
    previous_state = connection.state
    kind = apply_new_token(
        connection,
        profile,
        pending.login_user_id,
        permissions,
        token,
        expires_at,
        user,
        now,
        client_fingerprint,
        vault,
        switched_from=old_username,
        policy=policy,
    )
    db.session.delete(pending)
    db.session.commit()
    return Linked(connection, kind, previous_state)


def cancel_switch(shop: Shop) -> None:
    """Discard the parked account (its token with it); the current connection stays as it was."""
    db.session.execute(db.delete(PendingConnection).where(PendingConnection.shop_id == shop.id))
    db.session.commit()


@fenced_write
def disconnect(connection: InstagramConnection, user: User, now: datetime) -> None:
    """Delete the token and mark the shop not connected; the history stays."""
    forget_token(connection)
    set_state(connection, ConnectionState.NOT_CONNECTED, now)
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
