"""The sandbox's own state: fake Instagram accounts, codes and tokens (tokens stored only as hashes)."""

from __future__ import annotations

import hashlib
from datetime import datetime

from sqlalchemy import ForeignKey, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from webapp import clock
from webapp.extensions import Model
from webapp.models import UTCDateTime

ALL_SCOPES = (
    "instagram_business_basic",
    "instagram_business_content_publish",
    "instagram_business_manage_messages",
    "instagram_business_manage_comments",
)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _derived_id(first_digit: str, kind: str, account_id: str) -> str:
    """A 17-digit id of its own kind for the account: stable, and unlike its other ids."""
    digest = hashlib.sha256(f"{kind}:{account_id}".encode()).digest()
    return first_digit + str(int.from_bytes(digest[:8]) % 10**16).zfill(16)


class SandboxAccount(Model):
    """A pretend Instagram professional account and the switches that reproduce Meta's revocations."""

    __tablename__ = "sandbox_accounts"

    id: Mapped[int] = mapped_column(primary_key=True)
    instagram_user_id: Mapped[str] = mapped_column(String(32), unique=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    display_name: Mapped[str] = mapped_column(String(120), default="")
    account_type: Mapped[str] = mapped_column(String(32), default="BUSINESS")
    password_version: Mapped[int] = mapped_column(default=1)
    session_generation: Mapped[int] = mapped_column(default=1)
    app_authorized: Mapped[bool] = mapped_column(default=False)
    checkpointed: Mapped[bool] = mapped_column(default=False)
    data_access_expired: Mapped[bool] = mapped_column(default=False)
    granted_scopes: Mapped[str] = mapped_column(String(512), default="instagram_business_basic")
    removed_scopes: Mapped[str] = mapped_column(String(512), default="")
    rate_limited_calls: Mapped[int] = mapped_column(default=0)
    outage: Mapped[bool] = mapped_column(default=False)
    clock_offset_days: Mapped[int] = mapped_column(default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=clock.now)

    def __repr__(self) -> str:
        return f"<SandboxAccount @{self.username}>"

    # Meta gives one account several ids, each a different number (InstagramConnection says which is
    # which); the sandbox does too, so code that mixes them up fails its tests. instagram_user_id is
    # /me's `user_id`; the other two are derived from it so that they need no columns of their own.
    @property
    def scoped_id(self) -> str:
        """/me's `id`, the app-scoped id."""
        return _derived_id("9", "scoped", self.instagram_user_id)

    @property
    def login_user_id(self) -> str:
        """The code exchange's `user_id`."""
        return _derived_id("2", "login", self.instagram_user_id)

    @property
    def scopes(self) -> list[str]:
        removed = set(filter(None, self.removed_scopes.split(",")))
        return [s for s in self.granted_scopes.split(",") if s and s not in removed]


class SandboxCode(Model):
    __tablename__ = "sandbox_codes"

    code: Mapped[str] = mapped_column(String(128), primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("sandbox_accounts.id", ondelete="CASCADE"))
    redirect_uri: Mapped[str] = mapped_column(Text)
    scopes: Mapped[str] = mapped_column(String(512))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    account: Mapped[SandboxAccount] = relationship()


class SandboxToken(Model):
    __tablename__ = "sandbox_tokens"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("sandbox_accounts.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(10))  # short | long
    issued_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    password_version: Mapped[int]
    session_generation: Mapped[int]
    scopes: Mapped[str] = mapped_column(String(512))
    superseded: Mapped[bool] = mapped_column(default=False)

    account: Mapped[SandboxAccount] = relationship()
