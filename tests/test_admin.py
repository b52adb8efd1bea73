"""Administrators: staff accounts and the audit log filters (finding 10 of issue 11)."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from tests.factories import make_user
from webapp.models import User
from webapp.services import audit

INJECTED = [
    "new@support.example\r\nBcc: everyone@evil.example",
    "new@support.example\nX: y",
    "new\u2028@support.example",
]


@pytest.fixture
def admin(auth):
    user = make_user(role="admin", email="boss@support.example")
    auth.login_as(user)
    return user


@pytest.mark.parametrize("email", INJECTED)
def test_staff_form_refuses_an_email_with_control_characters(client, auth, db, admin, email):
    """Promise 28 / finding 10: CR/LF in an email would inject headers into every mail to that person."""
    response = client.post(
        "/admin/staff",
        data={
            "csrf_token": auth.csrf_token("/admin/staff"),
            "email": email,
            "role": "support",
            "password": "a-solid-first-pass",
        },
    )
    assert response.status_code == 400
    assert "cannot contain line breaks or other control characters" in response.get_data(as_text=True)
    assert db.session.scalar(select(User).where(User.email.like("new@%"))) is None


@pytest.mark.parametrize("email", INJECTED)
def test_users_create_refuses_an_email_with_control_characters(runner, db, email):
    """Finding 10: `flask users create` refuses it too, with the same sentence."""
    result = runner.invoke(
        args=["users", "create", "--role", "support", "--email", email, "--password", "a-solid-first-pass"]
    )
    assert result.exit_code == 2
    assert "cannot contain line breaks or other control characters" in result.output
    assert db.session.scalar(select(User)) is None


def test_audit_filters_match_wildcards_literally(client, db, admin):
    """Promise 28 / finding 10: "%" and "_" typed into the audit filters match themselves only."""
    for label in ("bossy", "b_ss"):
        audit.record(f"test.{label}", now=admin.created_at, actor=make_user(role="support", email=f"{label}@x.example"))

    def actions(query: str) -> str:
        return client.get(f"/admin/audit?{query}").get_data(as_text=True)

    assert "test.b_ss" in actions("actor=b_ss") and "test.bossy" not in actions("actor=b_ss")
    assert "test.bossy" not in actions("actor=%25")  # "%" is not "anything"
    assert "test.bossy" in actions("actor=bossy")
    assert "test.b_ss" in actions("action=test.b_") and "test.bossy" not in actions("action=test.b_")
    assert "staff.login" not in actions("action=%25login")
