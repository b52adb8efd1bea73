"""Facebook's Graph API at its real URLs (requests-mock) and Facebook Login driven as a browser would."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from urllib.parse import parse_qs, urlsplit

GRAPH = "https://graph.facebook.com/v23.0"
FACEBOOK_USER_ID = "10229000000000042"
TEA_HOUSE_IG = "17841400000000777"
# Recognisable fakes: a test greps every page, flash and log line for them.
SHORT_USER_TOKEN = "EAAGshortUSERsecret0001"  # noqa: S105
LONG_USER_TOKEN = "EAAGlongUSERsecret0002"  # noqa: S105
ADMIN_TASKS = ["ANALYZE", "ADVERTISE", "MODERATE", "CREATE_CONTENT", "MANAGE"]
SCOPES = ["instagram_basic", "pages_show_list", "pages_read_engagement", "business_management", "public_profile"]


def fake_page(
    page_id: str,
    name: str,
    *,
    instagram_id: str | None = None,
    username: str | None = None,
    tasks: list[str] | None = None,
    token: str | None = None,
) -> dict:
    """One entry of /me/accounts as Meta sends it (https://developers.facebook.com/docs/graph-api/reference/user/accounts/)."""
    entry: dict = {
        "id": page_id,
        "name": name,
        "access_token": token if token is not None else f"EAAGpageSECRET{page_id}",
        "tasks": ADMIN_TASKS if tasks is None else tasks,
    }
    if instagram_id:
        entry["instagram_business_account"] = {"id": instagram_id, "username": username}
    return entry


TEA_HOUSE = fake_page("104000000000001", "Tea House", instagram_id=TEA_HOUSE_IG, username="tea_house")
TEA_HOUSE_OUTLET = fake_page("104000000000002", "Tea House Outlet")


@dataclass
class FakeFacebook:
    """Registers Facebook Login's Graph endpoints on requests-mock for one Facebook user and their Pages."""

    requests_mock: object
    now: datetime
    pages: list[dict] = field(default_factory=lambda: [TEA_HOUSE, TEA_HOUSE_OUTLET])
    user_id: str = FACEBOOK_USER_ID
    scopes: list[str] = field(default_factory=lambda: list(SCOPES))
    # debug_token's answer for a Page token: valid, no end date of its own, 90 days of data access.
    page_expires_at: int = 0
    data_access_days: int = 90
    page_token_valid: bool = True
    page_token_error: dict | None = None
    exchanged_codes: list = field(default_factory=list)
    debugged: list = field(default_factory=list)
    on_call: Callable[[], None] = lambda: None

    def install(self) -> FakeFacebook:
        self.requests_mock.get(f"{GRAPH}/oauth/access_token", json=self._access_token)
        self.requests_mock.get(f"{GRAPH}/debug_token", json=self._debug_token)
        self.requests_mock.get(f"{GRAPH}/me/accounts", json=self._accounts)
        return self

    @property
    def data_access_expires_at(self) -> datetime:
        return datetime.fromtimestamp(
            int((self.now + timedelta(days=self.data_access_days)).timestamp()), self.now.tzinfo
        )

    def page_token(self, page: dict) -> str:
        return page["access_token"]

    def _access_token(self, request, context):
        self.on_call()
        query = _query(request)
        if query.get("grant_type") == "fb_exchange_token":
            assert query["fb_exchange_token"] == SHORT_USER_TOKEN
            return {"access_token": LONG_USER_TOKEN, "token_type": "bearer", "expires_in": 5183944}
        self.exchanged_codes.append((query["code"], query["redirect_uri"]))
        return {"access_token": SHORT_USER_TOKEN, "token_type": "bearer", "expires_in": 5400}

    def _debug_token(self, request, context):
        self.on_call()
        token = _query(request)["input_token"]
        self.debugged.append(token)
        data_access = int(self.data_access_expires_at.timestamp())
        if token == LONG_USER_TOKEN:
            data = {
                "type": "USER",
                "is_valid": True,
                "expires_at": int((self.now + timedelta(days=60)).timestamp()),
                "data_access_expires_at": data_access,
            }
        else:
            page = next(page for page in self.pages if page["access_token"] == token)
            data = {
                "type": "PAGE",
                "is_valid": self.page_token_valid,
                "expires_at": self.page_expires_at,
                "data_access_expires_at": data_access,
                "profile_id": page["id"],
            }
            if self.page_token_error:
                data["error"] = self.page_token_error
        granted = [page["id"] for page in self.pages]
        return {
            "data": {
                "app_id": "551100223344",
                "application": "Shop Instagram Health",
                "user_id": self.user_id,
                "scopes": self.scopes,
                "granular_scopes": [{"scope": "pages_show_list", "target_ids": granted}],
                **data,
            }
        }

    def _accounts(self, request, context):
        self.on_call()
        return {"data": self.pages, "paging": {"cursors": {"before": "QVFIb", "after": "QVFIa"}}}


def _query(request) -> dict[str, str]:
    return {name: values[0] for name, values in parse_qs(urlsplit(request.url).query).items()}


def start_facebook_connect(client, csrf_token: str, **form: str):
    """POST the Facebook connect button; return (response, state, dialog query)."""
    response = client.post("/facebook/connect", data={"csrf_token": csrf_token, **form})
    query = parse_qs(urlsplit(response.headers.get("Location", "")).query)
    return response, query.get("state", [None])[0], query


def facebook_connect(client, auth, code: str = "AQfb-code-123"):
    """Run the login: start, then Facebook redirects back with code and state (its "#_=_" stays in the browser)."""
    _, state, _ = start_facebook_connect(client, auth.csrf_token("/"))
    return client.get(f"/facebook/callback?code={code}&state={state}")
