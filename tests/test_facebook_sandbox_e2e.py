"""The app's Facebook client against the running sandbox: the two halves of Facebook Login speak the same Meta.

The sandbox's tests check its answers through the test client, the client's tests check its calls
against recorded shapes; here the client makes real HTTP calls to a running dashboard's sandbox,
and what the sandbox's cause buttons do reaches the classifier as the cause the button names.
"""

from __future__ import annotations

import itertools
import re
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
import requests

from testbed.client import csrf_token_from
from webapp.config import SANDBOX_FACEBOOK_APP_ID, SANDBOX_FACEBOOK_APP_SECRET
from webapp.services.meta.classifier import classify_error
from webapp.services.meta.client import MetaApiError
from webapp.services.meta.facebook import FacebookClient

pytestmark = pytest.mark.slow
APP_ID, APP_SECRET = SANDBOX_FACEBOOK_APP_ID, SANDBOX_FACEBOOK_APP_SECRET  # the app the sandbox plays
_names = itertools.count(1)


class FacebookTester:
    """A tester in the sandbox's Facebook dialog and panel, with the app's own Facebook client."""

    def __init__(self, base_url: str):
        self.base_url = base_url
        self.http = requests.Session()
        self.redirect_uri = f"{base_url}/facebook/callback"
        self.client = FacebookClient(
            app_id=APP_ID, app_secret=APP_SECRET, graph_base=f"{base_url}/sandbox/facebook/graph", timeout=5
        )

    def authorize(self, name: str) -> str:
        query = urlencode({"client_id": APP_ID, "redirect_uri": self.redirect_uri, "state": "s1"})
        url = f"{self.base_url}/sandbox/facebook/v23.0/dialog/oauth?{query}"
        token = csrf_token_from(self.http.get(url).text)
        response = self.http.post(
            url, data={"csrf_token": token, "new_name": name, "decision": "allow"}, allow_redirects=False
        )
        query_of_reply = parse_qs(urlsplit(response.headers["Location"]).query)
        assert query_of_reply["state"] == ["s1"]
        return query_of_reply["code"][0]

    def press(self, name: str, action: str) -> None:
        panel = self.http.get(f"{self.base_url}/sandbox/facebook/").text
        article = next(part for part in panel.split("<article")[1:] if name in part)
        path = re.search(rf'action="(/sandbox/facebook/users/\d+/{action})"', article).group(1)
        response = self.http.post(f"{self.base_url}{path}", data={"csrf_token": csrf_token_from(panel)})
        assert response.status_code == 200


@pytest.fixture
def tester(live_dashboard):
    return FacebookTester(live_dashboard)


def test_the_client_connects_through_the_sandbox_and_reads_pages_and_debug_token(tester):
    name = f"E2E Merchant {next(_names)}"
    short = tester.client.exchange_code(tester.authorize(name), tester.redirect_uri)
    user_token = tester.client.long_lived_user_token(short.access_token).access_token
    pages = tester.client.pages(user_token)  # every call carries appsecret_proof: the sandbox checks it
    assert len(pages) == 2 and sum(page.has_instagram for page in pages) == 1
    linked = next(page for page in pages if page.has_instagram)
    assert linked.access_token and linked.tasks and linked.instagram_username
    page_token = tester.client.debug_token(linked.access_token)
    assert page_token.is_valid and page_token.expires_at is None  # a Page token from a long-lived token has no end
    assert page_token.data_access_expires_at is not None


@pytest.mark.parametrize(
    "action, cause",
    [("change_password", "password_changed"), ("checkpoint", "account_checkpoint"), ("remove_app", "app_removed")],
)
def test_each_user_button_reaches_the_classifier_as_the_cause_it_names(tester, action, cause):
    name = f"E2E Merchant {next(_names)}"
    short = tester.client.exchange_code(tester.authorize(name), tester.redirect_uri)
    user_token = tester.client.long_lived_user_token(short.access_token).access_token
    tester.press(name, action)
    with pytest.raises(MetaApiError) as raised:
        tester.client.pages(user_token)
    assert classify_error(raised.value).cause == cause
    assert user_token not in str(raised.value)
