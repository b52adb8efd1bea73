"""The sandbox's own state: fake Instagram accounts and Facebook users with Pages, their codes and tokens
(tokens stored only as hashes)."""

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


# The Facebook side: Facebook Login for Business, where the Instagram account hangs off a Page.

FACEBOOK_SCOPES = (
    "instagram_basic",
    "pages_show_list",
    "pages_read_engagement",
    "business_management",
)
# A Page admin's tasks as /me/accounts lists them; the "lower the role" button leaves only ANALYZE.
FULL_PAGE_TASKS = ("ANALYZE", "ADVERTISE", "MODERATE", "CREATE_CONTENT", "MANAGE")


class SandboxFacebookUser(Model):
    """A pretend Facebook user, who manages Pages, and the switches that reproduce Meta's revocations."""

    __tablename__ = "sandbox_facebook_users"

    id: Mapped[int] = mapped_column(primary_key=True)
    facebook_user_id: Mapped[str] = mapped_column(String(32), unique=True)  # app-scoped, as /me's `id`
    name: Mapped[str] = mapped_column(String(120), unique=True)
    password_version: Mapped[int] = mapped_column(default=1)
    app_authorized: Mapped[bool] = mapped_column(default=False)
    checkpointed: Mapped[bool] = mapped_column(default=False)
    granted_scopes: Mapped[str] = mapped_column(String(512), default="")
    # The Pages the person let the app reach in the dialog (debug_token's granular target_ids).
    granted_page_ids: Mapped[str] = mapped_column(String(512), default="")
    data_access_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=clock.now)

    pages: Mapped[list[SandboxFacebookPage]] = relationship(
        back_populates="user", order_by="SandboxFacebookPage.id", cascade="all, delete-orphan"
    )

    def __repr__(self) -> str:
        return f"<SandboxFacebookUser {self.name!r}>"

    @property
    def scopes(self) -> list[str]:
        return [s for s in self.granted_scopes.split(",") if s]

    @property
    def granted_pages(self) -> list[str]:
        return [p for p in self.granted_page_ids.split(",") if p]


class SandboxFacebookPage(Model):
    """A Page the user has a role on, and the Instagram Business account linked to it (if any)."""

    __tablename__ = "sandbox_facebook_pages"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("sandbox_facebook_users.id", ondelete="CASCADE"), index=True)
    page_id: Mapped[str] = mapped_column(String(32), unique=True)
    name: Mapped[str] = mapped_column(String(120))
    tasks: Mapped[str] = mapped_column(String(120), default=",".join(FULL_PAGE_TASKS))  # "" = no role at all
    published: Mapped[bool] = mapped_column(default=True)
    deleted: Mapped[bool] = mapped_column(default=False)
    # The account stays known when unlinked, so that "clear every problem" links the same one back.
    instagram_account_id: Mapped[str | None] = mapped_column(String(32))
    instagram_username: Mapped[str | None] = mapped_column(String(64))
    instagram_linked: Mapped[bool] = mapped_column(default=False)

    user: Mapped[SandboxFacebookUser] = relationship(back_populates="pages")

    def __repr__(self) -> str:
        return f"<SandboxFacebookPage {self.name!r}>"

    @property
    def task_list(self) -> list[str]:
        return [t for t in self.tasks.split(",") if t]

    @property
    def linked_instagram(self) -> dict | None:
        if self.instagram_linked and self.instagram_account_id:
            return {"id": self.instagram_account_id, "username": self.instagram_username}
        return None


class SandboxFacebookCode(Model):
    __tablename__ = "sandbox_facebook_codes"

    code: Mapped[str] = mapped_column(String(256), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("sandbox_facebook_users.id", ondelete="CASCADE"))
    redirect_uri: Mapped[str] = mapped_column(Text)
    scopes: Mapped[str] = mapped_column(String(512))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    user: Mapped[SandboxFacebookUser] = relationship()


class SandboxFacebookToken(Model):
    """A user or Page token, kept only as its hash, with the user's state at the time it was issued."""

    __tablename__ = "sandbox_facebook_tokens"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("sandbox_facebook_users.id", ondelete="CASCADE"), index=True)
    page_id: Mapped[int | None] = mapped_column(ForeignKey("sandbox_facebook_pages.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(10))  # short | long | page
    issued_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)  # None: no date (a Page token)
    password_version: Mapped[int]
    scopes: Mapped[str] = mapped_column(String(512))

    user: Mapped[SandboxFacebookUser] = relationship()
    page: Mapped[SandboxFacebookPage | None] = relationship()
