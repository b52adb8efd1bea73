"""The app driven through Flask's test client the way a browser drives it: one app context per request,
the CSRF token read from the page, logging in and out. Shared by tests/ and bench/."""

from __future__ import annotations

import contextvars
import re
from dataclasses import dataclass

from flask.testing import FlaskClient

# The password tests/factories.py gives every user it makes.
DEFAULT_PASSWORD = "correct-horse-battery"  # noqa: S105 (a test user's, never a real one)
CSRF_PATTERN = re.compile(r'name="csrf_token" type="hidden" value="([^"]+)"|"X-CSRFToken": "([^"]+)"')


class IsolatedClient(FlaskClient):
    """Runs each request in its own app context, as production does.

    The test itself holds an app context for factories; without this, Flask would reuse it for the
    request and `g` (flask-login's user, Flask-WTF's CSRF token) would leak from one request to the next.
    """

    def open(self, *args, **kwargs):
        return contextvars.Context().run(super().open, *args, **kwargs)

    def __enter__(self):
        """`with client:` (pytest-flask's `client` fixture) keeps no request's context alive either."""
        return self

    def __exit__(self, *exc_info) -> None:
        return None


def csrf_token_from(html: str) -> str:
    match = CSRF_PATTERN.search(html)
    assert match, "no CSRF token on the page"
    return match.group(1) or match.group(2)


@dataclass
class AuthActions:
    client: object

    def csrf_token(self, path: str = "/login") -> str:
        return csrf_token_from(self.client.get(path, follow_redirects=True).get_data(as_text=True))

    def login(self, email: str, password: str = DEFAULT_PASSWORD, next_url: str | None = None):
        token = self.csrf_token("/login")
        form = {"email": email, "password": password, "csrf_token": token}
        if next_url is not None:
            form["next"] = next_url
        return self.client.post("/login", data=form)

    def login_as(self, user, password: str = DEFAULT_PASSWORD):
        response = self.login(user.email, password)
        assert response.status_code == 302, response.get_data(as_text=True)[:500]
        return response

    def logout(self):
        token = self.csrf_token("/")
        return self.client.post("/logout", data={"csrf_token": token})
