"""`flask users create` and `flask demo seed`."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from webapp.cli import DEMO_MERCHANT, DEMO_SUPPORT
from webapp.models import Shop, User


def test_users_create_merchant_with_new_shop(runner, db):
    result = runner.invoke(
        args=["users", "create", "--email", "Owner@Example.com", "--shop", "Tea House", "--domain", "tea.example"],
        input="a-strong-passphrase\na-strong-passphrase\n",
    )
    assert result.exit_code == 0, result.output
    assert "Created merchant owner@example.com for shop 'Tea House'." in result.output
    user = db.session.scalar(select(User).where(User.email == "owner@example.com"))
    assert user.shop.domain == "tea.example"
    assert user.check_password("a-strong-passphrase")


def test_users_create_refuses_weak_password(runner, db):
    result = runner.invoke(
        args=["users", "create", "--email", "a@example.com", "--role", "support"], input="short\nshort\n"
    )
    assert result.exit_code == 2
    assert "Use at least 10 characters." in result.output
    assert db.session.scalar(select(User)) is None


def test_users_create_refuses_duplicate_email_in_any_case(runner, db):
    args = ["users", "create", "--email", "agent@example.com", "--role", "support"]
    assert runner.invoke(args=args, input="long-enough-phrase\nlong-enough-phrase\n").exit_code == 0
    again = runner.invoke(
        args=["users", "create", "--email", "AGENT@example.com", "--role", "admin"],
        input="long-enough-phrase\nlong-enough-phrase\n",
    )
    assert again.exit_code == 2
    assert "already exists" in again.output


def test_users_create_merchant_needs_a_shop(runner):
    result = runner.invoke(
        args=["users", "create", "--email", "m@example.com"], input="long-enough-phrase\nlong-enough-phrase\n"
    )
    assert result.exit_code == 2
    assert "a merchant needs --shop NAME." in result.output


def test_users_create_refuses_mismatched_confirmation(runner, db):
    result = runner.invoke(
        args=["users", "create", "--email", "s@example.com", "--role", "support"],
        input="long-enough-phrase\nother-phrase-here\nlong-enough-phrase\nlong-enough-phrase\n",
    )
    assert "do not match" in result.output
    assert result.exit_code == 0


def test_demo_seed_is_idempotent_and_prints_logins(runner, db):
    first = runner.invoke(args=["demo", "seed"])
    second = runner.invoke(args=["demo", "seed"])
    assert first.exit_code == 0 and second.exit_code == 0
    assert "Demo data created." in first.output
    assert "nothing changed" in second.output
    for output in (first.output, second.output):
        assert DEMO_MERCHANT["email"] in output and DEMO_MERCHANT["password"] in output
        assert DEMO_SUPPORT["email"] in output
    assert len(db.session.scalars(select(Shop)).all()) == 1
    assert len(db.session.scalars(select(User)).all()) == 3


def test_demo_logins_work(client, auth, runner):
    runner.invoke(args=["demo", "seed"])
    assert auth.login(DEMO_MERCHANT["email"], DEMO_MERCHANT["password"]).status_code == 302


@pytest.mark.options(PRODUCTION=True)
def test_demo_seed_refused_in_production(app, runner):
    result = runner.invoke(args=["demo", "seed"])
    assert result.exit_code == 1
    assert "refusing in production" in result.output
