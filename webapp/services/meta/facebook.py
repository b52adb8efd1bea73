"""A small client for Facebook Login for Business: the user token, its Pages and what Meta says about a token.

The same shape as the Instagram client beside it (client.py), on graph.facebook.com: one deadline per
call, Meta's errors as MetaApiError with every secret sent removed, no Flask imports. Every call made
with a user or Page token carries `appsecret_proof`, so a token copied off our servers is of no use
to anyone without the app secret (https://developers.facebook.com/docs/graph-api/securing-requests).
"""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

import requests

from webapp.services.meta.client import MetaApiError, MetaHttp, TokenGrant, Usage, parse_grant
from webapp.services.meta.http_deadline import deadline_session

# What /me/accounts is asked for each Page: its token, the merchant's tasks on it (MANAGE,
# CREATE_CONTENT, MODERATE, ADVERTISE, ANALYZE...) and the Instagram professional account linked to it.
# https://developers.facebook.com/docs/graph-api/reference/user/accounts/
PAGE_FIELDS = "id,name,access_token,tasks,instagram_business_account{id,username}"
PAGE_LIMIT = 100
# A merchant with more Pages than this many screens of them is not choosing one in our dialog; a
# cursor that never ends (a misbehaving answer) must not keep a request going either.
MAX_PAGE_SCREENS = 20


@dataclass(frozen=True)
class Page:
    """One Facebook Page the user has a task on, with its own token and its linked Instagram account."""

    id: str
    name: str | None
    access_token: str | None = field(repr=False)
    tasks: tuple[str, ...] = ()
    instagram_account_id: str | None = None
    instagram_username: str | None = None
    # Meta's usage headers on the answer that carried this Page (rate limits are read from them).
    usage: Usage = field(default_factory=Usage, compare=False, repr=False)

    @property
    def has_instagram(self) -> bool:
        return self.instagram_account_id is not None


@dataclass(frozen=True)
class TokenDebug:
    """What /debug_token says about a token.

    `expires_at` is None when Meta says 0 (a Page token from a long-lived user token has no end
    date); `data_access_expires_at` is the end of the 90-day data access window. `granular_scopes`
    maps a scope to the ids it was granted for (Pages, Instagram accounts, businesses); a scope
    granted for everything has no target ids.
    """

    is_valid: bool
    expires_at: datetime | None = None
    data_access_expires_at: datetime | None = None
    issued_at: datetime | None = None
    scopes: tuple[str, ...] = ()
    granular_scopes: dict[str, tuple[str, ...]] = field(default_factory=dict)
    user_id: str | None = None
    app_id: str | None = None
    token_type: str | None = None  # USER, PAGE or APP
    # Why Meta says the token is invalid (its `error` member), secrets removed.
    error: MetaApiError | None = field(default=None, compare=False)
    usage: Usage = field(default_factory=Usage, compare=False)

    def targets(self, scope: str) -> tuple[str, ...]:
        return self.granular_scopes.get(scope, ())


class PageProblem(MetaApiError):
    """Meta answered, and the answer shows a Facebook Login connection cannot work (no error code of its own).

    Raised by the keep-alive's Page check (services/keepalive/facebook_check.py); the classifier names
    each kind by its class.
    """


# The Page check's own findings begin with these words (the diagnosis quotes them as ours, not Meta's).
PAGE_CHECK_FINDING = re.compile(r"^(?:Your role on the Facebook Page |The Facebook Page |The permission \w+ )")


def is_page_check_finding(message: str | None) -> bool:
    return bool(message and PAGE_CHECK_FINDING.match(message))


class PageUnlinked(PageProblem):
    """The Page has no Instagram account linked any more, another one, or the Page is gone."""


class PageRoleTooLow(PageProblem):
    """The merchant's tasks on the Page no longer let them act for it."""


class ScopeNarrowed(PageProblem):
    """A permission the shop needs no longer covers the chosen Page or Instagram account."""


def appsecret_proof(token: str, app_secret: str) -> str:
    """HMAC-SHA256 of the token keyed with the app secret, hex: Meta's proof that the caller holds the secret."""
    return hmac.new(app_secret.encode(), token.encode(), hashlib.sha256).hexdigest()


class FacebookClient(MetaHttp):
    """Calls graph.facebook.com for Facebook Login for Business, with a deadline and typed errors on every call."""

    def __init__(
        self,
        *,
        app_id: str,
        app_secret: str,
        graph_base: str = "https://graph.facebook.com",
        graph_version: str = "v23.0",
        timeout: float = 10.0,
        session: requests.Session | None = None,
    ):
        """`timeout` is the overall deadline of one call: connect, headers and body together."""
        self.app_id = app_id
        self.app_secret = app_secret
        self.graph_base = graph_base.rstrip("/")
        self.graph_version = graph_version
        self.timeout = timeout
        self.session = session or deadline_session(timeout)

    def exchange_code(self, code: str, redirect_uri: str) -> TokenGrant:
        """Exchange the login dialog's code for a user token (short-lived)."""
        # https://developers.facebook.com/docs/facebook-login/guides/advanced/manual-flow#exchangecode
        body, usage = self._get(
            "oauth/access_token",
            {
                "client_id": self.app_id,
                "redirect_uri": redirect_uri,
                "client_secret": self.app_secret,
                "code": code,
            },
        )
        return parse_grant(body, usage)

    def long_lived_user_token(self, user_token: str) -> TokenGrant:
        """Exchange a user token for a long-lived one (about 60 days); an expired token cannot be exchanged."""
        # https://developers.facebook.com/docs/facebook-login/guides/access-tokens/get-long-lived
        body, usage = self._get(
            "oauth/access_token",
            {
                "grant_type": "fb_exchange_token",
                "client_id": self.app_id,
                "client_secret": self.app_secret,
                "fb_exchange_token": user_token,
            },
        )
        return parse_grant(body, usage)

    def pages(self, user_token: str, *, max_screens: int = MAX_PAGE_SCREENS) -> list[Page]:
        """Every Page the user has a task on (up to `max_screens` screens of /me/accounts), each with its own token."""
        pages: list[Page] = []
        after: str | None = None
        for _ in range(max_screens):
            params = {"fields": PAGE_FIELDS, "limit": str(PAGE_LIMIT)}
            if after:
                params["after"] = after
            body, usage = self._get("me/accounts", params, token=user_token)
            entries = body.get("data")
            if not isinstance(entries, list):
                raise MetaApiError("/me/accounts answered without a data list", failure="malformed", usage=usage)
            pages += [replace(page, usage=usage) for page in map(_page, entries) if page is not None]
            paging = _object(body.get("paging"))
            following = _object(paging.get("cursors")).get("after")
            # Meta leaves `next` out on the last screen. Its URL is not followed: it repeats the token
            # and could name any host; the cursor goes to the URL built here instead.
            if not paging.get("next") or not isinstance(following, str) or not following or following == after:
                break
            after = following
        return pages

    def page(self, page_token: str, page_id: str) -> Page:
        """The Page as its own token sees it: name and linked Instagram account (never its token)."""
        # https://developers.facebook.com/docs/instagram-platform/instagram-graph-api/reference/page
        body, usage = self._get(
            page_id, {"fields": "id,name,instagram_business_account{id,username}"}, token=page_token
        )
        page = _page({key: value for key, value in body.items() if key != "access_token"})
        if page is None:
            raise MetaApiError(f"/{page_id} answered without the Page's id", failure="malformed", usage=usage)
        return replace(page, usage=usage)

    def debug_token(self, input_token: str) -> TokenDebug:
        """Ask Meta about a user or Page token, with the app token (app id|app secret)."""
        # https://developers.facebook.com/docs/graph-api/reference/debug_token
        body, usage = self._get(
            "debug_token",
            {"input_token": input_token, "access_token": f"{self.app_id}|{self.app_secret}"},
        )
        data = body.get("data")
        if not isinstance(data, dict) or not isinstance(data.get("is_valid"), bool):
            raise MetaApiError("debug_token answered without data.is_valid", failure="malformed", usage=usage)
        return TokenDebug(
            is_valid=data["is_valid"],
            expires_at=_timestamp(data.get("expires_at")),
            data_access_expires_at=_timestamp(data.get("data_access_expires_at")),
            issued_at=_timestamp(data.get("issued_at")),
            scopes=_strings(data.get("scopes")),
            granular_scopes=_granular(data.get("granular_scopes")),
            user_id=_id(data.get("user_id")),
            app_id=_id(data.get("app_id")),
            token_type=data.get("type") if isinstance(data.get("type"), str) else None,
            error=self._token_error(data.get("error"), input_token),
            usage=usage,
        )

    def appsecret_proof(self, token: str) -> str:
        return appsecret_proof(token, self.app_secret)

    def _get(self, path: str, params: dict[str, str], *, token: str | None = None) -> tuple[dict, Usage]:
        """GET a versioned Graph path; with `token` (a user or Page token) and its appsecret_proof."""
        if token is not None:
            params = {**params, "access_token": token, "appsecret_proof": self.appsecret_proof(token)}
        return self._call(
            "GET",
            f"{self.graph_base}/{self.graph_version}/{path}",
            secrets=(self.app_secret,),
            params=params,
        )

    def _token_error(self, error: object, input_token: str) -> MetaApiError | None:
        if not isinstance(error, dict):
            return None
        message = error.get("message")
        return MetaApiError(
            str(message) if message else "Meta says the token is invalid",
            code=_int(error.get("code")),
            subcode=_int(error.get("subcode") if "subcode" in error else error.get("error_subcode")),
        ).without([input_token, self.app_secret])


def _page(entry: object) -> Page | None:
    if not isinstance(entry, dict) or _id(entry.get("id")) is None:
        return None
    linked = _object(entry.get("instagram_business_account"))
    token = entry.get("access_token")
    username = linked.get("username")
    return Page(
        id=str(_id(entry.get("id"))),
        name=entry.get("name") if isinstance(entry.get("name"), str) else None,
        access_token=token if isinstance(token, str) and token else None,
        tasks=_strings(entry.get("tasks")),
        instagram_account_id=_id(linked.get("id")),
        instagram_username=username if isinstance(username, str) and username else None,
    )


def _object(value: object) -> dict:
    return value if isinstance(value, dict) else {}


def _granular(value: object) -> dict[str, tuple[str, ...]]:
    granted: dict[str, tuple[str, ...]] = {}
    for entry in value if isinstance(value, list) else []:
        if isinstance(entry, dict) and isinstance(entry.get("scope"), str):
            targets = entry.get("target_ids")
            granted[entry["scope"]] = tuple(
                str(target) for target in (targets if isinstance(targets, list) else []) if _id(target)
            )
    return granted


def _strings(value: object) -> tuple[str, ...]:
    return tuple(item for item in value if isinstance(item, str)) if isinstance(value, list) else ()


def _id(value: object) -> str | None:
    """Graph ids are digit strings; Meta sometimes sends them as numbers."""
    if isinstance(value, bool) or not isinstance(value, str | int) or value in ("", 0):
        return None
    return str(value)


def _int(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    try:
        return int(value) if isinstance(value, int | str) and value != "" else None
    except ValueError:
        return None


def _timestamp(value: object) -> datetime | None:
    """A Unix time from Meta; 0 (or nothing) means no date."""
    seconds = _int(value)
    if not seconds or seconds < 0:
        return None
    try:
        return datetime.fromtimestamp(seconds, UTC)
    except (OverflowError, OSError, ValueError):
        return None
