"""Meta at its real URLs (requests-mock) and the connect flow as a browser would drive it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import parse_qs, urlsplit

API = "https://api.instagram.com"
GRAPH = "https://graph.instagram.com"


@dataclass
class FakeInstagram:
    """Registers Meta's endpoints on requests-mock for one Instagram account."""

    requests_mock: object
    # Three different numbers for one account, as Meta gives them: /me's user_id (the account's own),
    # /me's id (app-scoped) and the code exchange's user_id.
    user_id: str = "17841400000000001"
    scoped_id: str | None = "9170000000000001"
    login_user_id: str = "2710000000000001"
    username: str | None = "bloom_and_stem"
    name: str | None = "Bloom & Stem"
    picture: str | None = "https://scontent.cdninstagram.com/bloom.jpg"
    account_type: str | None = "BUSINESS"
    permissions: str = "instagram_business_basic"
    long_token: str = "IGAAlong-lived-token-0001"
    short_token: str = "IGQVshort-lived-token-0001"
    exchanged_codes: list = field(default_factory=list)
    # Called as each of Meta's endpoints answers (a test watching what the app does meanwhile).
    on_call: Callable[[], None] = lambda: None

    def install(self) -> FakeInstagram:
        self.requests_mock.post(f"{API}/oauth/access_token", json=self._code_exchange)
        long_lived = {"access_token": self.long_token, "token_type": "bearer", "expires_in": 5183944}
        self.requests_mock.get(f"{GRAPH}/access_token", json=self._answer(long_lived))
        profile = {
            "id": self.scoped_id,
            "user_id": self.user_id,
            "username": self.username,
            "name": self.name,
            "profile_picture_url": self.picture,
            "account_type": self.account_type,
        }
        body = {k: v for k, v in profile.items() if v is not None}
        self.requests_mock.get(f"{GRAPH}/v23.0/me", json=self._answer(body))
        return self

    def _answer(self, body: dict):
        def answer(request, context):
            self.on_call()
            return body

        return answer

    def _code_exchange(self, request, context):
        self.on_call()
        form = parse_qs(request.text)
        self.exchanged_codes.append((form["code"][0], form["redirect_uri"][0]))
        grant = {"access_token": self.short_token, "user_id": self.login_user_id, "permissions": self.permissions}
        return {"data": [grant]}


def start_connect(client, csrf_token: str):
    """POST the connect button; return (response, state, authorize query)."""
    response = client.post("/instagram/connect", data={"csrf_token": csrf_token})
    query = parse_qs(urlsplit(response.headers.get("Location", "")).query)
    return response, query.get("state", [None])[0], query


def connect(client, auth, code: str = "code-123"):
    """Run the whole flow: start, then Instagram redirects back with code and state."""
    _, state, _ = start_connect(client, auth.csrf_token("/"))
    return client.get(f"/instagram/callback?code={code}&state={state}")
