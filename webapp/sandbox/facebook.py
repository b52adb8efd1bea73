"""The sandbox's Facebook rules: how Facebook Login for Business and the Graph API answer each call.

Shapes and texts follow what Meta really sends; each error names its source (shared/knowledge/
meta-platform.md sections B, C and F, and the public reports quoted there). Where Meta documents a
rule but not its wording, the comment says the wording is the sandbox's own.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from datetime import datetime, timedelta

from sqlalchemy import select

from webapp.extensions import db
from webapp.models import InstagramConnection
from webapp.sandbox.emulator import SandboxReply, graph_error, nudge_matching
from webapp.sandbox.models import (
    FACEBOOK_SCOPES,
    FULL_PAGE_TASKS,
    SandboxFacebookCode,
    SandboxFacebookPage,
    SandboxFacebookToken,
    SandboxFacebookUser,
    token_hash,
)
from webapp.services.connections.state import fenced_write
from webapp.services.meta.client import LONG_LIVED_TOKEN_LIFETIME

SHORT_LIVED = timedelta(hours=1)
CODE_LIFETIME = timedelta(minutes=10)
DATA_ACCESS_WINDOW = timedelta(days=90)  # [AVD]
APP_NAME = "Shop Instagram Health (sandbox)"
DEMO_USER = "Demo Merchant"
PAGE_LIMIT = 25

# Meta's texts, each with where it was seen.
PAGE_ROLE_GONE = (  # 190 without a subcode: snarfed/bridgy#596; the longer text in public error tables
    "The user must be an administrator, editor, or moderator of the page in order to impersonate it. "
    "If the page business requires Two Factor Authentication, the user also needs to enable Two Factor Authentication."
)
PAGE_TASKS_TOO_LOW = (  # (#200), code 200, OAuthException: the same wording in several public reports
    "(#200) User does not have sufficient administrative permission for this action on this page. "
    "If the page business requires Two Factor Authentication, the user also needs to enable Two Factor Authentication."
)
PAGE_NOT_ACCESSIBLE = "This Page access token belongs to a Page that is not accessible."  # BotFramework-Services#36
DEBUG_CALLER_REFUSED = (  # nyaruka/rapidpro#3734
    "(#100) You must provide an app access token, or a user access token that is an owner or developer of the app"
)
# The tasks that let a person act for the Page; ANALYZE alone only reads insights.
ACTING_TASKS = frozenset({"MANAGE", "CREATE_CONTENT", "MODERATE"})
PAGE_FIELDS = frozenset(
    {"id", "name", "category", "access_token", "tasks", "instagram_business_account", "is_published"}
)
ACCOUNTS_DEFAULT_FIELDS = ("access_token", "category", "name", "id", "tasks")
INSTAGRAM_FIELDS = frozenset({"id", "username", "name"})


def _unsupported_get(object_id: str) -> SandboxReply:
    """(#100) subcode 33: an object that does not exist or cannot be reached (restfb/restfb#1075)."""
    return graph_error(
        100,
        f"Unsupported get request. Object with ID '{object_id}' does not exist, cannot be loaded due to missing "
        "permissions, or does not support this operation. Please read the Graph API documentation at "
        "https://developers.facebook.com/docs/graph-api",
        33,
        error_type="GraphMethodException",
    )


def _number(prefix: str, length: int) -> str:
    return prefix + "".join(str(secrets.randbelow(10)) for _ in range(length - len(prefix)))


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")[:20] or "shop"


def new_user(name: str, now: datetime, *, pages: tuple[str, str] | None = None) -> SandboxFacebookUser:
    """Create a Facebook user with two Pages: one linked to an Instagram Business account, one without."""
    first, second = pages or (f"{name} Shop", f"{name} Outlet")
    user = SandboxFacebookUser(facebook_user_id=_number("1", 16), name=name, created_at=now)
    user.pages = [
        SandboxFacebookPage(
            page_id=_number("1", 15),
            name=first,
            instagram_account_id=_number("17841", 17),
            instagram_username=_slug(first),
            instagram_linked=True,
        ),
        SandboxFacebookPage(page_id=_number("1", 15), name=second),
    ]
    db.session.add(user)
    db.session.flush()
    return user


def seed_demo_user(now: datetime) -> bool:
    """The demo data: one user with two Pages linked to Instagram and one without, so the dashboard's
    Page picker has a choice to offer and an unlinked Page to explain (safe to run again)."""
    if db.session.scalar(select(SandboxFacebookUser).where(SandboxFacebookUser.name == DEMO_USER)):
        return False
    user = new_user(DEMO_USER, now, pages=("Tea House", "Tea House Events"))
    outlet = SandboxFacebookPage(
        page_id=_number("1", 15),
        name="Tea House Outlet",
        instagram_account_id=_number("17841", 17),
        instagram_username="tea_house_outlet",
        instagram_linked=True,
    )
    user.pages.insert(1, outlet)
    db.session.commit()
    return True


def users() -> list[SandboxFacebookUser]:
    return list(db.session.scalars(select(SandboxFacebookUser).order_by(SandboxFacebookUser.name)))


def requested_scopes(scope: str, config_id: str) -> list[str]:
    """A configuration (config_id) grants the sandbox's whole set; otherwise the listed scopes."""
    listed = FACEBOOK_SCOPES if config_id else tuple(s for s in re.split(r"[ ,]+", scope) if s)
    return ["public_profile", *[s for s in listed if s != "public_profile"]]


def issue_code(
    user: SandboxFacebookUser, page_ids: list[str], redirect_uri: str, scopes: list[str], now: datetime
) -> str:
    """The person pressed Continue: grant the app the scopes and the Pages picked, renew data access."""
    code = "AQ" + secrets.token_urlsafe(96)
    own = {page.page_id for page in user.pages if not page.deleted}
    user.app_authorized = True
    user.checkpointed = False
    user.granted_scopes = ",".join(scopes)
    user.granted_page_ids = ",".join(p for p in page_ids if p in own) or ",".join(sorted(own))
    user.data_access_expires_at = now + DATA_ACCESS_WINDOW
    db.session.add(
        SandboxFacebookCode(code=code, user=user, redirect_uri=redirect_uri, scopes=user.granted_scopes, created_at=now)
    )
    db.session.commit()
    return code


def _mint(user: SandboxFacebookUser, kind: str, now: datetime, *, page=None, expires_at=None) -> str:
    token = "EAA" + secrets.token_urlsafe(120)
    db.session.add(
        SandboxFacebookToken(
            token_hash=token_hash(token),
            user=user,
            page=page,
            kind=kind,
            issued_at=now,
            expires_at=expires_at,
            password_version=user.password_version,
            scopes=user.granted_scopes,
        )
    )
    return token


def _token_reply(token: str, lifetime: timedelta) -> SandboxReply:
    return SandboxReply(
        200, {"access_token": token, "token_type": "bearer", "expires_in": int(lifetime.total_seconds())}
    )


def _check_app(args: dict, app_id: str, app_secret: str) -> SandboxReply | None:
    if args.get("client_id") != app_id:
        return graph_error(101, "Error validating application. Invalid application ID.")
    if args.get("client_secret") != app_secret:
        return graph_error(1, "Error validating client secret.")
    return None


def access_token(args: dict, app_id: str, app_secret: str, now: datetime) -> SandboxReply:
    """/oauth/access_token: the code exchange [MF] or, with grant_type=fb_exchange_token, a long-lived token [LL]."""
    refused = _check_app(args, app_id, app_secret)
    if refused:
        return refused
    if args.get("grant_type") == "fb_exchange_token":
        row, error = check_token(args.get("fb_exchange_token"), app_id, now, pages_allowed=False)
        if error:
            return error
        token = _mint(row.user, "long", now, expires_at=now + LONG_LIVED_TOKEN_LIFETIME)
        db.session.commit()
        return _token_reply(token, LONG_LIVED_TOKEN_LIFETIME)
    code = db.session.get(SandboxFacebookCode, args.get("code") or "")
    if code is None:
        return graph_error(100, "Invalid verification code format.")
    if code.used_at is not None:
        return graph_error(100, "This authorization code has been used.")  # php-graph-sdk#1254
    if now - code.created_at > CODE_LIFETIME:
        return graph_error(100, "This authorization code has expired.")
    if args.get("redirect_uri") != code.redirect_uri:
        return graph_error(
            100,
            "Error validating verification code. Please make sure your redirect_uri is identical to the one you "
            "used in the OAuth dialog request",
        )
    code.used_at = now
    token = _mint(code.user, "short", now, expires_at=now + SHORT_LIVED)
    db.session.commit()
    return _token_reply(token, SHORT_LIVED)


def appsecret_proof(token: str, app_secret: str) -> str:
    return hmac.new(app_secret.encode(), token.encode(), hashlib.sha256).hexdigest()


def proof_refused(args: dict, app_secret: str) -> SandboxReply | None:
    """An appsecret_proof, when sent, must be HMAC-SHA256(app secret, token) (python-business-sdk#528)."""
    sent = args.get("appsecret_proof")
    if sent is None:
        return None
    if hmac.compare_digest(sent, appsecret_proof(args.get("access_token") or "", app_secret)):
        return None
    return graph_error(100, "Invalid appsecret_proof provided in the API argument", error_type="GraphMethodException")


def _find(token: str | None) -> SandboxFacebookToken | None:
    return db.session.get(SandboxFacebookToken, token_hash(token)) if token else None


def token_problem(row: SandboxFacebookToken, app_id: str, now: datetime) -> SandboxReply | None:
    """Why Meta would refuse this token now, in Meta's words [ERR], or None."""
    user = row.user
    if not user.app_authorized:
        return graph_error(
            190, f"Error validating access token: The user has not authorized application {app_id}.", 458
        )
    if user.checkpointed:
        return graph_error(
            190,
            "Error validating access token: You cannot access the app till you log in to www.facebook.com and "
            "follow the instructions given.",
            459,
        )
    if row.password_version != user.password_version:
        return graph_error(  # stevenschobert/instafeed.js#747
            190,
            "Error validating access token: The session has been invalidated because the user changed their "
            "password or Facebook has changed the session for security reasons.",
            460,
        )
    if row.expires_at is not None and row.expires_at <= now:
        return graph_error(
            190,
            f"Error validating access token: Session has expired on {row.expires_at:%A, %d-%b-%y %H:%M:%S} UTC. "
            f"The current time is {now:%A, %d-%b-%y %H:%M:%S} UTC.",
            463,
        )
    if user.data_access_expires_at is not None and user.data_access_expires_at <= now:
        return graph_error(  # MrSwitch/hello.js#548
            190, "The access token is invalid since the user hasn't engaged the app in longer than 90 days.", 493
        )
    page = row.page
    if page is not None:
        if page.deleted or not page.published:
            return graph_error(190, PAGE_NOT_ACCESSIBLE)
        if not page.task_list:
            return graph_error(190, PAGE_ROLE_GONE)
    return None


def check_token(token: str | None, app_id: str, now: datetime, *, pages_allowed: bool = True):
    """Return (row, None) for a usable token, or (row, error reply)."""
    row = _find(token)
    if row is None or (row.kind == "page" and not pages_allowed):
        return row, graph_error(190, "Invalid OAuth access token - Cannot parse access token")
    return row, token_problem(row, app_id, now)


def _fields(raw: str | None, default: tuple[str, ...]) -> dict[str, list[str]]:
    """Graph's `fields`, with one level of expansion: `a,b{c,d}` -> {"a": [], "b": ["c", "d"]}."""
    if not raw:
        return {name: [] for name in default}
    parsed: dict[str, list[str]] = {}
    for match in re.finditer(r"([a-z_]+)(?:\{([^}]*)\})?", raw):
        parsed[match.group(1)] = [f.strip() for f in (match.group(2) or "").split(",") if f.strip()]
    return parsed


def _nonexisting_field(name: str, node_type: str) -> SandboxReply:
    return graph_error(100, f"(#100) Tried accessing nonexisting field ({name}) on node type ({node_type})")


def _reachable_pages(row: SandboxFacebookToken) -> list[SandboxFacebookPage]:
    """The Pages this token may read: the Page of a Page token, or those granted to the app and still held."""
    if row.page is not None:
        return [row.page]
    granted = set(row.user.granted_pages)
    return [p for p in row.user.pages if p.page_id in granted and not p.deleted and p.task_list]


def _instagram(page: SandboxFacebookPage, wanted: list[str]) -> dict | None:
    linked = page.linked_instagram
    if linked is None:
        return None
    return {name: linked[name] for name in (wanted or ["id"]) if name in linked} | {"id": linked["id"]}


def _page_body(page: SandboxFacebookPage, fields: dict[str, list[str]], token: str | None) -> dict:
    values = {
        "id": page.page_id,
        "name": page.name,
        "category": "Shopping & retail",
        "access_token": token,
        "tasks": page.task_list,
        "instagram_business_account": _instagram(page, fields.get("instagram_business_account", [])),
        "is_published": page.published,
    }
    body = {name: values[name] for name in fields if values.get(name) is not None}
    body["id"] = page.page_id  # Graph always answers with the node's id
    return body


def me(args: dict, app_id: str, now: datetime) -> SandboxReply:
    row, error = check_token(args.get("access_token"), app_id, now)
    if error:
        return error
    if row.page is not None:  # with a Page token, /me is the Page
        return SandboxReply(200, {"id": row.page.page_id, "name": row.page.name})
    fields = _fields(args.get("fields"), ("id", "name"))
    unknown = [name for name in fields if name not in ("id", "name")]
    if unknown:
        return _nonexisting_field(unknown[0], "User")
    return SandboxReply(200, {"id": row.user.facebook_user_id, "name": row.user.name})


def _cursor(page: SandboxFacebookPage) -> str:
    return base64.b64encode(page.page_id.encode()).decode()


def me_accounts(args: dict, app_id: str, now: datetime, base_url: str) -> SandboxReply:
    """The Pages the user granted and still has a role on, each with a Page token and the user's tasks [PT]."""
    row, error = check_token(args.get("access_token"), app_id, now)
    if error:
        return error
    if row.page is not None:
        return _nonexisting_field("accounts", "Page")
    fields = _fields(args.get("fields"), ACCOUNTS_DEFAULT_FIELDS)
    unknown = [name for name in fields if name not in PAGE_FIELDS]
    if unknown:
        return _nonexisting_field(unknown[0], "Page")
    pages = _reachable_pages(row)
    after = args.get("after")
    if after:
        ids = [_cursor(p) for p in pages]
        pages = pages[ids.index(after) + 1 :] if after in ids else []
    limit = min(max(int(args["limit"]) if str(args.get("limit", "")).isdigit() else PAGE_LIMIT, 1), 100)
    shown, more = pages[:limit], len(pages) > limit
    # A Page token minted from a long-lived user token has no expiry date; from a short-lived one, an hour [PT].
    page_expiry = None if row.kind == "long" else row.expires_at
    data = []
    for page in shown:
        token = _mint(row.user, "page", now, page=page, expires_at=page_expiry) if "access_token" in fields else None
        data.append(_page_body(page, fields, token))
    db.session.commit()
    body: dict = {"data": data}
    if shown:
        body["paging"] = {"cursors": {"before": _cursor(shown[0]), "after": _cursor(shown[-1])}}
        if more:
            body["paging"]["next"] = f"{base_url}/me/accounts?limit={limit}&after={_cursor(shown[-1])}"
    return SandboxReply(200, body)


def node(node_id: str, args: dict, app_id: str, now: datetime) -> SandboxReply:
    """/{page-id} [PAGE] or /{ig-user-id}, as far as this token may see them."""
    row, error = check_token(args.get("access_token"), app_id, now)
    if error:
        return error
    reachable = _reachable_pages(row)
    page = next((p for p in reachable if p.page_id == node_id and p.published), None)
    if page is not None:
        fields = _fields(args.get("fields"), ("id", "name"))
        unknown = [name for name in fields if name not in PAGE_FIELDS - {"access_token"}]
        if unknown:
            return _nonexisting_field(unknown[0], "Page")
        if not ACTING_TASKS & set(page.task_list):
            return graph_error(200, PAGE_TASKS_TOO_LOW)
        return SandboxReply(200, _page_body(page, fields, None))
    linked = next((p for p in reachable if p.published and (p.linked_instagram or {}).get("id") == node_id), None)
    if linked is not None:
        fields = _fields(args.get("fields"), ("id",))
        unknown = [name for name in fields if name not in INSTAGRAM_FIELDS]
        if unknown:
            return _nonexisting_field(unknown[0], "IGUser")
        values = {"id": node_id, "username": linked.instagram_username, "name": linked.name}
        return SandboxReply(200, {name: values[name] for name in fields} | {"id": node_id})
    return _unsupported_get(node_id)


def debug_token(args: dict, app_id: str, app_secret: str, now: datetime) -> SandboxReply:
    """/debug_token with the app token [DBG]: validity, expiry (0: none), data access, scopes and target ids."""
    if args.get("access_token") != f"{app_id}|{app_secret}":
        return graph_error(100, DEBUG_CALLER_REFUSED)
    row = _find(args.get("input_token"))
    if row is None:
        return SandboxReply(
            200,
            {
                "data": {
                    "error": {"code": 190, "message": "Invalid OAuth access token - Cannot parse access token"},
                    "is_valid": False,
                    "scopes": [],
                }
            },
        )
    user = row.user
    granted = [p for p in user.pages if p.page_id in user.granted_pages and not p.deleted]
    targets = {
        "instagram_basic": [p.linked_instagram["id"] for p in granted if p.linked_instagram],
        **{scope: [p.page_id for p in granted] for scope in ("pages_show_list", "pages_read_engagement")},
        "business_management": [p.page_id for p in granted],
    }
    scopes = [s for s in row.scopes.split(",") if s]
    data: dict = {
        "app_id": app_id,
        "type": "PAGE" if row.page is not None else "USER",
        "application": APP_NAME,
        "data_access_expires_at": int(user.data_access_expires_at.timestamp()) if user.data_access_expires_at else 0,
        "expires_at": int(row.expires_at.timestamp()) if row.expires_at else 0,
        "is_valid": True,
        "issued_at": int(row.issued_at.timestamp()),
        "scopes": scopes,
        "granular_scopes": [
            {"scope": scope, "target_ids": targets[scope]} if scope in targets else {"scope": scope} for scope in scopes
        ],
        "user_id": user.facebook_user_id,
    }
    if row.page is not None:
        data["profile_id"] = row.page.page_id
    problem = token_problem(row, app_id, now)
    if problem is not None:
        # An invalid token keeps its metadata and says why (the shape third-party typed models read [DT-RS]).
        error = problem.body["error"]
        data["is_valid"] = False
        data["error"] = {"code": error["code"], "message": error["message"]}
        if "error_subcode" in error:
            data["error"]["subcode"] = error["error_subcode"]
    return SandboxReply(200, {"data": data})


# The control panel's buttons. Each names the cause (DESIGN's taxonomy) and what the next call answers.
USER_ACTIONS = {
    "change_password": ("Change the Facebook password", "password_changed", "190/460"),
    "checkpoint": ("Put the user in a checkpoint", "account_checkpoint", "190/459"),
    "remove_app": ("Remove the app (sends a signed deauthorize)", "app_removed", "190/458"),
    "expire_data_access": ("Let data access lapse (90 days)", "data_access_expired", "190/493"),
    "near_data_access_end": ("Bring data access's end near (5 days left)", None, ""),
    "reset": ("Clear every problem", None, ""),
}
PAGE_ACTIONS = {
    "lower_tasks": ("Lower the role to Analyst (ANALYZE only)", "permissions_changed", "(#200) on the Page"),
    "remove_role": (
        "Remove the user's role on the Page",
        "permissions_changed",
        "190, Page token; gone from /me/accounts",
    ),
    "unlink_instagram": ("Unlink Instagram from the Page", "page_unlinked", "no instagram_business_account"),
    "link_instagram": ("Link an Instagram account to the Page", None, ""),
    "unpublish": ("Unpublish the Page", "page_unlinked", "(#100)/33 on the Page; 190 on its token"),
    "delete": ("Delete the Page", "page_unlinked", "(#100)/33; gone from /me/accounts"),
}


def apply_user_action(user: SandboxFacebookUser, action: str, now: datetime) -> str:
    """Change the user as the button says; return a sentence describing the result."""
    if action == "change_password":
        user.password_version += 1
        result = "Password changed: every token issued before now is invalid (190/460)."
    elif action == "checkpoint":
        user.checkpointed = True
        result = "Checkpointed (190/459) until you clear it."
    elif action == "remove_app":
        user.app_authorized = False
        result = "App removed: every token is invalid (190/458)."
    elif action == "expire_data_access":
        user.data_access_expires_at = now - timedelta(days=1)
        result = "Data access lapsed: data_access_expires_at is in the past; calls answer 190/493."
    elif action == "near_data_access_end":
        user.data_access_expires_at = now + timedelta(days=5)
        result = "Data access now ends in 5 days: the dashboard asks the merchant to renew access."
    elif action == "reset":
        user.checkpointed = False
        if user.data_access_expires_at is not None:
            user.data_access_expires_at = now + DATA_ACCESS_WINDOW
        for page in user.pages:
            page.tasks = ",".join(FULL_PAGE_TASKS)
            page.published, page.deleted = True, False
            page.instagram_linked = page.instagram_account_id is not None
        result = "Every problem cleared (a password change or a removed app stays: reconnect for a fresh token)."
    else:
        raise ValueError(f"unknown sandbox action {action!r}")
    db.session.commit()
    return result


def apply_page_action(page: SandboxFacebookPage, action: str) -> str:
    if action == "lower_tasks":
        page.tasks = "ANALYZE"
        result = f"{page.name}: the user is now an Analyst (tasks ANALYZE); Page reads answer (#200)."
    elif action == "remove_role":
        page.tasks = ""
        result = f"{page.name}: the user has no role; its Page token answers 190 and /me/accounts leaves it out."
    elif action == "link_instagram":
        if page.instagram_account_id is None:
            page.instagram_account_id = _number("17841", 17)
            page.instagram_username = _slug(page.name)
        page.instagram_linked = True
        result = f"{page.name}: linked to the Instagram Business account @{page.instagram_username}."
    elif action == "unlink_instagram":
        page.instagram_linked = False
        result = f"{page.name}: Instagram unlinked; the Page answers without instagram_business_account."
    elif action == "unpublish":
        page.published = False
        result = f"{page.name}: unpublished; the Page answers (#100) subcode 33 and its token 190."
    elif action == "delete":
        page.deleted = True
        result = f"{page.name}: deleted; the Page answers (#100) subcode 33 and is gone from /me/accounts."
    else:
        raise ValueError(f"unknown sandbox action {action!r}")
    db.session.commit()
    return result


@fenced_write
def nudge_connections(now: datetime, *, user: SandboxFacebookUser | None = None, page=None) -> int:
    """Make the dashboard check, at its next worker cycle, the connections a button just broke (sandbox only).

    A user's button reaches every connection that Facebook user made; a Page's button, those on that Page.
    """
    if user is not None:
        linked_by = InstagramConnection.facebook_user_id == user.facebook_user_id
    elif page is not None:
        linked_by = InstagramConnection.facebook_page_id == page.page_id
    else:
        raise ValueError("nudge a user's or a Page's connections")
    return nudge_matching(linked_by, now)
