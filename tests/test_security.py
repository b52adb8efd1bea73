"""CSRF on every state change, security headers and login throttling (promises 21, 30, 31)."""

from __future__ import annotations

import pytest

from tests.factories import make_user
from webapp import create_app

# Meta calls these server-to-server with a signed_request instead of a browser session.
CSRF_EXEMPT_ENDPOINTS = {
    "meta_requests.deauthorize",
    "meta_requests.data_deletion",
    "meta_requests.facebook_deauthorize",
    "meta_requests.facebook_data_deletion",
}
# The sandbox stands in for Meta's token endpoints (both apps'), which the dashboard calls server-to-server.
SANDBOX_CSRF_EXEMPT_ENDPOINTS = {"sandbox.access_token", "sandbox_facebook.access_token"}
# The Platform API's writes: server to server with a bearer API key; no cookie is ever read there.
API_CSRF_EXEMPT_ENDPOINTS = {
    "platform_api.report_error",
    "platform_api_webhooks.create_webhook",
    "platform_api_webhooks.disable_webhook",
}


def state_changing_rules(app):
    for rule in app.url_map.iter_rules():
        methods = (rule.methods or set()) - {"GET", "HEAD", "OPTIONS"}
        if methods and rule.endpoint != "static":
            yield rule, sorted(methods)


def csrf_exempt_endpoints(app) -> set[str]:
    exempt = set(app.extensions["csrf"]._exempt_views)
    return {endpoint for endpoint, view in app.view_functions.items() if f"{view.__module__}.{view.__name__}" in exempt}


def test_csrf_exemptions_are_exactly_metas_callbacks(app, app_config):
    """Promise 21: only Meta's callbacks and the Platform API's writes are exempt from CSRF, listed here."""
    assert csrf_exempt_endpoints(app) == CSRF_EXEMPT_ENDPOINTS | API_CSRF_EXEMPT_ENDPOINTS
    assert not app.extensions["csrf"]._exempt_blueprints
    sandboxed = create_app({**app_config, "INSTAGRAM_SANDBOX": True})
    assert csrf_exempt_endpoints(sandboxed) == (
        CSRF_EXEMPT_ENDPOINTS | SANDBOX_CSRF_EXEMPT_ENDPOINTS | API_CSRF_EXEMPT_ENDPOINTS
    )


def test_the_apis_exempt_writes_refuse_a_logged_in_browser_without_a_key(client, app, auth):
    """Promise 21: CSRF-exempt because a browser's session counts for nothing there; only a bearer key does."""
    auth.login_as(make_user(role="admin"))
    rules = [rule for rule, _methods in state_changing_rules(app) if rule.endpoint in API_CSRF_EXEMPT_ENDPOINTS]
    assert rules
    for rule in rules:
        url = rule.rule.replace("<int:shop_id>", "1").replace("<int:endpoint_id>", "1")
        for method in sorted((rule.methods or set()) - {"OPTIONS"}):
            response = client.open(url, method=method, json={"code": 190})
            assert response.status_code == 401, (rule.rule, method)
            assert response.mimetype == "application/problem+json"


@pytest.mark.parametrize("sandbox", [False, True])
def test_every_state_changing_route_refuses_a_missing_csrf_token(app_config, sandbox):
    """Promise 21: iterate the URL map; every POST/PUT/PATCH/DELETE without a token is refused."""
    from testbed.client import AuthActions, IsolatedClient

    app = create_app({**app_config, "INSTAGRAM_SANDBOX": sandbox})
    app.test_client_class = IsolatedClient
    client = app.test_client()
    with app.app_context():
        AuthActions(client).login_as(make_user())
    checked = 0
    for rule, methods in state_changing_rules(app):
        if rule.endpoint in CSRF_EXEMPT_ENDPOINTS | SANDBOX_CSRF_EXEMPT_ENDPOINTS | API_CSRF_EXEMPT_ENDPOINTS:
            continue
        url = rule.rule
        for argument in rule.arguments:
            url = url.replace(f"<{argument}>", "1").replace(f"<int:{argument}>", "1")
        for method in methods:
            response = client.open(url, method=method, data={"anything": "x"})
            assert response.status_code == 400, (rule.rule, method, response.status_code)
            assert "The form expired or was sent from somewhere else" in response.get_data(as_text=True)
            checked += 1
    assert checked >= 3  # login, logout, password change at least


def test_no_get_route_changes_state_by_name(app):
    """Promise 21: state changes never hide behind GET; no GET-only rule is named like an action."""
    actions = ("logout", "delete", "disconnect", "revoke", "connect_start", "impersonate")
    for rule in app.url_map.iter_rules():
        view_name = rule.endpoint.split(".")[-1]
        if rule.methods and "POST" not in rule.methods and view_name.startswith(actions):
            pytest.fail(f"{rule.endpoint} changes state over GET")


@pytest.mark.parametrize("path", ["/login", "/healthz", "/no-such-page", "/static/css/app.css"])
def test_security_headers_on_every_response(client, path):
    """Promise 31: CSP without unsafe-inline/eval, nosniff, frame-ancestors, on pages, errors and assets."""
    response = client.get(path)
    csp = response.headers["Content-Security-Policy"]
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
    assert "frame-ancestors 'none'" in csp
    assert "object-src 'none'" in csp
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["X-Frame-Options"] == "DENY"


def test_hsts_only_in_production(app_config, client):
    """Promise 31: HSTS in production."""
    assert "Strict-Transport-Security" not in client.get("/login").headers
    production = create_app(
        {**app_config, "PRODUCTION": True, "INSTAGRAM_SANDBOX": False, "SESSION_COOKIE_SECURE": False}
    )
    response = production.test_client().get("/login")
    assert response.headers["Strict-Transport-Security"].startswith("max-age=31536000")


def test_pages_have_no_inline_scripts_or_styles(client):
    """Promise 31: every script is external; every external script has integrity."""
    import re

    html = client.get("/login").get_data(as_text=True)
    assert "style=" not in html
    for tag in re.findall(r"<script[^>]*>", html):
        assert "src=" in tag, tag
    assert not re.search(r"<script[^>]*>[^<]+</script>", html)


def test_cdn_script_carries_integrity(app_config):
    """Promise 31: the CDN copy of htmx is pinned with SRI and crossorigin; a local fallback follows."""
    import re

    app = create_app({**app_config, "HTMX_CDN": True})
    html = app.test_client().get("/login").get_data(as_text=True)
    tags = re.findall(r"<script[^>]*>", html)
    cdn = [tag for tag in tags if "cdn.jsdelivr.net" in tag]
    assert len(cdn) == 1
    assert 'integrity="sha384-' in cdn[0] and 'crossorigin="anonymous"' in cdn[0]
    assert any("htmx-fallback.js" in tag and "data-local-src" in tag for tag in tags)
    for tag in tags:
        if "://" in tag:
            assert "integrity=" in tag, tag


def test_sri_hash_matches_the_shipped_file():
    """Promise 31: the integrity value is the hash of the vendored file the CDN serves."""
    import base64
    import hashlib

    from webapp.config import PROJECT_ROOT
    from webapp.templating import HTMX_INTEGRITY, HTMX_LOCAL_PATH

    digest = hashlib.sha384((PROJECT_ROOT / "static" / HTMX_LOCAL_PATH).read_bytes()).digest()
    assert "sha384-" + base64.b64encode(digest).decode() == HTMX_INTEGRITY


def _post_login(client, token, email="someone@example.com", headers=None):
    return client.post(
        "/login", data={"email": email, "password": "not-the-password", "csrf_token": token}, headers=headers or {}
    )


def test_login_throttle_cannot_be_reset_by_spoofed_forwarded_for(app_config):
    """Promise 30: a client that invents X-Forwarded-For values stays in its own bucket.

    The platform's router appends the real client address as the last hop; ProxyFix trusts exactly
    that one hop, so whatever the client puts before it is ignored.
    """
    app = create_app({**app_config, "LOGIN_RATE_LIMIT": "3 per minute", "PROXY_FIX_HOPS": 1})
    from testbed.client import IsolatedClient, csrf_token_from

    app.test_client_class = IsolatedClient
    client = app.test_client()
    token = csrf_token_from(client.get("/login").get_data(as_text=True))
    statuses = []
    for attempt in range(5):
        spoofed = f"10.0.0.{attempt}, 203.0.113.7"
        statuses.append(
            _post_login(
                client, token, email=f"user{attempt}@example.com", headers={"X-Forwarded-For": spoofed}
            ).status_code
        )
    assert statuses[:3] == [400, 400, 400]
    assert statuses[3:] == [429, 429]
    locked = _post_login(client, token, headers={"X-Forwarded-For": "203.0.113.7"})
    assert locked.status_code == 429
    assert "Too many login attempts from your network. Try again in a minute." in locked.get_data(as_text=True)
    # Another real client (a different last hop) is not locked out.
    other = _post_login(client, token, headers={"X-Forwarded-For": "198.51.100.9"})
    assert other.status_code == 400


def test_login_throttle_per_account_across_addresses(app_config):
    """Promise 30: one account attacked from many addresses is throttled too."""
    from testbed.client import IsolatedClient, csrf_token_from

    app = create_app({**app_config, "LOGIN_RATE_LIMIT": "100 per minute", "PROXY_FIX_HOPS": 1})
    app.test_client_class = IsolatedClient
    client = app.test_client()
    token = csrf_token_from(client.get("/login").get_data(as_text=True))
    statuses = [
        _post_login(
            client, token, email="target@example.com", headers={"X-Forwarded-For": f"198.51.100.{n}"}
        ).status_code
        for n in range(12)
    ]
    assert statuses.count(429) == 2


@pytest.mark.skipif(not __import__("os").environ.get("TEST_REDIS_URL"), reason="TEST_REDIS_URL is not set (CI sets it)")
def test_login_throttle_is_shared_between_processes_through_redis(app_config):
    """Promise 30: with REDIS_URL, two app instances (two dynos) share one throttle."""
    import os
    import uuid

    from testbed.client import IsolatedClient, csrf_token_from

    redis_url = os.environ["TEST_REDIS_URL"]
    config = {
        **app_config,
        "LOGIN_RATE_LIMIT": "3 per minute",
        "RATELIMIT_STORAGE_URI": redis_url,
        "RATELIMIT_KEY_PREFIX": f"test-{uuid.uuid4().hex}",
    }
    dyno_one, dyno_two = create_app(config), create_app(config)
    statuses = []
    for number, dyno in enumerate([dyno_one, dyno_two, dyno_one, dyno_two]):
        dyno.test_client_class = IsolatedClient
        client = dyno.test_client()
        token = csrf_token_from(client.get("/login").get_data(as_text=True))
        statuses.append(
            _post_login(
                client, token, email=f"u{number}@example.com", headers={"X-Forwarded-For": "203.0.113.8"}
            ).status_code
        )
    assert statuses == [400, 400, 400, 429]
