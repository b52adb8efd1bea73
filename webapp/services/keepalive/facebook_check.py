"""The health check of a Facebook Login connection: the Page token, the merchant's role, the Page's link.

An Instagram Login connection is checked with one `/me`. A Facebook Login connection reaches the
Instagram account through a Page, so three things must still hold (DESIGN.md, "Connect"):

1. Meta still accepts the Page token: `debug_token` (validity, the data-access window, and the
   granular scopes still covering the chosen Page and Instagram account);
2. the merchant still has a role on the Page that lets them act for it (their tasks, from
   `/me/accounts` with the user token, while that token lives; the Page itself refuses a lowered role);
3. the Page is still linked to the same Instagram account (`/{page-id}` with the Page token).

Each failure becomes a MetaApiError the classifier names: Meta's own when Meta refused a call, or one
of the typed ones below when Meta answered but the answer shows the trouble. No database here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from webapp.services.connections.page_roles import describe, role_for, tasks_enough
from webapp.services.meta.classifier import TRANSIENT_CAUSES, classify_error
from webapp.services.meta.client import MetaApiError, Usage
from webapp.services.meta.facebook import FacebookClient, PageRoleTooLow, PageUnlinked, ScopeNarrowed, TokenDebug

# The role lookup reads this many screens of /me/accounts (100 Pages each) at most: with debug_token
# and the Page itself, a check makes at most PAGE_CHECK_CALLS calls (config.check_lease counts them).
TASK_SCREENS = 2
PAGE_CHECK_CALLS = 1 + TASK_SCREENS + 1
# The scopes whose granular targets must still name the chosen Page or Instagram account, and which.
PAGE_SCOPES = ("pages_show_list", "pages_read_engagement")
INSTAGRAM_SCOPES = ("instagram_basic",)


@dataclass(frozen=True)
class PageTarget:
    """What the check needs to know about the connection, copied from the row when it was claimed."""

    page_id: str
    page_name: str | None
    instagram_account_id: str | None
    page_token: str = field(repr=False)
    user_token: str | None = field(default=None, repr=False)
    tasks: tuple[str, ...] = ()

    @property
    def page_label(self) -> str:
        return f"“{self.page_name}”" if self.page_name else f"the Page {self.page_id}"


@dataclass
class PageCheck:
    """What the check learned, kept even when it ends in an error (the evidence quotes it)."""

    debug: TokenDebug | None = None
    tasks: tuple[str, ...] | None = None  # None: not learned this time (the user token had no answer)
    page_name: str | None = None
    instagram_username: str | None = None
    usage: Usage = field(default_factory=Usage)

    @property
    def expires_at(self) -> datetime | None:
        """When the token stops working by date: the earlier of its own expiry and the data-access window."""
        if self.debug is None:
            return None
        dates = [d for d in (self.debug.expires_at, self.debug.data_access_expires_at) if d is not None]
        return min(dates, default=None)


def check_page(client: FacebookClient, target: PageTarget) -> tuple[PageCheck, MetaApiError | None]:
    """Run the three checks; return what was learned and the first trouble found (or None)."""
    learned = PageCheck()
    try:
        debug = client.debug_token(target.page_token)
        learned.debug, learned.usage = debug, debug.usage
        if not debug.is_valid:
            raise debug.error or MetaApiError("Meta says the Page token is no longer valid.", code=190)
        learned.tasks = _tasks(client, target, learned)
        if learned.tasks is not None and not tasks_enough(learned.tasks):
            raise PageRoleTooLow(
                f"Your role on the Facebook Page {target.page_label} is now {describe(learned.tasks)}; "
                f"it was {role_for(target.tasks) or 'unknown'}. The shop needs Admin, Editor or Moderator."
            )
        page = _page(client, target)
        learned.usage = busiest(learned.usage, page.usage)
        learned.page_name = page.name
        if page.instagram_account_id is None:
            raise PageUnlinked(
                f"The Facebook Page {target.page_label} no longer has an Instagram account linked to it."
            )
        if target.instagram_account_id and page.instagram_account_id != target.instagram_account_id:
            other = f"@{page.instagram_username}" if page.instagram_username else "another Instagram account"
            raise PageUnlinked(
                f"The Facebook Page {target.page_label} is now linked to {other}, not the shop's account."
            )
        learned.instagram_username = page.instagram_username
        # Last: an unlinked account or a lowered role also leaves the scopes short of it, and is the better answer.
        _check_scopes(debug, target)
    except MetaApiError as error:
        error.usage = busiest(learned.usage, error.usage)
        return learned, error.without([target.page_token, target.user_token or ""])
    return learned, None


def _check_scopes(debug: TokenDebug, target: PageTarget) -> None:
    granted = set(debug.scopes)
    for scope in (*INSTAGRAM_SCOPES, *PAGE_SCOPES):
        wanted = target.instagram_account_id if scope in INSTAGRAM_SCOPES else target.page_id
        if debug.scopes and scope not in granted:
            raise ScopeNarrowed(f"The permission {scope} was taken away from the app.")
        targets = debug.targets(scope)
        # A scope granted for everything lists no target ids; one granted for some lists them.
        if wanted and targets and wanted not in targets:
            subject = "Instagram account" if scope in INSTAGRAM_SCOPES else f"Facebook Page {target.page_label}"
            raise ScopeNarrowed(f"The permission {scope} no longer covers the shop's {subject}.")


def busiest(*usages: Usage) -> Usage:
    """Of several answers' usage headers, the ones nearest Meta's limit (they decide whether to slow down)."""
    return max(usages, key=lambda usage: (usage.highest_percent, bool(usage.app or usage.business)))


def _tasks(client: FacebookClient, target: PageTarget, learned: PageCheck) -> tuple[str, ...] | None:
    """The merchant's tasks on the Page, from the user token; None when that token cannot tell any more.

    The user token lives 60 days and the Page token outlives it; once it has no answer the Page
    token's own answers (a lowered role gets "(#200)", a removed one 190) still decide.
    """
    if not target.user_token:
        return None
    try:
        pages = client.pages(target.user_token, max_screens=TASK_SCREENS)
    except MetaApiError as error:
        learned.usage = busiest(learned.usage, error.usage)
        if classify_error(error).cause in TRANSIENT_CAUSES:
            raise  # Meta's trouble or its rate limit: calling on would only make it worse
        return None  # the user token's own trouble (it expired, say): the Page token still decides
    learned.usage = busiest(learned.usage, *(page.usage for page in pages))
    for page in pages:
        if page.id == target.page_id:
            return page.tasks
    return ()  # the Page is not among the merchant's Pages any more: no role on it


def _page(client: FacebookClient, target: PageTarget):
    try:
        return client.page(target.page_token, target.page_id)
    except MetaApiError as error:
        if error.code == 100 and error.subcode == 33:
            # "Object with ID ... does not exist, cannot be loaded": asked with the Page's own token
            # about the Page itself, it means the Page was deleted or unpublished.
            raise PageUnlinked(
                f"The Facebook Page {target.page_label} was deleted or unpublished, or can no longer be reached. "
                f"Meta said: {error.message}",
                usage=error.usage,
            ) from error
        raise
