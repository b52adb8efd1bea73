"""The worker's HTTP session: the environment read once per host, the deadline watchdog idle between deadlines."""

from __future__ import annotations

import threading
import time

import pytest
import requests

from testbed.meta_stub import MetaStub
from webapp.services.meta import http_deadline
from webapp.services.meta.http_deadline import deadline_session

GRAPH_ME = "https://graph.instagram.com/v23.0/me?access_token=IGAAsecret"


@pytest.fixture
def environment(monkeypatch):
    for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    for name in ("NO_PROXY", "no_proxy", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def settings_for(session: requests.Session, url: str, proxies: dict | None = None) -> dict:
    return session.merge_environment_settings(url, proxies if proxies is not None else {}, None, None, None)


def test_the_environment_proxy_is_still_used(environment):
    """An operator's HTTPS_PROXY reaches Meta's calls, as with a plain requests session."""
    environment.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    settings = settings_for(deadline_session(5), GRAPH_ME)
    assert settings["proxies"]["https"] == "http://proxy.example:3128"
    assert settings == requests.Session().merge_environment_settings(GRAPH_ME, {}, None, None, None)


def test_no_proxy_still_bypasses_the_proxy(environment):
    environment.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    environment.setenv("NO_PROXY", "graph.instagram.com")
    assert "https" not in settings_for(deadline_session(5), GRAPH_ME)["proxies"]


def test_the_ca_bundle_from_the_environment_is_still_used(environment, tmp_path):
    bundle = tmp_path / "ca.pem"
    bundle.write_text("")
    environment.setenv("REQUESTS_CA_BUNDLE", str(bundle))
    assert settings_for(deadline_session(5), GRAPH_ME)["verify"] == str(bundle)


def test_the_environment_is_read_once_per_host(environment):
    """Later calls to the same host reuse what the first one read; another host reads afresh."""
    session = deadline_session(5)
    environment.setenv("HTTPS_PROXY", "http://first.example:3128")
    assert settings_for(session, GRAPH_ME)["proxies"]["https"] == "http://first.example:3128"
    environment.setenv("HTTPS_PROXY", "http://second.example:3128")
    assert settings_for(session, GRAPH_ME.replace("me?", "me/accounts?"))["proxies"]["https"] == (
        "http://first.example:3128"
    )
    assert settings_for(session, "https://graph.facebook.com/v23.0/me")["proxies"]["https"] == (
        "http://second.example:3128"
    )


def test_what_a_call_does_with_its_settings_does_not_reach_the_next_call(environment):
    session = deadline_session(5)
    first = settings_for(session, GRAPH_ME)
    first["proxies"]["https"] = "http://changed-by-a-caller.example:1"
    assert "https" not in settings_for(session, GRAPH_ME)["proxies"]


def test_proxies_given_for_one_call_are_used_for_it(environment):
    environment.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    session = deadline_session(5)
    given = settings_for(session, GRAPH_ME, {"https": "http://chosen.example:8080"})
    assert given["proxies"]["https"] == "http://chosen.example:8080"
    assert settings_for(session, GRAPH_ME)["proxies"]["https"] == "http://proxy.example:3128"


def ended_watches() -> list:
    with http_deadline._watchdog.condition:
        return [watch for _, _, watch in http_deadline._watchdog.due if watch.closed]


def test_the_watchdog_drops_calls_that_ended_instead_of_waking_for_each():
    """Promise 35 still holds (the slow call is cut at its deadline), and the calls that ended long
    before their own deadline are dropped the first time the watchdog wakes, not one wake-up each."""
    with MetaStub(latency=0.0) as stub:
        url = f"{stub.base_url}/v23.0/me?access_token={MetaStub.seed_token(1)}"
        patient = deadline_session(60)
        for _ in range(20):
            assert patient.get(url).status_code == 200
        assert len(ended_watches()) >= 20  # their deadlines are a minute away
        stub.add_fault("trickle", interval=0.2)
        with pytest.raises(http_deadline.DeadlineExceeded):  # only the watch cuts a reply trickled this slowly
            deadline_session(0.5).get(url)
        gone = threading.Event()
        for _ in range(50):  # the watchdog drops them right after firing; give its thread the moment it needs
            if not ended_watches():
                gone.set()
                break
            time.sleep(0.05)
        assert gone.is_set()
