"""Bad input gets a clear 4xx answer in the site layout, never a 500 (promise 32)."""

from __future__ import annotations

import pytest

from tests.factories import make_user


@pytest.mark.parametrize(
    "method,path,status,words",
    [
        ("GET", "/no-such-page", 404, "Page not found"),
        ("DELETE", "/login", 405, "Not allowed that way"),
        ("GET", "/shops?page=0", 404, "Page not found"),
        ("GET", "/shops?page=999", 404, "Page not found"),
        ("GET", "/shops?page=abc", 200, "Shops"),
    ],
)
def test_error_pages_use_the_layout(client, auth, method, path, status, words):
    """Promise 32: unknown pages and ids give a 4xx page in the site layout."""
    auth.login_as(make_user(role="support"))
    response = client.open(path, method=method)
    page = response.get_data(as_text=True)
    assert response.status_code == status
    assert words in page
    assert "Shop Instagram Health" in page


def test_merchant_cannot_open_the_staff_list(client, auth):
    auth.login_as(make_user())
    response = client.get("/shops")
    assert response.status_code == 403
    assert "Not allowed" in response.get_data(as_text=True)


def test_oversized_body_is_refused_cleanly(client):
    """Promise 32: an oversized body gets 413, not a 500."""
    response = client.post("/login", data={"email": "x" * (2 * 1024 * 1024)})
    assert response.status_code == 413
    assert "Too much data" in response.get_data(as_text=True)


@pytest.mark.parametrize(
    "form",
    [
        {"email": ["a@example.com", "b@example.com"], "password": "x"},
        {"email": "\x00\x01", "password": "\x7f"},
        {"email": "a" * 300 + "@example.com", "password": "p"},
    ],
)
def test_malformed_login_forms_get_a_form_error(client, auth, form):
    """Promise 32: malformed forms give a 4xx with a message."""
    form = {**form, "csrf_token": auth.csrf_token()}
    response = client.post("/login", data=form)
    assert response.status_code == 400


def test_invalid_utf8_form_is_a_form_error(client, auth):
    """Promise 32: bytes that are not UTF-8 are read as text with replacement characters, not a 500."""
    body = f"csrf_token={auth.csrf_token()}&email=%FF%FE%40x&password=%C0%AF".encode()
    response = client.post("/login", data=body, content_type="application/x-www-form-urlencoded")
    assert response.status_code == 400


def test_htmx_error_is_a_fragment(client):
    response = client.get("/no-such-page", headers={"HX-Request": "true"})
    assert response.status_code == 404
    body = response.get_data(as_text=True)
    assert "<html" not in body and "Page not found" in body
    assert response.headers["HX-Retarget"] == "#htmx-errors" and response.headers["HX-Reswap"] == "innerHTML"


def test_unexpected_error_gets_the_500_page_and_a_rolled_back_session(app, client):
    @app.get("/boom")
    def boom():
        raise RuntimeError("kaboom")

    app.config["PROPAGATE_EXCEPTIONS"] = False
    response = client.get("/boom")
    assert response.status_code == 500
    assert "Something went wrong on our side" in response.get_data(as_text=True)
    assert "kaboom" not in response.get_data(as_text=True)
