"""A connection's state, its events and its token; the fence every writer of a connection goes through."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import ParamSpec, TypeVar

from sqlalchemy import ColumnElement, and_, or_, select
from sqlalchemy.orm.exc import StaleDataError

from webapp.extensions import db
from webapp.models import ConnectionEvent, ConnectionState, InstagramConnection, LoginPath, Shop, User
from webapp.services import webhooks
from webapp.services.token_vault import TokenVault, TokenVaultError, fingerprint

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Actor:
    kind: str  # merchant | system | support | meta
    id: int | None = None

    @classmethod
    def for_user(cls, user: User) -> Actor:
        return cls("support" if user.is_staff else "merchant", user.id)


SYSTEM = Actor("system")


META = Actor("meta")


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


def end_read_transaction() -> None:
    """End the request's read transaction before calling Meta: none stays open while Meta answers (promise 3).

    Loaded rows expire and are read again, in a fresh transaction, when next touched.
    """
    db.session.commit()


def connection_for(shop: Shop) -> InstagramConnection:
    """Return the shop's connection row, creating a `not_connected` one the first time."""
    connection = db.session.scalar(select(InstagramConnection).where(InstagramConnection.shop_id == shop.id))
    if connection is None:
        connection = InstagramConnection(shop=shop, state=ConnectionState.NOT_CONNECTED)
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


def set_state(connection: InstagramConnection, state: ConnectionState, now: datetime, cause: str | None = None) -> None:
    """Move the connection to `state`, keeping track of incidents (stretches of needs_reconnect).

    A real change also emits its webhook events, in the caller's transaction (webhooks.state_changed).
    """
    previous_state = connection.state
    if connection.state != state:
        connection.state_changed_at = now
    if state == ConnectionState.NEEDS_RECONNECT and connection.incident_started_at is None:
        connection.incident_started_at = now
    elif _working(state, cause) and connection.incident_started_at is not None:
        connection.resolved_incident_at = connection.incident_started_at  # "restored" mail is due
        connection.incident_started_at = None
    elif state == ConnectionState.NOT_CONNECTED:
        connection.incident_started_at = connection.resolved_incident_at = None
    if _working(state, cause) or state == ConnectionState.NOT_CONNECTED:
        connection.diagnosis = connection.diagnosed_at = None  # no trouble left to explain
    connection.state = state
    connection.cause = cause
    if previous_state != state:
        webhooks.state_changed(connection, previous_state, now)


def _working(state: ConnectionState, cause: str | None) -> bool:
    """Healthy, or expiring with nothing wrong: a Facebook Login connection near its data-access window's end."""
    return state == ConnectionState.HEALTHY or (state == ConnectionState.EXPIRING and cause is None)


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
    """Delete the token (and Facebook Login's user token) and stop every scheduled call that would have used it.

    A worker still holding a lease on the row loses it: this write moves the version its write-back
    is fenced on, so nothing it brings back can restore the token (promise 33).
    """
    connection.token_ciphertext = None
    connection.token_fingerprint = None
    connection.user_token_ciphertext = connection.user_token_expires_at = None
    connection.lease_owner = connection.lease_expires_at = None
    connection.schedule()


def known_as(meta_user_id: str) -> ColumnElement[bool]:
    """Connections Meta may mean by this id: it has several for one account and does not say which it sent."""
    return or_(
        InstagramConnection.instagram_user_id == meta_user_id,
        InstagramConnection.instagram_scoped_id == meta_user_id,
        InstagramConnection.login_user_id == meta_user_id,
    )


def known_to_app(login_path: LoginPath, meta_user_id: str) -> ColumnElement[bool]:
    """Connections one of Meta's apps may mean by this id: only those made through that app's login.

    The Instagram app's ids and the Facebook app's are separate numbering schemes, so an id from one
    app that happens to equal an id from the other names someone else.
    """
    if login_path == LoginPath.FACEBOOK:
        return and_(
            InstagramConnection.login_path == LoginPath.FACEBOOK, InstagramConnection.facebook_user_id == meta_user_id
        )
    return and_(InstagramConnection.login_path == LoginPath.INSTAGRAM, known_as(meta_user_id))


def connection_ids_for(meta_user_id: str, login_path: LoginPath = LoginPath.INSTAGRAM) -> list[int]:
    return list(db.session.scalars(select(InstagramConnection.id).where(known_to_app(login_path, meta_user_id))))
