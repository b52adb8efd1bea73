"""Facebook Login for Business: from the login's user token to the Page the merchant picks, then the connection.

The login gives a user token; the user token lists the Pages the person let the app use, each with
its own token and, where one is linked, the Page's Instagram professional account. What came back is
parked (PendingFacebookLogin, tokens encrypted) until the merchant picks the shop's Page, or finished
at once when there is nothing to choose. The connection then holds the Page's token: it has no end
date of its own, so its date is the end of the 90-day data access window (`debug_token`).
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import cast

from sqlalchemy import CursorResult, select

from webapp.extensions import db
from webapp.models import (
    ConnectionState,
    InstagramConnection,
    PendingConnection,
    PendingFacebookLogin,
    Shop,
    User,
)
from webapp.services.connections import connect_errors, page_roles
from webapp.services.connections.causes import DATA_ACCESS_WINDOW
from webapp.services.connections.connect_errors import ConnectRefusal
from webapp.services.connections.linking import (
    PENDING_SWITCH_LIFETIME,
    FacebookPageLink,
    Linked,
    apply_new_token,
    same_account,
)
from webapp.services.connections.state import connection_for, end_read_transaction, fenced_write
from webapp.services.fingerprint import ClientFingerprint
from webapp.services.keepalive.policy import Policy
from webapp.services.meta.client import MetaApiError, Profile, TokenGrant
from webapp.services.meta.facebook import FacebookClient, Page, TokenDebug
from webapp.services.token_vault import TokenVault, TokenVaultError

log = logging.getLogger(__name__)

# Long enough to read the Pages and pick one, short enough that parked tokens do not linger.
PENDING_LOGIN_LIFETIME = PENDING_SWITCH_LIFETIME
# Without these two the app sees no Page's Instagram account at all (instagram_basic, pages_show_list:
# https://developers.facebook.com/docs/instagram-platform/instagram-graph-api/reference/page).
REQUIRED_PERMISSIONS = ("instagram_basic", "pages_show_list")


@dataclass(frozen=True)
class ParkedPage:
    """A Page as the picker shows it: never its token (that stays encrypted in the parked secrets)."""

    id: str
    name: str | None
    tasks: tuple[str, ...] = ()
    instagram_account_id: str | None = None
    instagram_username: str | None = None

    @classmethod
    def from_page(cls, page: Page) -> ParkedPage:
        return cls(page.id, page.name, page.tasks, page.instagram_account_id, page.instagram_username)

    @property
    def label(self) -> str:
        return self.name or f"Page {self.id}"

    @property
    def linked(self) -> bool:
        return self.instagram_account_id is not None

    @property
    def role(self) -> str | None:
        return page_roles.role_for(self.tasks)

    @property
    def role_enough(self) -> bool:
        return page_roles.tasks_enough(self.tasks)

    @property
    def profile(self) -> Profile:
        """The Page's linked Instagram account, as the connection stores an account."""
        return Profile(user_id=self.instagram_account_id or "", username=self.instagram_username)


@dataclass(frozen=True)
class PagePicker:
    """What the picker shows: the parked Pages, and the account a pick would replace."""

    pending: PendingFacebookLogin
    pages: tuple[ParkedPage, ...]
    # The Instagram account the shop is connected to now (not for a shop that is not connected).
    current_username: str | None = None
    current_instagram_id: str | None = None
    # The Page the shop's Facebook Login connection uses now (none on Instagram Login).
    current_page_id: str | None = None

    @property
    def choices(self) -> list[ParkedPage]:
        return [page for page in self.pages if page.linked]

    @property
    def unlinked(self) -> list[ParkedPage]:
        return [page for page in self.pages if not page.linked]

    @property
    def missing_permissions(self) -> list[str]:
        granted = set(filter(None, self.pending.granted_permissions.split(",")))
        return [name for name in REQUIRED_PERMISSIONS if granted and name not in granted]

    def replaces(self, page: ParkedPage) -> bool:
        """Picking this Page would put another Instagram account in place of the shop's current one."""
        return self.current_instagram_id is not None and page.instagram_account_id != self.current_instagram_id

    def is_current(self, page: ParkedPage) -> bool:
        return self.current_instagram_id is not None and page.instagram_account_id == self.current_instagram_id

    @property
    def obvious(self) -> ParkedPage | None:
        """The Page to finish with at once, when there is nothing to choose.

        A reconnect or a renewal keeps the shop's own Page when it still reaches the same account with a
        role that can act for it; otherwise one linked Page is obvious when it replaces nobody.
        """
        kept = next((page for page in self.choices if page.id == self.current_page_id), None)
        if kept is not None and kept.role_enough and self.is_current(kept):
            return kept
        only = self.choices[0] if len(self.choices) == 1 else None
        if only is None or not only.role_enough or self.replaces(only):
            return None
        return only


class LoginRefused(Exception):
    """The login cannot become a connection for a reason the merchant reads in `refusal.message`."""

    def __init__(self, refusal: ConnectRefusal):
        super().__init__(refusal.detail or refusal.message)
        self.refusal = refusal


class PendingLoginExpired(Exception):
    """The parked login is gone (used, cancelled, deleted on Meta's request) or too old; log in again."""


def receive_login(
    *,
    shop: Shop,
    user: User,
    short_grant: TokenGrant,
    client: FacebookClient,
    vault: TokenVault,
    now: datetime,
    client_fingerprint: ClientFingerprint,
    policy: Policy,
) -> Linked | None:
    """Turn the login into a long-lived user token and its Pages, and park them for the merchant's pick.

    Returns the connection when there was nothing to choose (PagePicker.obvious: the shop's own Page
    on a reconnect or renewal, or the one Page with an Instagram account), else None: the picker has
    what it needs. Raises MetaApiError when Meta refuses a step, LoginRefused when the user
    token comes back invalid.
    """
    end_read_transaction()  # the long-lived exchange, debug_token and /me/accounts follow
    long_grant = client.long_lived_user_token(short_grant.access_token)
    user_debug = client.debug_token(long_grant.access_token)
    _require_valid(user_debug, "the user token")
    pages = client.pages(long_grant.access_token)
    pending = _park(shop, user, short_grant, long_grant, user_debug, pages, now, vault)
    picker = picker_for(shop, user, now)
    if picker is None:  # deleted meanwhile (a data deletion request): nothing to finish
        raise PendingLoginExpired()
    if not picker.choices:
        connect_errors.record(
            connect_errors.no_linked_page(), shop=shop, user=user, now=now, client_fingerprint=client_fingerprint
        )
        return None
    obvious = picker.obvious
    if obvious is None:
        return None
    return choose_page(
        shop=shop,
        user=user,
        page_id=obvious.id,
        client=client,
        vault=vault,
        now=now,
        client_fingerprint=client_fingerprint,
        policy=policy,
        pending_id=pending.id,
    )


def _require_valid(debug: TokenDebug, what: str) -> None:
    """A token Meta calls invalid right after granting it is refused like Meta's own error for it."""
    if not debug.is_valid:
        raise debug.error or MetaApiError(f"debug_token says {what} is not valid", code=190)


def _park(
    shop: Shop,
    user: User,
    short_grant: TokenGrant,
    long_grant: TokenGrant,
    user_debug: TokenDebug,
    pages: list[Page],
    now: datetime,
    vault: TokenVault,
) -> PendingFacebookLogin:
    """Keep what the login gave for a few minutes, tokens encrypted; an earlier parked login of the shop goes."""
    secrets = {
        "user_token": long_grant.access_token,
        "page_tokens": {page.id: page.access_token for page in pages if page.access_token},
    }
    permissions = user_debug.scopes or short_grant.permissions
    db.session.execute(
        db.delete(PendingFacebookLogin).where(
            PendingFacebookLogin.shop_id == shop.id, PendingFacebookLogin.user_id == user.id
        )
    )
    pending = PendingFacebookLogin(
        shop_id=shop.id,
        user_id=user.id,
        facebook_user_id=user_debug.user_id or short_grant.user_id,
        pages_json=json.dumps([asdict(ParkedPage.from_page(page)) for page in pages]),
        secrets_ciphertext=vault.encrypt(json.dumps(secrets)),
        granted_permissions=",".join(permissions),
        user_token_expires_at=long_grant.expires_at(now) or user_debug.expires_at,
        data_access_expires_at=user_debug.data_access_expires_at,
        created_at=now,
        expires_at=now + PENDING_LOGIN_LIFETIME,
    )
    db.session.add(pending)
    db.session.commit()
    return pending


def live_pending_login(shop: Shop, user: User, now: datetime) -> PendingFacebookLogin | None:
    """This merchant's parked login for this shop: another merchant of the shop never sees or uses it."""
    pending = db.session.scalar(
        select(PendingFacebookLogin)
        .where(PendingFacebookLogin.shop_id == shop.id, PendingFacebookLogin.user_id == user.id)
        .order_by(PendingFacebookLogin.id.desc())
    )
    if pending is None or pending.expires_at < now:
        return None
    return pending


def _parked_pages(pending: PendingFacebookLogin) -> tuple[ParkedPage, ...]:
    return tuple(
        ParkedPage(
            id=entry["id"],
            name=entry.get("name"),
            tasks=tuple(entry.get("tasks") or ()),
            instagram_account_id=entry.get("instagram_account_id"),
            instagram_username=entry.get("instagram_username"),
        )
        for entry in json.loads(pending.pages_json)
    )


def picker_for(shop: Shop, user: User, now: datetime) -> PagePicker | None:
    """The parked login's Pages and the shop's current account; None when there is no live parked login."""
    pending = live_pending_login(shop, user, now)
    if pending is None:
        return None
    connection = db.session.scalar(select(InstagramConnection).where(InstagramConnection.shop_id == shop.id))
    current_id = current_username = current_page_id = None
    if connection is not None and connection.state != ConnectionState.NOT_CONNECTED and connection.instagram_user_id:
        current_id, current_username = connection.instagram_user_id, connection.username
        current_page_id = connection.facebook_page_id if connection.via_facebook else None
    return PagePicker(pending, _parked_pages(pending), current_username, current_id, current_page_id)


def choose_page(
    *,
    shop: Shop,
    user: User,
    page_id: str,
    client: FacebookClient,
    vault: TokenVault,
    now: datetime,
    client_fingerprint: ClientFingerprint,
    policy: Policy,
    pending_id: int | None = None,
) -> Linked:
    """Connect the shop through the picked Page: check its token with Meta, then store it.

    Raises PendingLoginExpired when the parked login is gone or too old, LoginRefused (before any
    call to Meta) when the Page cannot be used (no Instagram account, a role too low, no token), and
    MetaApiError when Meta refuses the Page's token.
    """
    pending = live_pending_login(shop, user, now)
    if pending is None or (pending_id is not None and pending.id != pending_id):
        raise PendingLoginExpired()
    page = next((parked for parked in _parked_pages(pending) if parked.id == page_id), None)
    if page is None or not page.linked:
        raise LoginRefused(connect_errors.no_linked_page())
    if not page.role_enough:
        raise LoginRefused(connect_errors.role_too_low(page.label, page.tasks))
    try:
        secrets = json.loads(vault.decrypt(pending.secrets_ciphertext))
    except TokenVaultError as exc:  # encrypted under a key removed since: as good as gone
        raise PendingLoginExpired() from exc
    page_token = secrets["page_tokens"].get(page.id)
    if not page_token:
        raise LoginRefused(connect_errors.page_not_granted(page.label))
    parked_id = pending.id
    end_read_transaction()  # debug_token follows
    page_debug = client.debug_token(page_token)
    _require_valid(page_debug, "the Page token")
    user_token = secrets["user_token"]
    return _store_page(
        shop, user, parked_id, page, page_token, user_token, page_debug, vault, now, client_fingerprint, policy
    )


def access_ends_at(page_debug: TokenDebug, pending: PendingFacebookLogin, now: datetime) -> datetime:
    """When the Page token stops working by date: its own expiry or the data access window's end, the earlier.

    A Page token from a long-lived user token has no expiry (`expires_at` 0), so the data access
    window is what ends it; the user token's window stands in when the Page's says nothing.
    """
    dates = [date for date in (page_debug.expires_at, page_debug.data_access_expires_at) if date is not None]
    if not dates and pending.data_access_expires_at is not None:
        dates = [pending.data_access_expires_at]
    return min(dates) if dates else now + DATA_ACCESS_WINDOW


@fenced_write
def _store_page(
    shop: Shop,
    user: User,
    pending_id: int,
    page: ParkedPage,
    page_token: str,
    user_token: str,
    page_debug: TokenDebug,
    vault: TokenVault,
    now: datetime,
    client_fingerprint: ClientFingerprint,
    policy: Policy,
) -> Linked:
    """Store the Page's token and its Instagram account on the shop's connection; the parked login goes."""
    # Locked (PostgreSQL) so that a data deletion for this Facebook user waits for the pick and then
    # finds the connection it made; cancelled, or deleted on Meta's request, while Meta answered: gone.
    query = select(PendingFacebookLogin).where(PendingFacebookLogin.id == pending_id)
    if db.engine.dialect.name == "postgresql":
        query = query.with_for_update()
    pending = db.session.scalar(query)
    if pending is None or pending.expires_at < now:
        raise PendingLoginExpired()
    connection = connection_for(shop)
    previous_state = connection.state
    profile = page.profile
    other_account = same_account(connection, profile, None) is False
    switched_from = None
    if other_account and connection.state != ConnectionState.NOT_CONNECTED:
        switched_from = connection.username or "the previous account"
    if other_account:
        # A new account's profile replaces the old one entirely, not field by field.
        connection.username = connection.display_name = connection.profile_picture_url = None
        connection.account_type = None
        connection.granted_permissions = ""
    kind = apply_new_token(
        connection,
        profile,
        None,
        page_debug.scopes or tuple(filter(None, pending.granted_permissions.split(","))),
        page_token,
        access_ends_at(page_debug, pending, now),
        user,
        now,
        client_fingerprint,
        vault,
        policy=policy,
        switched_from=switched_from,
        facebook=FacebookPageLink(
            facebook_user_id=pending.facebook_user_id,
            page_id=page.id,
            page_name=page.name,
            page_tasks=page.tasks,
            user_token=user_token,
            user_token_expires_at=pending.user_token_expires_at,
        ),
    )
    # This parked login must still be there as it ends (SQLite takes no row lock: a deletion request
    # that removed it meanwhile wins, and nothing of its user is stored).
    # Session.execute types every result as a plain Result; a DELETE's is a CursorResult.
    taken = cast(
        CursorResult, db.session.execute(db.delete(PendingFacebookLogin).where(PendingFacebookLogin.id == pending_id))
    )
    if taken.rowcount != 1:
        db.session.rollback()
        raise PendingLoginExpired()
    # Whatever else was waiting for this shop (other parked logins, an Instagram account switch) is settled now.
    db.session.execute(db.delete(PendingFacebookLogin).where(PendingFacebookLogin.shop_id == shop.id))
    db.session.execute(db.delete(PendingConnection).where(PendingConnection.shop_id == shop.id))
    db.session.commit()
    log.info("shop %s connected through Facebook Page %s (%s)", shop.id, page.id, kind)
    return Linked(connection, kind, previous_state)


def discard_pending(shop: Shop, user: User) -> None:
    """Forget this merchant's parked login (its tokens with it); the connection stays as it was."""
    db.session.execute(
        db.delete(PendingFacebookLogin).where(
            PendingFacebookLogin.shop_id == shop.id, PendingFacebookLogin.user_id == user.id
        )
    )
    db.session.commit()
