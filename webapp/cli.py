"""Command-line interface: `flask --app wsgi <group> <command>`."""

from __future__ import annotations

import sys
from datetime import UTC, datetime

import click
from flask import Flask, current_app
from flask.cli import AppGroup
from sqlalchemy import func, select

from webapp.extensions import db
from webapp.models import ROLES, Shop
from webapp.services import accounts

users_cli = AppGroup("users", help="Manage dashboard logins.")
tokens_cli = AppGroup("tokens", help="Instagram access tokens.")
demo_cli = AppGroup("demo", help="Demo data for local runs.")

DEMO_SHOP = {"name": "Bloom & Stem Flowers", "domain": "bloom-and-stem.example"}
DEMO_MERCHANT = {"email": "owner@bloom-and-stem.example", "password": "sunflower-market-2026", "name": "Maya Jones"}
DEMO_SUPPORT = {"email": "agent@support.example", "password": "helpdesk-tulip-2026", "name": "Sam Support"}


def fail(message: str, code: int = 1) -> None:
    """Stop a command with a sentence on stderr and a non-zero exit code."""
    click.echo(f"Error: {message}", err=True)
    sys.exit(code)


def _now() -> datetime:
    return datetime.now(UTC)


@users_cli.command("create")
@click.option("--email", prompt=True, help="Login email.")
@click.option("--role", type=click.Choice(ROLES), default="merchant", show_default=True)
@click.option("--shop", "shop_name", help="Shop name (merchants only). Created if it does not exist.")
@click.option("--domain", help="Shop domain, when a new shop is created.")
@click.option("--name", default="", help="The person's name, shown in the dashboard.")
@click.password_option(help="Prompted for (twice) when not given.")
def create_user_command(email: str, role: str, shop_name: str | None, domain: str | None, name: str, password: str):
    """Create a merchant, support or admin login."""
    shop = None
    if role == "merchant":
        if not shop_name:
            fail("a merchant needs --shop NAME.", 2)
        shop = db.session.scalar(select(Shop).where(func.lower(Shop.name) == shop_name.strip().lower()))
        if shop is None:
            shop = Shop(name=shop_name.strip(), domain=domain or None, created_at=_now())
            db.session.add(shop)
    elif shop_name:
        fail("only merchants belong to a shop; drop --shop for support and admin users.", 2)
    try:
        user = accounts.create_user(email=email, password=password, role=role, shop=shop, name=name, now=_now())
    except accounts.AccountError as error:
        db.session.rollback()
        fail(str(error), 2)
    db.session.commit()
    where = f" for shop {shop.name!r}" if shop else ""
    click.echo(f"Created {role} {user.email}{where}.")


@demo_cli.command("seed")
def seed_command():
    """Create the demo shop with a merchant and a support login (safe to run again)."""
    if current_app.config["PRODUCTION"]:
        fail("demo data is for local runs; refusing in production.")
    now = _now()
    shop = db.session.scalar(select(Shop).where(Shop.domain == DEMO_SHOP["domain"]))
    if shop is None:
        shop = Shop(**DEMO_SHOP, created_at=now)
        db.session.add(shop)
    created = []
    for spec, role, user_shop in ((DEMO_MERCHANT, "merchant", shop), (DEMO_SUPPORT, "support", None)):
        if accounts.find_user_by_email(spec["email"]) is None:
            accounts.create_user(role=role, shop=user_shop, now=now, **spec)
            created.append(spec["email"])
    db.session.commit()
    click.echo("Demo data " + ("created." if created else "already present; nothing changed."))
    click.echo(demo_logins_text())


def demo_logins_text() -> str:
    return (
        "Demo logins:\n"
        f"  merchant  {DEMO_MERCHANT['email']:32} password: {DEMO_MERCHANT['password']}\n"
        f"  support   {DEMO_SUPPORT['email']:32} password: {DEMO_SUPPORT['password']}"
    )


@tokens_cli.command("rotate-keys")
def rotate_keys_command():
    """Re-encrypt every stored token under the newest key in TOKEN_ENCRYPTION_KEYS."""
    from webapp.instagram.oauth import token_vault
    from webapp.services.connections import rotate_token_keys

    report = rotate_token_keys(token_vault())
    click.echo(f"Re-encrypted {report.rotated} token(s) under the newest key.")
    if report.failed:
        click.echo(
            f"{len(report.failed)} token(s) could not be read with any configured key and were left as they are: "
            + ", ".join(report.failed)
            + ". Those shops must reconnect Instagram, or put the missing key back in TOKEN_ENCRYPTION_KEYS.",
            err=True,
        )
        sys.exit(1)


def register(app: Flask) -> None:
    app.cli.add_command(users_cli)
    app.cli.add_command(tokens_cli)
    app.cli.add_command(demo_cli)
