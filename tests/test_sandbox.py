"""The sandbox exercised through the real Meta client over real HTTP (the server `make run` starts)."""

from __future__ import annotations

import itertools
import logging
import re
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
import requests

from testbed.client import csrf_token_from
from webapp.services.meta.client import AccountNotProfessional, InstagramClient, MetaApiError

pytestmark = pytest.mark.slow
_names = itertools.count(1)


class SandboxUser:
    """A tester in the sandbox: authorises the app, pushes the cause buttons."""

    def __init__(self, base_url: str):
        self.base_url = base_url
        self.http = requests.Session()
        self.redirect_uri = f"{base_url}/instagram/callback"
        self.client = InstagramClient(
            client_id="sandbox-app-id",
            client_secret="sandbox-app-secret",
            api_base=f"{base_url}/sandbox",
            graph_base=f"{base_url}/sandbox/graph",
            timeout=5,
        )

    def authorize(self, username: str) -> str:
        query = urlencode(
            {
                "client_id": "sandbox-app-id",
                "redirect_uri": self.redirect_uri,
                "response_type": "code",
                "scope": "instagram_business_basic",
                "state": "s1",
            }
        )
        url = f"{self.base_url}/sandbox/oauth/authorize?{query}"
        token = csrf_token_from(self.http.get(url).text)
        response = self.http.post(
            url, data={"csrf_token": token, "new_username": username, "decision": "allow"}, allow_redirects=False
        )
        location = response.headers["Location"]
        assert location.endswith("#_") and location.startswith(self.redirect_uri)
        query = parse_qs(urlsplit(location).query)
        assert query["state"] == ["s1"]
        return query["code"][0]

    def long_lived_token(self, username: str) -> str:
        code = self.authorize(username)
        short = self.client.exchange_code(code, self.redirect_uri)
        return self.client.exchange_for_long_lived(short.access_token).access_token

    def press(self, username: str, action: str, **form) -> str:
        panel = self.http.get(f"{self.base_url}/sandbox/").text
        account_id = re.search(rf'id="sandbox-account-(\d+)">\s*<header>\s*<h2>@{username}</h2>', panel).group(1)
        response = self.http.post(
            f"{self.base_url}/sandbox/accounts/{account_id}/{action}",
            data={"csrf_token": csrf_token_from(panel), **form},
        )
        assert response.status_code == 200
        return response.text


@pytest.fixture
def tester(live_dashboard):
    return SandboxUser(live_dashboard)


def fresh_name() -> str:
    return f"tester_{next(_names)}"


def test_connect_flow_speaks_metas_shapes(tester):
    name = fresh_name()
    code = tester.authorize(name)
    short = tester.client.exchange_code(code + "#_", tester.redirect_uri)
    assert short.access_token.startswith("IGQV") and short.permissions == ("instagram_business_basic",)
    long = tester.client.exchange_for_long_lived(short.access_token)
    assert long.expires_in == 60 * 24 * 3600 and long.token_type == "bearer"
    profile = tester.client.me(long.access_token)
    assert profile.username == name and profile.account_type == "BUSINESS"
    # Three different numbers for one account, as Meta gives them (issue 14, part 5).
    assert profile.scoped_id is not None and len({profile.user_id, profile.scoped_id, short.user_id}) == 3
    with pytest.raises(MetaApiError) as caught:
        tester.client.exchange_code(code, tester.redirect_uri)
    assert caught.value.message == "Matching code was not found or was already used"
    assert (caught.value.code, caught.value.type) == (400, "OAuthException")


@pytest.mark.parametrize(
    "action,form,code,subcode,http_status",
    [
        ("change_password", {}, 190, 460, 400),
        ("remove_app", {}, 190, 458, 400),
        ("checkpoint", {}, 190, 459, 400),
        ("log_out_everywhere", {}, 190, 467, 400),
        ("remove_permission", {}, 10, None, 400),
        ("expire_data_access", {}, 190, 493, 400),
        ("rate_limit", {}, 80002, None, 400),  # one account's limit (Business Use Case), not the app's
        ("outage", {}, 2, None, 500),
        ("age_token", {"days": "61"}, 190, 463, 400),
    ],
)
def test_each_cause_button_makes_meta_answer_as_meta_does(tester, action, form, code, subcode, http_status):
    name = fresh_name()
    token = tester.long_lived_token(name)
    tester.client.me(token)
    tester.press(name, action, **form)
    with pytest.raises(MetaApiError) as caught:
        tester.client.me(token)
    error = caught.value
    assert (error.code, error.subcode, error.http_status) == (code, subcode, http_status)
    assert error.fbtrace_id
    if action == "rate_limit":
        assert error.is_transient is True and error.usage.highest_percent == 100
        assert error.usage.business and not error.usage.app  # X-Business-Use-Case-Usage, not X-App-Usage
        assert error.usage.regain_access_minutes == 20
    if action == "outage":
        assert error.is_transient is True


def test_switching_to_a_personal_account_shows_in_account_type(tester):
    name = fresh_name()
    token = tester.long_lived_token(name)
    tester.press(name, "switch_to_personal")
    with pytest.raises(AccountNotProfessional) as caught:
        tester.client.me(token)
    assert caught.value.account_type == "PERSONAL"
    tester.press(name, "reset")
    assert tester.client.me(token).account_type == "BUSINESS"


def test_the_sandbox_refuses_a_field_graph_does_not_have(tester):
    """Issue 14, part 7: the client drops a refused optional field and asks again with user_id,username."""
    token = tester.long_lived_token(fresh_name())
    response = requests.get(
        f"{tester.base_url}/sandbox/graph/v23.0/me",
        params={"fields": "user_id,ig_id", "access_token": token},
        timeout=5,
    )
    assert response.status_code == 400
    assert response.json()["error"]["message"].startswith("(#100) Tried accessing nonexisting field (ig_id)")


def test_refresh_follows_the_24_hour_and_expiry_rules(tester):
    name = fresh_name()
    token = tester.long_lived_token(name)
    with pytest.raises(MetaApiError) as too_young:
        tester.client.refresh(token)
    assert too_young.value.code == 100
    tester.press(name, "age_token", days="2")
    refreshed = tester.client.refresh(token)
    assert refreshed.access_token != token and refreshed.expires_in == 60 * 24 * 3600
    assert tester.client.me(refreshed.access_token).username == name
    tester.press(name, "age_token", days="70")
    with pytest.raises(MetaApiError) as expired:
        tester.client.refresh(refreshed.access_token)
    assert (expired.value.code, expired.value.subcode) == (190, 463)


def test_wrong_client_id_is_refused_like_meta(tester):
    response = tester.http.get(
        f"{tester.base_url}/sandbox/oauth/authorize?client_id=fb-app&redirect_uri={tester.redirect_uri}&response_type=code&scope=instagram_business_basic"
    )
    assert response.status_code == 400 and "Invalid platform app" in response.text


def test_no_token_in_http_debug_logs(tester, caplog):
    """Promise 15: urllib3 logs each URL at DEBUG and Instagram puts the token in the query string."""
    caplog.set_level(logging.DEBUG)
    logging.getLogger("urllib3").setLevel(logging.DEBUG)
    from webapp.logging_filters import install_redaction

    install_redaction()
    name = fresh_name()
    code = tester.authorize(name)
    short = tester.client.exchange_code(code, tester.redirect_uri)
    long = tester.client.exchange_for_long_lived(short.access_token)
    tester.client.me(long.access_token)
    urls = [r.getMessage() for r in caplog.records if r.name.startswith("urllib3")]
    assert any("/sandbox/graph/access_token" in line for line in urls)
    for secret in (code, short.access_token, long.access_token, "sandbox-app-secret"):
        assert secret not in caplog.text


def test_a_typed_username_wins_over_the_account_picked_above(tester):
    """The consent page picks the first account by default; a name the tester typed is still the one used."""
    existing, typed = fresh_name(), fresh_name()
    tester.long_lived_token(existing)
    query = urlencode(
        {
            "client_id": "sandbox-app-id",
            "redirect_uri": tester.redirect_uri,
            "response_type": "code",
            "scope": "instagram_business_basic",
            "state": "s1",
        }
    )
    url = f"{tester.base_url}/sandbox/oauth/authorize?{query}"
    page = tester.http.get(url).text
    assert "A name typed here is used instead of the account picked above." in page
    first_id = re.search(r'name="account_id" value="(\d+)" checked', page).group(1)
    response = tester.http.post(
        url,
        data={"csrf_token": csrf_token_from(page), "account_id": first_id, "new_username": typed, "decision": "allow"},
        allow_redirects=False,
    )
    code = parse_qs(urlsplit(response.headers["Location"]).query)["code"][0]
    short = tester.client.exchange_code(code, tester.redirect_uri)
    assert tester.client.me(short.access_token).username == typed
