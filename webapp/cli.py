"""Command-line interface: `flask --app wsgi <group> <command>`."""

from __future__ import annotations

import json
import signal
import sys
import threading
from datetime import datetime
from typing import NoReturn

import click
from flask import Flask, current_app
from flask.cli import AppGroup, with_appcontext
from sqlalchemy import func, select

from webapp import clock
from webapp.extensions import db
from webapp.models import API_SCOPES, ROLES, InstagramConnection, LoginPath, Shop
from webapp.sandbox import facebook as sandbox_facebook
from webapp.services import accounts, api_keys
from webapp.services.connections.diagnosis import explain_error
from webapp.services.connections.key_rotation import rotate_token_keys
from webapp.services.keepalive.leases import ACTIVE_STATES
from webapp.services.keepalive.worker import Worker, WorkerRefused
from webapp.services.runtime import token_vault

users_cli = AppGroup("users", help="Manage dashboard logins.")
tokens_cli = AppGroup("tokens", help="Instagram access tokens.")
demo_cli = AppGroup("demo", help="Demo data for local runs.")
apikeys_cli = AppGroup("apikeys", help="Platform API keys (README, 'Platform API').")

CLI_ACTOR = "the command line"  # how the audit log names what an operator did with `flask`
DEMO_SHOP = {"name": "Bloom & Stem Flowers", "domain": "bloom-and-stem.example"}
DEMO_MERCHANT = {"email": "owner@bloom-and-stem.example", "password": "sunflower-market-2026", "name": "Maya Jones"}
DEMO_SUPPORT = {"email": "agent@support.example", "password": "helpdesk-tulip-2026", "name": "Sam Support"}
DEMO_ADMIN = {"email": "admin@support.example", "password": "orchid-keeper-2026", "name": "Alex Admin"}


def fail(message: str, code: int = 1) -> NoReturn:
    """Stop a command with a sentence on stderr and a non-zero exit code."""
    click.echo(f"Error: {message}", err=True)
    sys.exit(code)


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
            shop = Shop(name=shop_name.strip(), domain=domain or None, created_at=clock.now())
            db.session.add(shop)
    elif shop_name:
        fail("only merchants belong to a shop; drop --shop for support and admin users.", 2)
    try:
        user = accounts.create_user(email=email, password=password, role=role, shop=shop, name=name, now=clock.now())
    except accounts.AccountError as error:
        db.session.rollback()
        fail(str(error), 2)
    db.session.commit()
    where = f" for shop {shop.name!r}" if shop else ""
    click.echo(f"Created {role} {user.email}{where}.")


@apikeys_cli.command("create")
@click.option("--name", required=True, help="What uses the key, e.g. 'product sync'.")
@click.option(
    "--scope",
    "scopes",
    multiple=True,
    required=True,
    help="A scope the key gets; repeat for more (or comma-separate): " + ", ".join(API_SCOPES) + ".",
)
def create_api_key_command(name: str, scopes: tuple[str, ...]):
    """Make an API key and print it, once: only a hash of it is kept."""
    try:
        key, full_key = api_keys.create_key(name=name, scopes=scopes, created_by=None, now=clock.now(), label=CLI_ACTOR)
    except api_keys.ApiKeyError as error:
        db.session.rollback()
        fail(str(error), 2)
    click.echo(f"Created API key {key.key_id} “{key.name}” with {', '.join(key.scope_list)}.")
    click.echo("The key, shown this once (store it in the service's secrets now):")
    click.echo(full_key)


@apikeys_cli.command("list")
def list_api_keys_command():
    """List every API key: id, name, scopes, created, last used, revoked."""
    keys = api_keys.list_keys()
    if not keys:
        click.echo("No API keys yet. Make one with: flask --app wsgi apikeys create --name NAME --scope SCOPE")
        return
    click.echo(f"{'key id':<14}{'name':<28}{'scopes':<52}{'created':<22}{'last used':<22}revoked")
    for key in keys:
        click.echo(
            f"{key.key_id:<14}{key.name[:26]:<28}{','.join(key.scope_list):<52}"
            f"{_minute(key.created_at):<22}{_minute(key.last_used_at):<22}{_minute(key.revoked_at)}"
        )


def _minute(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%d %H:%M UTC") if moment else "-"


@apikeys_cli.command("revoke")
@click.argument("key_id")
def revoke_api_key_command(key_id: str):
    """Revoke the key KEY_ID at once (its next request is refused)."""
    try:
        key = api_keys.find_key(key_id)
    except api_keys.ApiKeyError as error:
        fail(str(error), 2)
    if not api_keys.revoke(key, actor=None, now=clock.now(), label=CLI_ACTOR):
        click.echo(f"API key {key.key_id} “{key.name}” was already revoked; nothing changed.")
        return
    click.echo(f"Revoked API key {key.key_id} “{key.name}”.")


@demo_cli.command("seed")
def seed_command():
    """Create the demo shop with a merchant and a support login (safe to run again)."""
    if current_app.config["PRODUCTION"]:
        fail("demo data is for local runs; refusing in production.")
    now = clock.now()
    shop = db.session.scalar(select(Shop).where(Shop.domain == DEMO_SHOP["domain"]))
    if shop is None:
        shop = Shop(**DEMO_SHOP, created_at=now)
        db.session.add(shop)
    created = []
    logins = ((DEMO_MERCHANT, "merchant", shop), (DEMO_SUPPORT, "support", None), (DEMO_ADMIN, "admin", None))
    for spec, role, user_shop in logins:
        if accounts.find_user_by_email(spec["email"]) is None:
            accounts.create_user(role=role, shop=user_shop, now=now, **spec)
            created.append(spec["email"])
    db.session.commit()
    if current_app.config["INSTAGRAM_SANDBOX"] and sandbox_facebook.seed_demo_user(now):
        created.append(sandbox_facebook.DEMO_USER)  # the sandbox's Facebook user with two Pages
    click.echo("Demo data " + ("created." if created else "already present; nothing changed."))
    click.echo(demo_logins_text())


def demo_logins_text() -> str:
    return (
        "Demo logins:\n"
        f"  merchant  {DEMO_MERCHANT['email']:32} password: {DEMO_MERCHANT['password']}\n"
        f"  support   {DEMO_SUPPORT['email']:32} password: {DEMO_SUPPORT['password']}\n"
        f"  admin     {DEMO_ADMIN['email']:32} password: {DEMO_ADMIN['password']}"
    )


@tokens_cli.command("rotate-keys")
def rotate_keys_command():
    """Re-encrypt every stored token under the newest key in TOKEN_ENCRYPTION_KEYS."""
    report = rotate_token_keys(token_vault())
    click.echo(f"Re-encrypted {report.rotated} token(s) under the newest key.")
    if report.failed:
        click.echo(
            f"{len(report.failed)} token(s) could not be read with any configured key and were left as they are: "
            + ", ".join(report.failed)
            + ". Those shops must reconnect Instagram, or put the missing key back in TOKEN_ENCRYPTION_KEYS.",
            err=True,
        )
    if report.changed_meanwhile:
        click.echo(
            f"{report.changed_meanwhile} token(s) kept changing while they were re-encrypted and are still under an "
            "older key. Run the command again.",
            err=True,
        )
    if report.failed or report.changed_meanwhile:
        sys.exit(1)


@tokens_cli.command("sweep")
@click.option("--concurrency", type=click.IntRange(1, 200), help="Calls to Meta at once (default WORKER_CONCURRENCY).")
def sweep_command(concurrency: int | None):
    """Do one pass over every connection that is due, then stop (for Heroku Scheduler or cron)."""
    due = db.session.scalar(
        select(func.count(InstagramConnection.id)).where(
            InstagramConnection.state.in_(ACTIVE_STATES), InstagramConnection.due_at <= clock.now()
        )
    )
    db.session.close()
    # Flask types current_app as the app itself; it is a LocalProxy, and the worker's threads need the app.
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    worker = Worker(app, concurrency=concurrency, poll_seconds=0)
    try:
        with click.progressbar(length=due or 0, label=f"Sweeping {due} due connection(s)") as bar:
            totals = worker.run(threading.Event(), until_idle=True, on_result=lambda _summary: bar.update(1))
    except WorkerRefused as refusal:
        fail(str(refusal))
    click.echo("")
    click.echo(f"{'outcome':<18}{'connections':>12}")
    for outcome, count in sorted(totals.items()):
        click.echo(f"{outcome:<18}{count:>12}")
    click.echo(f"{'total':<18}{sum(totals.values()):>12}")


@click.command("worker")
@click.option("--concurrency", type=click.IntRange(1, 200), help="Calls to Meta at once (default WORKER_CONCURRENCY).")
@click.option("--batch-size", type=click.IntRange(1, 1000), help="Connections claimed per batch.")
@click.option("--until-idle", is_flag=True, help="Stop when nothing is due instead of waiting for more.")
@with_appcontext
def worker_command(concurrency: int | None, batch_size: int | None, until_idle: bool):
    """Keep tokens alive: refresh and health-check connections until SIGTERM."""
    stop = threading.Event()

    def request_stop(signum, _frame):
        click.echo(f"Received signal {signum}: finishing calls in flight, then stopping.")
        stop.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    # Flask types current_app as the app itself; it is a LocalProxy, and the worker's threads need the app.
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    worker = Worker(app, concurrency=concurrency, batch_size=batch_size)
    db.session.close()
    click.echo(f"Worker {worker.owner} started: concurrency {worker.concurrency}, batch {worker.batch_size}.")
    try:
        totals = worker.run(stop, until_idle=until_idle)
    except WorkerRefused as refusal:
        fail(str(refusal))
    click.echo("Worker stopped. " + ", ".join(f"{k}: {v}" for k, v in sorted(totals.items())))


EXPLAIN_MAX_BYTES = 1_000_000  # far more than any error body; the rest of a huge file is not read


LOGIN_PATH_WORDS = {LoginPath.INSTAGRAM: "Instagram Login", LoginPath.FACEBOOK: "Facebook Login"}


def _login_path(_context, _parameter, value: str) -> LoginPath:
    try:
        return LoginPath(value.strip().lower())
    except ValueError:
        fail(f"--path must be instagram or facebook (how the shop connected), not {value!r}.", 2)


@click.command("explain-error")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of text.")
@click.option(
    "--path",
    "path",
    default=LoginPath.INSTAGRAM.value,
    metavar="instagram|facebook",
    callback=_login_path,
    show_default=True,
    help="How the shop connected: Instagram Login or Facebook Login; the advice follows it.",
)
@click.argument("source", default="-", required=False)
def explain_error_command(as_json: bool, path: LoginPath, source: str):
    """Explain one Meta error response (JSON body or raw text such as a log line) from FILE or stdin."""
    try:
        if source == "-":
            # Bytes, not text: a pasted log may hold anything, and a decoding error must not end the command.
            raw = sys.stdin.buffer.read(EXPLAIN_MAX_BYTES).decode("utf-8", errors="replace")
        else:
            with open(source, encoding="utf-8", errors="replace") as handle:
                raw = handle.read(EXPLAIN_MAX_BYTES)
    except OSError as error:
        fail(f"cannot read {source}: {error.strerror or error}.", 2)
    answer = explain_error(raw, path)
    if as_json:
        click.echo(json.dumps(answer, indent=2, ensure_ascii=False))
        return
    meta = answer["meta"]
    parsed = ", ".join(f"{key} {value}" for key, value in meta.items() if value is not None and key != "message")
    click.echo(f"Cause: {answer['cause']} - {answer['title']}")
    click.echo(f"Login path: {LOGIN_PATH_WORDS[path]}")
    if parsed:
        click.echo(f"Parsed: {parsed}")
    if answer["meta_user_title"] or answer["meta_user_message"]:
        told = " - ".join(words for words in (answer["meta_user_title"], answer["meta_user_message"]) if words)
        click.echo(f"Meta's message to the account owner: {told}")
    click.echo(
        f"Needs reconnect: {'yes' if answer['needs_reconnect'] else 'no'}; "
        f"retrying may help: {'yes' if answer['retryable'] else 'no'}"
    )
    click.echo("")
    click.echo(answer["explanation"])
    click.echo("")
    click.echo("What to do:")
    for step in answer["checklist"]:
        click.echo(f"  - {step}")
    if answer["nothing_to_do"]:
        click.echo(f"  Nothing to do. {answer['nothing_to_do']}")
    if answer["support_notes"]:
        click.echo("")
        click.echo(f"For support: {answer['support_notes']}")


def register(app: Flask) -> None:
    app.cli.add_command(users_cli)
    app.cli.add_command(tokens_cli)
    app.cli.add_command(worker_command)
    app.cli.add_command(explain_error_command)
    app.cli.add_command(demo_cli)
    app.cli.add_command(apikeys_cli)
