"""Database models (SQLAlchemy 2.0 typed mappings). Times are timezone-aware UTC."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from enum import StrEnum

from flask import current_app, has_app_context
from flask_login import UserMixin
from sqlalchemy import JSON, CheckConstraint, DateTime, ForeignKey, Index, String, text
from sqlalchemy.orm import DynamicMapped, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator
from werkzeug.security import check_password_hash, generate_password_hash

from webapp import clock
from webapp.extensions import Model, db

ROLES = ("merchant", "support", "admin")
STAFF_ROLES = ("support", "admin")


class UTCDateTime(TypeDecorator):
    """A timestamp stored as UTC and always read back timezone-aware (SQLite forgets the zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is not None:
            if value.tzinfo is None:
                raise ValueError("naive datetime given; use timezone-aware UTC")
            value = value.astimezone(UTC)
        return value

    def process_result_value(self, value, dialect):
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value


class Shop(Model):
    __tablename__ = "shops"
    __table_args__ = (Index("ix_shops_name_lower", text("lower(name)")),)

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(120))
    domain: Mapped[str | None] = mapped_column(String(255), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=clock.now)

    users: Mapped[list[User]] = relationship(back_populates="shop", order_by="User.email")
    instagram_connection: Mapped[InstagramConnection | None] = relationship(back_populates="shop")

    def __repr__(self) -> str:
        return f"<Shop {self.id} {self.name!r}>"


class User(UserMixin, Model):
    __tablename__ = "users"
    __table_args__ = (
        CheckConstraint("role IN ('merchant', 'support', 'admin')", name="ck_users_role"),
        CheckConstraint("role != 'merchant' OR shop_id IS NOT NULL", name="ck_users_merchant_has_shop"),
        # Emails are stored lower-cased; the functional index makes the rule hold for any writer.
        Index("uq_users_email_lower", text("lower(email)"), unique=True),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(254))
    name: Mapped[str] = mapped_column(String(120), default="")
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(16), default="merchant")
    shop_id: Mapped[int | None] = mapped_column(ForeignKey("shops.id", ondelete="RESTRICT"), index=True)
    active: Mapped[bool] = mapped_column(default=True)
    last_login_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Mail preferences: the first notice of a disconnection is always sent; these are optional.
    notify_reminders: Mapped[bool] = mapped_column(default=True, server_default=db.true())
    notify_expiry_warnings: Mapped[bool] = mapped_column(default=True, server_default=db.true())
    password_changed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=clock.now)

    shop: Mapped[Shop | None] = relationship(back_populates="users")

    def __repr__(self) -> str:
        return f"<User {self.id} {self.email} {self.role}>"

    @staticmethod
    def normalise_email(email: str) -> str:
        return email.strip().lower()

    def set_password(self, password: str, method: str | None = None) -> None:
        """Hash with `method`, else the app's PASSWORD_HASH_METHOD, else werkzeug's default (scrypt)."""
        if method is None and has_app_context():
            method = current_app.config.get("PASSWORD_HASH_METHOD")
        self.password_hash = generate_password_hash(password, method) if method else generate_password_hash(password)

    def check_password(self, password: str) -> bool:
        return check_password_hash(self.password_hash, password)

    @property
    def is_active(self) -> bool:  # flask-login asks this
        return self.active

    @property
    def is_staff(self) -> bool:
        return self.role in STAFF_ROLES

    @property
    def display_name(self) -> str:
        return self.name or self.email


def new_session_id() -> str:
    return secrets.token_urlsafe(32)


class LoginSession(Model):
    """One signed-in browser. Revoking the row kills that cookie even if someone kept a copy."""

    __tablename__ = "login_sessions"

    id: Mapped[str] = mapped_column(String(64), primary_key=True, default=new_session_id)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=clock.now)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    user_agent_family: Mapped[str] = mapped_column(String(40), default="")
    ip_prefix: Mapped[str] = mapped_column(String(48), default="")

    user: Mapped[User] = relationship()

    def __repr__(self) -> str:
        state = "revoked" if self.revoked_at else "live"
        return f"<LoginSession user={self.user_id} {state}>"


class ConnectionState(StrEnum):
    """DESIGN.md's stable connection states; members equal the strings stored in `state`."""

    NOT_CONNECTED = "not_connected"
    HEALTHY = "healthy"
    EXPIRING = "expiring"
    DEGRADED = "degraded"
    NEEDS_RECONNECT = "needs_reconnect"


class LoginPath(StrEnum):
    """How the shop connected (DESIGN.md's `LOGIN_PATHS` values); members equal the strings stored in `login_path`."""

    INSTAGRAM = "instagram"  # Instagram Business Login: the Instagram account's own token
    FACEBOOK = "facebook"  # Facebook Login for Business: a Page's token and its linked Instagram account


ACTOR_KINDS = ("merchant", "system", "support", "meta", "platform")  # platform: a Platform API key


class InstagramConnection(Model):
    """A shop's link to one Instagram professional account. The token is only ever stored encrypted."""

    __tablename__ = "instagram_connections"
    __table_args__ = (
        CheckConstraint(
            "state IN ('not_connected', 'healthy', 'expiring', 'degraded', 'needs_reconnect')",
            name="ck_instagram_connections_state",
        ),
        Index("ix_instagram_connections_state_changed", "state", "state_changed_at"),
        # The fleet counts connections per state and login path from this index alone.
        Index("ix_instagram_connections_state_login_path", "state", "login_path"),
        Index("ix_instagram_connections_due_at", "due_at"),
        Index("ix_instagram_connections_username_lower", text("lower(username)")),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    shop_id: Mapped[int] = mapped_column(ForeignKey("shops.id", ondelete="CASCADE"), unique=True)
    state: Mapped[str] = mapped_column(String(20), default=ConnectionState.NOT_CONNECTED)
    state_changed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    cause: Mapped[str | None] = mapped_column(String(40))
    login_path: Mapped[str] = mapped_column(String(16), default=LoginPath.INSTAGRAM, server_default="instagram")
    # Meta gives one Instagram professional account several numbers, all kept: Meta's callbacks
    # (deauthorize, data deletion) do not document which one they carry, so they match any of them.
    # - instagram_user_id: /me's `user_id`, the professional account's own id ("Get started" with
    #   Instagram Login); webhooks carry it as entry.id. The same for every app; what "same account" means.
    # - instagram_scoped_id: /me's `id`, the app-scoped id (IG User reference: "App-scoped User ID").
    # - login_user_id: the code exchange's `user_id` (Business Login: "Instagram-scoped user ID").
    instagram_user_id: Mapped[str | None] = mapped_column(String(64), index=True)
    instagram_scoped_id: Mapped[str | None] = mapped_column(String(64), index=True)
    login_user_id: Mapped[str | None] = mapped_column(String(64), index=True)
    # Facebook Login only: the app-scoped id of the Facebook user who connected (debug_token's
    # `user_id`), the id the Facebook app's deauthorize and data-deletion callbacks carry.
    facebook_user_id: Mapped[str | None] = mapped_column(String(64), index=True)
    # Facebook Login only: the Page the merchant picked (its token is `token_ciphertext`; the Page's
    # linked Instagram Business account is `instagram_user_id`), the merchant's tasks on it at the
    # last look (MANAGE, CREATE_CONTENT, ...; services/connections/page_roles.py names the role), and
    # the long-lived Facebook user token the Page token came from, encrypted like it.
    facebook_page_id: Mapped[str | None] = mapped_column(String(64), index=True)
    facebook_page_name: Mapped[str | None] = mapped_column(String(255))
    facebook_page_tasks: Mapped[str] = mapped_column(String(255), default="", server_default="")
    user_token_ciphertext: Mapped[str | None] = mapped_column(db.Text)
    user_token_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    username: Mapped[str | None] = mapped_column(String(64))
    display_name: Mapped[str | None] = mapped_column(String(255))
    profile_picture_url: Mapped[str | None] = mapped_column(String(1024))
    account_type: Mapped[str | None] = mapped_column(String(32))
    granted_permissions: Mapped[str] = mapped_column(String(512), default="")
    token_ciphertext: Mapped[str | None] = mapped_column(db.Text)
    token_fingerprint: Mapped[str | None] = mapped_column(String(16))
    token_issued_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # When the stored token stops working by date. Instagram Login: the 60-day token's expiry.
    # Facebook Login: the end of the 90-day data-access window (`data_access_expires_at`), since a
    # Page token from a long-lived user token has no end date of its own; only the merchant can
    # renew the window, by logging in again ("Renew access"), so these tokens are never refreshed.
    token_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_refreshed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_checked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_error_code: Mapped[int | None]
    last_error_subcode: Mapped[int | None]
    last_error_message: Mapped[str | None] = mapped_column(String(1000))
    connected_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    connected_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=clock.now)
    # Keep-alive schedule. due_at is the earliest of the three, kept in step for the worker's index.
    refresh_due_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    check_due_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    retry_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    due_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    paused_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # The worker's lease. `version` is the fence for every writer: SQLAlchemy moves it on each
    # update and refuses an update based on an older read (StaleDataError), and a worker's write-back
    # lands only while the version it claimed with is still the row's.
    lease_owner: Mapped[str | None] = mapped_column(String(64))
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    version: Mapped[int] = mapped_column(default=0)
    # Trouble since the last success: attempts (for backoff) and days (failures count once a day).
    consecutive_failures: Mapped[int] = mapped_column(default=0)
    failure_days: Mapped[int] = mapped_column(default=0)
    last_failure_on: Mapped[str | None] = mapped_column(String(10))
    failing_since: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_check_ok: Mapped[bool | None]
    last_refresh_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_refresh_error: Mapped[str | None] = mapped_column(String(500))
    refresh_failures: Mapped[int] = mapped_column(default=0)
    # Incidents (a stretch of needs_reconnect) drive notifications: started, and the one just resolved.
    incident_started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    resolved_incident_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # The current trouble's diagnosis, worked out once when it began or changed (by the worker or
    # Meta's callback) and read by the page, the mails and support alike: see
    # services/connections/diagnosis.py (`store_diagnosis`, `current_diagnosis`).
    diagnosis: Mapped[dict | None] = mapped_column(JSON)
    diagnosed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Meta's usage headers on the latest answer about this account (X-App-Usage for the app,
    # X-Business-Use-Case-Usage for the account) and the highest percentage in them: the app health page.
    usage: Mapped[dict | None] = mapped_column(JSON)
    usage_percent: Mapped[int | None]
    usage_seen_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    shop: Mapped[Shop] = relationship(back_populates="instagram_connection")
    connected_by: Mapped[User | None] = relationship()
    events: DynamicMapped[ConnectionEvent] = relationship(back_populates="connection", lazy="dynamic")

    __mapper_args__ = {"version_id_col": version}

    def __repr__(self) -> str:
        return f"<InstagramConnection shop={self.shop_id} @{self.username} {self.state}>"

    @property
    def has_token(self) -> bool:
        return self.token_ciphertext is not None

    @property
    def permissions(self) -> list[str]:
        return [p for p in self.granted_permissions.split(",") if p]

    @property
    def via_facebook(self) -> bool:
        return self.login_path == LoginPath.FACEBOOK

    @property
    def page_tasks(self) -> list[str]:
        return [task for task in self.facebook_page_tasks.split(",") if task]

    def schedule(self, *, refresh_due_at=None, check_due_at=None, retry_at=None) -> None:
        """Set the next refresh, check and retry times; due_at follows the earliest of them."""
        self.refresh_due_at = refresh_due_at
        self.check_due_at = check_due_at
        self.retry_at = retry_at
        self.recompute_due_at()

    def recompute_due_at(self) -> None:
        if self.retry_at is not None:
            # While retrying, the retry time governs; nothing is due before it.
            self.due_at = self.retry_at
            return
        times = [t for t in (self.refresh_due_at, self.check_due_at) if t is not None]
        self.due_at = min(times) if times else None


class ConnectionEvent(Model):
    """One thing that happened to a connection; the timeline and the diagnosis read these."""

    __tablename__ = "connection_events"
    __table_args__ = (
        Index("ix_connection_events_connection_time", "connection_id", "occurred_at"),
        Index("ix_connection_events_occurred_at", "occurred_at"),
        # The fleet's "causes of the last 30 days" reads only events that carry a cause.
        Index(
            "ix_connection_events_cause_time",
            "occurred_at",
            "cause",
            "connection_id",
            postgresql_where=text("cause IS NOT NULL"),
            sqlite_where=text("cause IS NOT NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    connection_id: Mapped[int] = mapped_column(ForeignKey("instagram_connections.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(40))
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime, default=clock.now)
    actor_kind: Mapped[str] = mapped_column(String(16), default="system")
    actor_id: Mapped[int | None]
    state_after: Mapped[str | None] = mapped_column(String(20))
    cause: Mapped[str | None] = mapped_column(String(40))
    meta_code: Mapped[int | None]
    meta_subcode: Mapped[int | None]
    # Meta's own words for the account owner (error_user_title, error_user_msg), where it sent them.
    meta_user_title: Mapped[str | None] = mapped_column(String(255))
    meta_user_message: Mapped[str | None] = mapped_column(String(1000))
    message: Mapped[str] = mapped_column(String(1000), default="")
    instagram_user_id: Mapped[str | None] = mapped_column(String(64))
    ip_prefix: Mapped[str | None] = mapped_column(String(48))
    user_agent_family: Mapped[str | None] = mapped_column(String(40))

    connection: Mapped[InstagramConnection] = relationship(back_populates="events")

    def __repr__(self) -> str:
        return f"<ConnectionEvent {self.kind} connection={self.connection_id} at {self.occurred_at:%Y-%m-%d %H:%M}>"


class PendingConnection(Model):
    """A freshly authorised account that differs from the shop's current one, awaiting 'switch'."""

    __tablename__ = "pending_connections"

    id: Mapped[int] = mapped_column(primary_key=True)
    shop_id: Mapped[int] = mapped_column(ForeignKey("shops.id", ondelete="CASCADE"), index=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    # The parked account's ids, as on InstagramConnection (a data deletion finds it by any of them).
    instagram_user_id: Mapped[str] = mapped_column(String(64))
    instagram_scoped_id: Mapped[str | None] = mapped_column(String(64))
    login_user_id: Mapped[str | None] = mapped_column(String(64))
    username: Mapped[str | None] = mapped_column(String(64))
    profile_json: Mapped[str] = mapped_column(db.Text)
    token_ciphertext: Mapped[str] = mapped_column(db.Text)
    token_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=clock.now)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)

    def __repr__(self) -> str:
        return f"<PendingConnection shop={self.shop_id} @{self.username}>"


class PendingFacebookLogin(Model):
    """A Facebook login that came back with Pages to choose from, waiting for the merchant's pick.

    Everything Meta granted is parked here for a few minutes: the Pages as the picker shows them
    (`pages_json`: id, name, tasks, linked Instagram account; no tokens), and the user token with
    every Page token, encrypted together in `secrets_ciphertext`. Picking a Page turns it into the
    connection; the row goes then, or when it expires, or when Meta asks to delete the user's data.
    """

    __tablename__ = "pending_facebook_logins"

    id: Mapped[int] = mapped_column(primary_key=True)
    shop_id: Mapped[int] = mapped_column(ForeignKey("shops.id", ondelete="CASCADE"), index=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    facebook_user_id: Mapped[str | None] = mapped_column(String(64), index=True)
    pages_json: Mapped[str] = mapped_column(db.Text)
    secrets_ciphertext: Mapped[str] = mapped_column(db.Text)
    granted_permissions: Mapped[str] = mapped_column(String(512), default="")
    user_token_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    data_access_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=clock.now)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)

    def __repr__(self) -> str:
        return f"<PendingFacebookLogin shop={self.shop_id} user={self.facebook_user_id}>"


class MetaCallback(Model):
    """A deauthorize or data-deletion request from Meta; unique per app, user and issue time (idempotency).

    `login_path` says which of Meta's apps sent it (the Instagram app or the Facebook app); their user
    ids are different numbering schemes, so the same id from each is two different people.
    """

    __tablename__ = "meta_callbacks"
    __table_args__ = (
        db.UniqueConstraint("login_path", "kind", "instagram_user_id", "issued_at", name="uq_meta_callbacks_request"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(20))  # deauthorize | data_deletion
    login_path: Mapped[str] = mapped_column(String(16), default=LoginPath.INSTAGRAM, server_default="instagram")
    # The user id Meta's signed_request carried (for the Facebook app, a Facebook user id).
    instagram_user_id: Mapped[str] = mapped_column(String(64))
    issued_at: Mapped[int] = mapped_column(db.BigInteger, default=0)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=clock.now)
    confirmation_code: Mapped[str | None] = mapped_column(String(32), unique=True)
    status: Mapped[str] = mapped_column(String(20), default="received")
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    connections_affected: Mapped[int] = mapped_column(default=0)

    def __repr__(self) -> str:
        return f"<MetaCallback {self.login_path} {self.kind} user={self.instagram_user_id} {self.status}>"


class SchedulerTick(Model):
    """One row per scheduler tick: the unique key lets exactly one scheduler run each tick."""

    __tablename__ = "scheduler_ticks"

    tick_at: Mapped[datetime] = mapped_column(UTCDateTime, primary_key=True)
    owner: Mapped[str] = mapped_column(String(64))
    ran_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expired: Mapped[int] = mapped_column(default=0)

    def __repr__(self) -> str:
        return f"<SchedulerTick {self.tick_at:%Y-%m-%d %H:%M} by {self.owner}>"


class RateLimitPause(Model):
    """Meta asked the whole app to slow down: no worker calls Meta before `until`."""

    __tablename__ = "rate_limit_pauses"

    scope: Mapped[str] = mapped_column(String(32), primary_key=True)  # "app"
    until: Mapped[datetime] = mapped_column(UTCDateTime)
    reason: Mapped[str] = mapped_column(String(255), default="")

    def __repr__(self) -> str:
        return f"<RateLimitPause {self.scope} until {self.until:%H:%M}>"


class WorkerProcess(Model):
    """A running worker's heartbeat (lets SQLite refuse a second worker and staff see who runs)."""

    __tablename__ = "worker_processes"

    owner: Mapped[str] = mapped_column(String(64), primary_key=True)
    hostname: Mapped[str] = mapped_column(String(255))
    pid: Mapped[int]
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    heartbeat_at: Mapped[datetime] = mapped_column(UTCDateTime)

    def __repr__(self) -> str:
        return f"<WorkerProcess {self.owner}>"


class ChecklistTick(Model):
    """A checklist step the merchant ticked, kept per incident (a new incident starts unticked)."""

    __tablename__ = "checklist_ticks"
    __table_args__ = (db.UniqueConstraint("connection_id", "incident_key", "item", name="uq_checklist_ticks_item"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    connection_id: Mapped[int] = mapped_column(ForeignKey("instagram_connections.id", ondelete="CASCADE"), index=True)
    incident_key: Mapped[str] = mapped_column(String(40))
    item: Mapped[int]
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    ticked_at: Mapped[datetime] = mapped_column(UTCDateTime, default=clock.now)

    def __repr__(self) -> str:
        return f"<ChecklistTick connection={self.connection_id} item={self.item}>"


class OutboundMail(Model):
    """One mail to one person. The idempotency key makes each notice exist once, however many senders."""

    __tablename__ = "outbound_mails"
    __table_args__ = (Index("ix_outbound_mails_status_next", "status", "next_attempt_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    idempotency_key: Mapped[str] = mapped_column(String(200), unique=True)
    kind: Mapped[str] = mapped_column(String(40))
    connection_id: Mapped[int | None] = mapped_column(
        ForeignKey("instagram_connections.id", ondelete="SET NULL"), index=True
    )
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    to_address: Mapped[str] = mapped_column(String(254))
    subject: Mapped[str] = mapped_column(String(255))
    text_body: Mapped[str] = mapped_column(db.Text)
    html_body: Mapped[str] = mapped_column(db.Text)
    unsubscribe_url: Mapped[str | None] = mapped_column(String(1000))
    # pending -> sending -> sent; back to pending for a retry; failed after the last attempt;
    # unknown when it may have left but no outcome came back (never resent); outbox when no MAIL_URL.
    status: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    claim_token: Mapped[str | None] = mapped_column(String(32))  # new with every claim; the outcome's fence
    last_error: Mapped[str | None] = mapped_column(String(500))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=clock.now)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    def __repr__(self) -> str:
        return f"<OutboundMail {self.kind} to {self.to_address} {self.status}>"


class WebhookEndpoint(Model):
    """A receiver of the platform's signed webhooks; its signing secret is kept encrypted, as tokens are.

    The secret must be readable again to sign each delivery, so it is encrypted with the token vault
    (never hashed), shown once when the endpoint is created, and never logged.
    """

    __tablename__ = "webhook_endpoints"

    id: Mapped[int] = mapped_column(primary_key=True)
    url: Mapped[str] = mapped_column(String(2000))
    description: Mapped[str] = mapped_column(String(255), default="")
    event_types: Mapped[str] = mapped_column(String(500))  # comma-separated, e.g. "connection.state_changed"
    secret_ciphertext: Mapped[str] = mapped_column(db.Text)
    created_by: Mapped[str] = mapped_column(String(300))  # who asked for it, as the audit log names them
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=clock.now)
    disabled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    def __repr__(self) -> str:
        return f"<WebhookEndpoint {self.id} {self.url} {'disabled' if self.disabled_at else 'enabled'}>"

    @property
    def types(self) -> list[str]:
        return [name for name in self.event_types.split(",") if name]

    @property
    def enabled(self) -> bool:
        return self.disabled_at is None


class WebhookEvent(Model):
    """One thing the platform is told about (the outbox), written in the transaction of the change itself.

    `event_id` is the stable id receivers deduplicate on: every attempt of every delivery of the event
    carries it as `webhook-id`. The payload is the body's `data`; it never holds a token.
    """

    __tablename__ = "webhook_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    event_id: Mapped[str] = mapped_column(String(40), unique=True)
    type: Mapped[str] = mapped_column(String(40))
    shop_id: Mapped[int | None] = mapped_column(ForeignKey("shops.id", ondelete="SET NULL"), index=True)
    connection_id: Mapped[int | None] = mapped_column(
        ForeignKey("instagram_connections.id", ondelete="SET NULL"), index=True
    )
    payload: Mapped[dict] = mapped_column(JSON)
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime, default=clock.now)

    def __repr__(self) -> str:
        return f"<WebhookEvent {self.event_id} {self.type} shop={self.shop_id}>"


class WebhookDelivery(Model):
    """One event to one endpoint: claimed by one worker at a time, retried with backoff, fenced by its claim."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        db.UniqueConstraint("webhook_event_id", "endpoint_id", name="uq_webhook_deliveries_event_endpoint"),
        Index("ix_webhook_deliveries_status_next", "status", "next_attempt_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    webhook_event_id: Mapped[int] = mapped_column(ForeignKey("webhook_events.id", ondelete="CASCADE"))
    endpoint_id: Mapped[int] = mapped_column(ForeignKey("webhook_endpoints.id", ondelete="CASCADE"), index=True)
    # pending -> sending -> delivered; back to pending for a retry; failed once the retry window closed.
    status: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(default=0)  # since it was queued (or sent again)
    queued_at: Mapped[datetime] = mapped_column(UTCDateTime, default=clock.now)  # the retry window starts here
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    claim_token: Mapped[str | None] = mapped_column(String(32))  # new with every claim; the outcome's fence
    last_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_response_code: Mapped[int | None]
    last_error: Mapped[str | None] = mapped_column(String(500))
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    event: Mapped[WebhookEvent] = relationship()
    endpoint: Mapped[WebhookEndpoint] = relationship()

    def __repr__(self) -> str:
        return f"<WebhookDelivery event={self.webhook_event_id} endpoint={self.endpoint_id} {self.status}>"


class Notification(Model):
    """An in-app notice for one person, shown in the nav's unread count."""

    __tablename__ = "notifications"
    __table_args__ = (Index("ix_notifications_user_unread", "user_id", "read_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    idempotency_key: Mapped[str] = mapped_column(String(200), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(40))
    title: Mapped[str] = mapped_column(String(255))
    body: Mapped[str] = mapped_column(String(1000))
    link: Mapped[str | None] = mapped_column(String(500))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=clock.now)
    read_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    def __repr__(self) -> str:
        return f"<Notification {self.kind} user={self.user_id}>"


class UsedLinkToken(Model):
    """Single-use signed links (reconnect links) that were already used."""

    __tablename__ = "used_link_tokens"

    nonce: Mapped[str] = mapped_column(String(64), primary_key=True)
    used_at: Mapped[datetime] = mapped_column(UTCDateTime, default=clock.now)


# What a Platform API key may do; each endpoint of /api/v1/ needs one of them (README, "Platform API").
API_SCOPES = ("status:read", "token:read", "errors:write", "webhooks:manage")


class ApiKey(Model):
    """A key the shop platform's services call /api/v1/ with. Only a hash of its secret half is kept.

    The full key, `ihk_<key_id>_<secret>`, is shown once when it is made; `key_id` finds the row and
    names the key in lists and the audit log, and the SHA-256 of the high-entropy secret proves it.
    """

    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(primary_key=True)
    key_id: Mapped[str] = mapped_column(String(16), unique=True)
    secret_hash: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(120))
    scopes: Mapped[str] = mapped_column(String(200))  # comma-separated, from API_SCOPES
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_by: Mapped[str] = mapped_column(String(300))  # who made it, as the audit log names them
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=clock.now)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    def __repr__(self) -> str:
        return f"<ApiKey {self.key_id} {self.name!r}{' revoked' if self.revoked_at else ''}>"

    @property
    def scope_list(self) -> list[str]:
        return [scope for scope in self.scopes.split(",") if scope]

    def has_scope(self, scope: str) -> bool:
        return scope in self.scope_list

    @property
    def label(self) -> str:
        """How the audit log names a request made with this key."""
        return f"API key {self.key_id} ({self.name})"


class ApiIdempotencyRecord(Model):
    """One `Idempotency-Key` a key sent: the request's hash, and the answer it got (none while in progress)."""

    __tablename__ = "api_idempotency_records"
    __table_args__ = (
        db.UniqueConstraint("api_key_id", "idempotency_key", name="uq_api_idempotency_records_key"),
        Index("ix_api_idempotency_records_created_at", "created_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    api_key_id: Mapped[int] = mapped_column(ForeignKey("api_keys.id", ondelete="CASCADE"))
    idempotency_key: Mapped[str] = mapped_column(String(255))
    request_hash: Mapped[str] = mapped_column(String(64))
    response_status: Mapped[int | None]
    response_body: Mapped[dict | None] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=clock.now)

    def __repr__(self) -> str:
        return f"<ApiIdempotencyRecord key={self.api_key_id} {self.idempotency_key!r} {self.response_status}>"


class Impersonation(Model):
    """A support agent viewing a shop as its merchant: time-boxed, with a reason, always audited."""

    __tablename__ = "impersonations"

    id: Mapped[int] = mapped_column(primary_key=True)
    agent_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    subject_user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    shop_id: Mapped[int] = mapped_column(ForeignKey("shops.id", ondelete="CASCADE"), index=True)
    reason: Mapped[str] = mapped_column(String(500))
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    ended_reason: Mapped[str | None] = mapped_column(String(40))

    agent: Mapped[User] = relationship(foreign_keys=[agent_id])
    subject: Mapped[User] = relationship(foreign_keys=[subject_user_id])
    shop: Mapped[Shop] = relationship()

    def __repr__(self) -> str:
        return f"<Impersonation {self.id} agent={self.agent_id} shop={self.shop_id}>"


class AuditEntry(Model):
    """Who did what to whom, and why. Append-only: the database refuses updates and deletes."""

    __tablename__ = "audit_log"
    __table_args__ = (
        Index("ix_audit_log_occurred_at", "occurred_at"),
        Index("ix_audit_log_shop", "subject_shop_id", "occurred_at"),
        Index("ix_audit_log_actor", "actor_id", "occurred_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime, default=clock.now)
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    actor_label: Mapped[str] = mapped_column(String(300))  # e.g. "agent@support.example (support)" or "Meta"
    action: Mapped[str] = mapped_column(String(80))
    subject_user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    subject_shop_id: Mapped[int | None] = mapped_column(ForeignKey("shops.id", ondelete="SET NULL"))
    impersonation_id: Mapped[int | None] = mapped_column(ForeignKey("impersonations.id", ondelete="SET NULL"))
    reason: Mapped[str | None] = mapped_column(String(500))
    ip_prefix: Mapped[str | None] = mapped_column(String(48))
    details: Mapped[str | None] = mapped_column(String(1000))

    def __repr__(self) -> str:
        return f"<AuditEntry {self.action} by {self.actor_label}>"


class FleetIncident(Model):
    """Meta itself failing for much of the fleet at once: one row per outage, opened and closed by the worker.

    Opened when many connections fail with passing or app-wide causes within minutes
    (services/incidents.py); while it is open, merchants see one calm banner and are not mailed about
    those causes. Closed once calls have succeeded again for a while.
    """

    __tablename__ = "fleet_incidents"
    __table_args__ = (
        # At most one open incident per scope, however many workers decide at the same moment.
        Index(
            "uq_fleet_incidents_open",
            "scope",
            unique=True,
            postgresql_where=text("closed_at IS NULL"),
            sqlite_where=text("closed_at IS NULL"),
        ),
        Index("ix_fleet_incidents_opened_at", "opened_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    scope: Mapped[str] = mapped_column(String(16), default="meta")
    opened_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # Set while calls succeed again and the failure rate stays low; the incident closes once this is
    # old enough (INCIDENT_CLOSE_MINUTES), and is cleared if the failures come back.
    recovering_since: Mapped[datetime | None] = mapped_column(UTCDateTime)
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    causes: Mapped[str] = mapped_column(String(255), default="")  # cause ids seen, comma-separated
    failing_at_open: Mapped[int] = mapped_column(default=0)
    checked_at_open: Mapped[int] = mapped_column(default=0)
    peak_failing: Mapped[int] = mapped_column(default=0)
    peak_percent: Mapped[int] = mapped_column(default=0)
    shops_touched: Mapped[int | None]  # counted when it closes

    updates: DynamicMapped[FleetIncidentUpdate] = relationship(back_populates="incident", lazy="dynamic")

    def __repr__(self) -> str:
        return f"<FleetIncident {self.id} {self.scope} {'open' if self.closed_at is None else 'closed'}>"

    @property
    def is_open(self) -> bool:
        return self.closed_at is None

    @property
    def cause_ids(self) -> list[str]:
        return [cause for cause in self.causes.split(",") if cause]


class FleetIncidentUpdate(Model):
    """One line of an incident's timeline: what the fleet's calls looked like at one evaluation."""

    __tablename__ = "fleet_incident_updates"
    __table_args__ = (Index("ix_fleet_incident_updates_incident_time", "incident_id", "occurred_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    incident_id: Mapped[int] = mapped_column(ForeignKey("fleet_incidents.id", ondelete="CASCADE"))
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime)
    kind: Mapped[str] = mapped_column(String(16))  # opened | ongoing | recovering | relapsed | closed
    checked: Mapped[int] = mapped_column(default=0)  # connections with a keep-alive answer in the window
    failing: Mapped[int] = mapped_column(default=0)  # of those, whose latest answer failed for Meta's reasons
    message: Mapped[str] = mapped_column(String(500), default="")

    incident: Mapped[FleetIncident] = relationship(back_populates="updates")

    def __repr__(self) -> str:
        return f"<FleetIncidentUpdate {self.kind} incident={self.incident_id} {self.failing}/{self.checked}>"
