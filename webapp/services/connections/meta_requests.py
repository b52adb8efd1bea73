"""What Meta asks of us: a deauthorize (the app was removed) and a data deletion request.

Each request is applied once: the same signed request again changes nothing. Either of Meta's apps
may send one, and each reaches only the connections made through its own login (`login_path`):
- the Instagram app's `user_id` may be any of the ids Meta gives the Instagram account (Meta does
  not document which for Instagram Login), so it finds connections and parked switches by any of them;
- the Facebook app's `user_id` is the Facebook user who connected (`facebook_user_id`).
"""

from __future__ import annotations

import logging
import secrets
from datetime import datetime

from sqlalchemy import func, or_, select
from sqlalchemy.exc import IntegrityError

from webapp.extensions import db
from webapp.models import (
    ConnectionEvent,
    ConnectionState,
    InstagramConnection,
    LoginPath,
    MetaCallback,
    PendingConnection,
    PendingFacebookLogin,
)
from webapp.services import webhooks
from webapp.services.connections.causes import CauseId
from webapp.services.connections.diagnosis import store_diagnosis
from webapp.services.connections.state import META, fenced_write, forget_token, known_to_app, record_event, set_state

log = logging.getLogger(__name__)


def _same_request(kind: str, login_path: LoginPath, meta_user_id: str, issued_at: int):
    return select(MetaCallback).where(
        MetaCallback.login_path == login_path,
        MetaCallback.kind == kind,
        MetaCallback.instagram_user_id == meta_user_id,
        MetaCallback.issued_at == issued_at,
    )


def _claim_callback(
    kind: str, meta_user_id: str, issued_at: int, now: datetime, login_path: LoginPath
) -> MetaCallback | None:
    """Record a Meta callback once; return None when the very same request was already handled."""
    if db.session.scalar(_same_request(kind, login_path, meta_user_id, issued_at)) is not None:
        return None
    callback = MetaCallback(
        kind=kind,
        login_path=login_path,
        instagram_user_id=meta_user_id,
        issued_at=issued_at,
        received_at=now,
    )
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
def apply_deauthorize(
    meta_user_id: str, issued_at: int, now: datetime, login_path: LoginPath = LoginPath.INSTAGRAM
) -> int:
    """Meta says the user removed our app: the token is dead. Return how many connections changed."""
    callback = _claim_callback("deauthorize", meta_user_id, issued_at, now, login_path)
    if callback is None:
        return 0
    issued = issued_at or int(now.timestamp())
    changed = 0
    connections = db.session.scalars(select(InstagramConnection).where(known_to_app(login_path, meta_user_id))).all()
    for connection in connections:
        # issued_at has whole seconds; a deauthorize from the same second as the connect still counts.
        if connection.connected_at and issued < int(connection.connected_at.timestamp()):
            # Older than the latest connect: a replay or a late delivery cannot undo a reconnect.
            continue
        if connection.state == ConnectionState.NOT_CONNECTED and not connection.has_token:
            continue
        forget_token(connection)
        set_state(connection, ConnectionState.NEEDS_RECONNECT, now, cause=CauseId.APP_REMOVED)
        record_event(
            connection,
            "deauthorized",
            now,
            META,
            cause=CauseId.APP_REMOVED,
            # The event names the Instagram account: Meta's own id for it, or the one the Page links to.
            instagram_user_id=meta_user_id if login_path == LoginPath.INSTAGRAM else connection.instagram_user_id,
            message=REMOVED_WORDS[login_path],
        )
        store_diagnosis(connection, now)
        changed += 1
    _drop_parked_logins(meta_user_id, login_path)  # their tokens are the ones Meta just revoked
    callback.status = "completed"
    callback.completed_at = now
    callback.connections_affected = changed
    db.session.commit()
    log.info("deauthorize callback from the %s app: %d connection(s) changed", login_path, changed)
    return changed


REMOVED_WORDS = {
    LoginPath.INSTAGRAM: "Meta reported that this app was removed from the Instagram account's authorised apps.",
    LoginPath.FACEBOOK: "Meta reported that this app was removed from the Facebook account's business integrations.",
}


@fenced_write
def request_data_deletion(
    meta_user_id: str, issued_at: int, now: datetime, login_path: LoginPath = LoginPath.INSTAGRAM
) -> MetaCallback:
    """Delete everything we hold from this user; the same request again returns the same code."""
    callback = _claim_callback("data_deletion", meta_user_id, issued_at, now, login_path)
    if callback is None:  # the same request came before: its row holds the code we answered
        return db.session.execute(_same_request("data_deletion", login_path, meta_user_id, issued_at)).scalar_one()
    # Parked logins go first: on PostgreSQL this waits for a Page pick holding one (facebook_linking
    # locks it), so the connection that pick just made is among those found next and loses its tokens.
    _drop_parked_logins(meta_user_id, login_path)
    connections = db.session.scalars(select(InstagramConnection).where(known_to_app(login_path, meta_user_id))).all()
    ids = {
        known for c in connections for known in (c.instagram_user_id, c.instagram_scoped_id, c.login_user_id) if known
    }
    if login_path == LoginPath.INSTAGRAM:
        # A Facebook user id is not an Instagram account's: events never carry it, and an equal
        # Instagram id would be somebody else's history.
        ids.add(meta_user_id)
    _scrub_switched_away_history(ids, {c.id for c in connections})
    webhooks.forget_account({c.id for c in connections})
    for connection in connections:
        forget_token(connection)
        connection.instagram_user_id = connection.instagram_scoped_id = connection.login_user_id = None
        connection.facebook_user_id = connection.facebook_page_id = connection.facebook_page_name = None
        connection.facebook_page_tasks = ""
        connection.username = connection.display_name = None
        connection.profile_picture_url = connection.account_type = None
        connection.granted_permissions = ""
        connection.usage = connection.usage_percent = connection.usage_seen_at = None  # keyed by the account's id
        set_state(connection, ConnectionState.NOT_CONNECTED, now)
        db.session.execute(
            db.update(ConnectionEvent).where(ConnectionEvent.connection_id == connection.id).values(**SCRUBBED_EVENT)
        )
        record_event(
            connection,
            "instagram_data_deleted",
            now,
            META,
            message="Instagram data deleted at the account owner's request "
            f"(confirmation {callback.confirmation_code}).",
        )
    callback.status = "completed"
    callback.completed_at = now
    callback.connections_affected = len(connections)
    db.session.commit()
    return callback


# What an event keeps of the account after a deletion request: its kind, time and cause, nothing of the account.
SCRUBBED_EVENT = {
    "instagram_user_id": None,
    "meta_user_title": None,
    "meta_user_message": None,
    "message": "(Instagram details deleted at the account owner's request)",
}


def _scrub_switched_away_history(ids: set[str], still_linked: set[int]) -> None:
    """Scrub the account from the history of shops that switched to another account since.

    Their events up to the switch away (which names the account) are the account's; later ones belong
    to the account the shop uses now and stay as they are.
    """
    rows = db.session.execute(
        select(ConnectionEvent.connection_id, func.max(ConnectionEvent.occurred_at))
        .where(ConnectionEvent.instagram_user_id.in_(ids), ConnectionEvent.connection_id.not_in(still_linked))
        .group_by(ConnectionEvent.connection_id)
    ).all()
    for connection_id, last_seen in rows:
        switch = db.session.scalar(
            select(func.min(ConnectionEvent.occurred_at)).where(
                ConnectionEvent.connection_id == connection_id,
                ConnectionEvent.kind.in_(("switched_account", "connected")),
                ConnectionEvent.occurred_at >= last_seen,
                ConnectionEvent.instagram_user_id.is_(None) | ConnectionEvent.instagram_user_id.not_in(ids),
            )
        )
        db.session.execute(
            db.update(ConnectionEvent)
            .where(ConnectionEvent.connection_id == connection_id, ConnectionEvent.occurred_at <= (switch or last_seen))
            .values(**SCRUBBED_EVENT)
        )
        # Its webhook events from then name the account too, pending ones and those the log can send again.
        current = db.session.get(InstagramConnection, connection_id)
        webhooks.forget_earlier_account(connection_id, switch or last_seen, current.username if current else None)


def _drop_parked_logins(meta_user_id: str, login_path: LoginPath) -> None:
    """A login of this user waiting for the merchant (a switch to confirm, a Page to pick) cannot go ahead: drop it."""
    if login_path == LoginPath.FACEBOOK:
        db.session.execute(db.delete(PendingFacebookLogin).where(PendingFacebookLogin.facebook_user_id == meta_user_id))
        return
    db.session.execute(
        db.delete(PendingConnection).where(
            or_(
                PendingConnection.instagram_user_id == meta_user_id,
                PendingConnection.instagram_scoped_id == meta_user_id,
                PendingConnection.login_user_id == meta_user_id,
            )
        )
    )
