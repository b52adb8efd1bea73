"""A shop platform service's whole loop against a running `make run`, told step by step.

Start the dashboard in one terminal (`make run`), then in another:

    SHOP_HEALTH_API_KEY=ihk_... .venv/bin/python docs/platform_loop.py

The script plays one of the platform's services (say, product sync):

1. it uses an API key an administrator gave it;
2. it starts a small HTTP receiver and registers it as a webhook endpoint (the signing secret is
   shown once, and kept in memory only);
3. it reads the demo shop's connection, fetches the shop's token and calls Instagram's Graph API
   with it, as a sync job would (here the sandbox's Graph API, the one the dashboard itself uses);
4. Meta revokes the token: in the sandbox's panel the script, as a tester would, first presses
   "Behave like real Meta" (so the dashboard is not told: real Meta tells nobody), then "Change
   password" on the shop's Instagram account. The next Graph call gets Meta's error, which the
   script reports to the API with an Idempotency-Key (and once more with the same key, to show the
   answer replayed, not applied twice);
5. the dashboard confirms the report with its own call to Meta and marks the shop needs_reconnect;
   the worker sends the signed webhook, which the receiver verifies with `standardwebhooks` exactly
   as a real receiver would, before reading it;
6. the merchant's card has changed: the script logs in as the demo merchant and reads it, then
   reads the connection through the API once more.

The token itself is never printed: only its length, fingerprint and expiry.

**The API key.** Give it with `--api-key` or `SHOP_HEALTH_API_KEY`. An administrator makes one with

    flask --app wsgi apikeys create --name "platform loop" \\
        --scope status:read --scope token:read --scope errors:write --scope webhooks:manage

`--create-key` makes the script run that command itself, against the same local database
(`DATABASE_URL`, or the SQLite file `make run` uses), and revoke the key when it ends. It is a
flag, not the default, because a platform service never mints its own keys: an administrator gives
each service a key with only the scopes it needs. Locally you are that administrator, so the flag
saves a copy and paste; it does not pretend the service could do it.

**The demo shop.** `make run` seeds the shop "Bloom & Stem Flowers" with its merchant
(owner@bloom-and-stem.example), not connected. When the shop has no working connection (the first
run, or the last run left it needing a reconnect), the script connects it as its merchant would:
logs in, presses Connect (or Reconnect), and allows the sandbox's Instagram login for
@bloom_and_stem. Running the script again therefore works every time.

Needs only the standard library, `requests` and `standardwebhooks` (both in requirements.txt).
Exits 1 with one sentence when something fails: the server not running, a key missing a scope, no
webhook within the wait.
"""

from __future__ import annotations

import argparse
import html
import json
import os
import queue
import re
import shlex
import subprocess
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import requests
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

PROJECT_ROOT = Path(__file__).resolve().parent.parent
SCOPES = ("status:read", "token:read", "errors:write", "webhooks:manage")
USABLE_STATES = ("healthy", "expiring", "degraded")
EVENT_TYPES = ["connection.state_changed", "connection.reconnected"]
CSRF = re.compile(r'name="csrf_token" type="hidden" value="([^"]+)"|name="csrf_token" value="([^"]+)"')
TIMEOUT = 15  # seconds for each HTTP call; an error report waits for the dashboard's own call to Meta


class LoopFailed(Exception):
    """One sentence saying what went wrong and what to do."""


def step(number: int, title: str) -> None:
    print(f"\n{number}. {title}")


def say(text: str, indent: int = 3) -> None:
    print(" " * indent + text)


def show_json(label: str, value) -> None:
    say(f"{label} " + json.dumps(value, indent=2, ensure_ascii=False).replace("\n", "\n      "))


class Api:
    """The Platform API as a service sees it: a bearer key, JSON, problem documents on errors."""

    def __init__(self, base_url: str, key: str):
        self.base_url = base_url
        self.http = requests.Session()
        self.http.headers["Authorization"] = f"Bearer {key}"

    def call(self, method: str, path: str, *, expect: tuple[int, ...] = (200,), **kwargs) -> requests.Response:
        try:
            response = self.http.request(method, self.base_url + path, timeout=TIMEOUT, **kwargs)
        except requests.ConnectionError:
            raise LoopFailed(f"The dashboard at {self.base_url} stopped answering ({method} {path}).") from None
        if response.status_code in expect:
            return response
        problem = _problem(response)
        if response.status_code == 401:
            raise LoopFailed(
                f"The API refused the key ({problem}). Make one with: flask --app wsgi apikeys create "
                '--name "platform loop" ' + " ".join(f"--scope {scope}" for scope in SCOPES)
            )
        if response.status_code == 403:
            raise LoopFailed(
                f"The API key lacks a scope this loop needs ({problem}). It needs all of: {', '.join(SCOPES)}."
            )
        raise LoopFailed(f"{method} {path} answered HTTP {response.status_code}: {problem}")


def _problem(response: requests.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:200] or response.reason
    if not isinstance(body, dict):
        return json.dumps(body)[:200]
    return (body.get("detail") or body.get("title") or json.dumps(body)[:200]).rstrip(".")


class Receiver:
    """The service's webhook endpoint: verifies each delivery with `standardwebhooks`, answers, queues the event."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0):
        self.events: queue.Queue = queue.Queue()
        self.webhook: Webhook | None = None  # set once the API has shown the secret
        self.seen: set[str] = set()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server's name)
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                headers = {name.lower(): value for name, value in self.headers.items()}
                try:
                    if receiver.webhook is None:
                        raise WebhookVerificationError("no secret yet")
                    # The raw body, before parsing it: that is what was signed.
                    event = receiver.webhook.verify(body, headers)
                except WebhookVerificationError as error:
                    self.send_response(400)
                    self.end_headers()
                    receiver.events.put(("refused", str(error), headers))
                    return
                self.send_response(204)
                self.end_headers()
                webhook_id = headers.get("webhook-id", "")
                if webhook_id in receiver.seen:
                    return  # at least once: the same event may come again
                receiver.seen.add(webhook_id)
                receiver.events.put(("verified", event, headers))

            def log_message(self, *_args):
                pass  # the script tells what arrived itself

        self.server = ThreadingHTTPServer((host, port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}/hooks/instagram"

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *_exc) -> None:
        self.server.shutdown()
        self.server.server_close()


class Browser:
    """A person's browser without JavaScript: a cookie jar, and the CSRF token read off each form."""

    def __init__(self, base_url: str):
        self.base_url = base_url
        self.http = requests.Session()

    def get(self, path: str, **kwargs) -> requests.Response:
        url = path if path.startswith("http") else self.base_url + path
        return self.http.get(url, timeout=TIMEOUT, **kwargs)

    def submit(self, path: str, page: str, fields: dict, **kwargs) -> requests.Response:
        """POST a form of `page` (its CSRF token included) to `path`."""
        match = CSRF.search(page)
        if match is None:
            raise LoopFailed(f"The page that holds the form for {path} has no CSRF token; is this the dashboard?")
        url = path if path.startswith("http") else self.base_url + path
        return self.http.post(
            url, data={"csrf_token": match.group(1) or match.group(2), **fields}, timeout=TIMEOUT, **kwargs
        )

    def log_in(self, email: str, password: str) -> None:
        page = self.get("/login").text
        answer = self.submit("/login", page, {"email": email, "password": password}, allow_redirects=False)
        if answer.status_code != 302:
            raise LoopFailed(
                f"Logging in as {email} failed (HTTP {answer.status_code}); is this the demo data `make run` seeds?"
            )


def flashes(page: str) -> list[str]:
    return [text_of(found) for found in re.findall(r'<p class="flash flash-\w+"[^>]*>(.*?)</p>', page, re.S)]


def text_of(fragment: str) -> str:
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", fragment)).split())


def first(pattern: str, page: str) -> str | None:
    found = re.search(pattern, page, re.S)
    return text_of(found.group(1)) if found else None


def obtain_key(args) -> tuple[str, str | None]:
    """The API key, and the id of a key this script made (to revoke at the end)."""
    key = args.api_key or os.environ.get("SHOP_HEALTH_API_KEY")
    if key:
        say("Using the key from " + ("--api-key." if args.api_key else "SHOP_HEALTH_API_KEY."))
        return key, None
    if not args.create_key:
        raise LoopFailed(
            "No API key: pass --api-key or set SHOP_HEALTH_API_KEY (make one with `flask --app wsgi apikeys create "
            '--name "platform loop" ' + " ".join(f"--scope {scope}" for scope in SCOPES) + "`), or run with "
            "--create-key to have this script make one in the local database and revoke it at the end."
        )
    command = [str(Path(sys.executable).parent / "flask"), "--app", "wsgi", "apikeys", "create"]
    command += ["--name", "platform loop (docs/platform_loop.py)"]
    for scope in SCOPES:
        command += ["--scope", scope]
    say("As the administrator (--create-key): flask " + shlex.join(command[1:]))
    try:
        made = subprocess.run(  # noqa: S603 (our own flask, fixed arguments)
            command, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=60, check=False
        )
    except OSError as error:
        raise LoopFailed(f"Could not run flask to make a key ({error.strerror}); pass --api-key instead.") from None
    found = re.search(r"^(ihk_([0-9a-f]+)_\S+)$", made.stdout, re.M)
    if made.returncode != 0 or found is None:
        raise LoopFailed(f"`flask apikeys create` failed: {(made.stderr or made.stdout).strip()[-300:]}")
    say(f"Made key {found.group(2)} with {', '.join(SCOPES)}; it is revoked when the script ends.")
    return found.group(1), found.group(2)


def revoke_key(key_id: str) -> None:
    command = [str(Path(sys.executable).parent / "flask"), "--app", "wsgi", "apikeys", "revoke", key_id]
    made = subprocess.run(  # noqa: S603 (our own flask; the id it printed)
        command, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=60, check=False
    )
    say((made.stdout or made.stderr).strip() or f"Revoking key {key_id} said nothing.")


def find_connection(api: Api, shop_name: str) -> dict | None:
    cursor = None
    while True:
        params = {"limit": 200, **({"cursor": cursor} if cursor else {})}
        page = api.call("GET", "/api/v1/connections", params=params).json()
        for item in page["connections"]:
            if item["shop_name"] == shop_name:
                return item
        cursor = page["next_cursor"]
        if cursor is None:
            return None


def connect_as_merchant(args, merchant: Browser, username: str) -> None:
    """Connect (or reconnect) the demo shop through the sandbox's Instagram login, as its merchant would."""
    merchant.log_in(args.merchant_email, args.merchant_password)
    dashboard = merchant.get("/").text
    say(f"Logged in as {args.merchant_email}; pressing Connect / Reconnect (Instagram login).")
    to_login = merchant.submit("/instagram/connect", dashboard, {}, allow_redirects=False)
    login_page_url = to_login.headers.get("Location", "")
    if to_login.status_code != 302 or "/sandbox/" not in login_page_url:
        raise LoopFailed(
            "Connect did not lead to the sandbox's Instagram login: this script needs the built-in sandbox "
            "(`make run` without Meta credentials)."
        )
    login_page = merchant.get(login_page_url).text
    say(f"On the sandbox's Instagram login: allowing the app for @{username}.")
    done = merchant.submit(login_page_url, login_page, {"new_username": username, "decision": "allow"})
    said = flashes(done.text)
    say("The dashboard said: " + (" ".join(said) or f"(no message; HTTP {done.status_code})"))


def graph_me(args, token: str) -> requests.Response:
    """GET /me on the Graph API the dashboard uses, as a sync job would (the token in the query, as Meta documents)."""
    url = f"{args.graph_base}/{args.graph_version}/me"
    say(f"GET {url}?fields=user_id,username&access_token=<the token>")
    return requests.get(url, params={"fields": "user_id,username", "access_token": token}, timeout=TIMEOUT)


def revoke_in_sandbox(args, username: str) -> None:
    """Press the sandbox panel's buttons as a tester: behave like real Meta, then change the account's password."""
    tester = Browser(args.base_url)
    panel = tester.get("/sandbox/").text
    turned = tester.submit("/sandbox/nudge", panel, {"nudge": "off", "back": "/sandbox/"})
    say("Pressed “Behave like real Meta”: " + " ".join(flashes(turned.text)))
    panel = turned.text
    account = re.search(rf'id="sandbox-account-(\d+)">\s*<header>\s*<h2>@{re.escape(username)}</h2>', panel)
    if account is None:
        raise LoopFailed(f"The sandbox has no account @{username}; was the shop connected through the sandbox?")
    pressed = tester.submit(f"/sandbox/accounts/{account.group(1)}/change_password", panel, {})
    say(f"Pressed “Change password” on @{username}: " + " ".join(flashes(pressed.text)))


def wait_for_webhook(receiver: Receiver, shop_id: int, timeout: float) -> dict:
    started = time.monotonic()
    while True:
        left = timeout - (time.monotonic() - started)
        if left <= 0:
            raise LoopFailed(
                f"No webhook about shop {shop_id} arrived within {timeout:.0f} s. Is the worker running? "
                "(`make run` starts it; the delivery log is under Admin > Webhooks.)"
            )
        try:
            outcome, event, headers = receiver.events.get(timeout=min(left, 1.0))
        except queue.Empty:
            continue
        waited = time.monotonic() - started
        if outcome == "refused":
            raise LoopFailed(f"A webhook arrived whose signature did not verify ({event}); the receiver answered 400.")
        data = event.get("data", {})
        ours = event.get("type") == "connection.state_changed" and data.get("shop_id") == shop_id
        if ours and data.get("state") == "needs_reconnect":
            say(f"Arrived after {waited:.1f} s; webhook-id {headers.get('webhook-id')}, signature verified.")
            return event
        say(
            f"(Also received, verified: {event.get('type')} for shop {data.get('shop_id')}, state {data.get('state')}.)"
        )


def run(args) -> None:
    base = args.base_url
    step(1, "The API key, and is the dashboard there?")
    try:
        health = requests.get(f"{base}/healthz", timeout=5)
    except requests.ConnectionError:
        raise LoopFailed(
            f"Nothing answers at {base}: start the dashboard with `make run` in another terminal (or pass --base-url)."
        ) from None
    say(f"GET {base}/healthz -> HTTP {health.status_code}")
    if health.status_code != 200:
        raise LoopFailed(f"The dashboard at {base} is not healthy (HTTP {health.status_code}): {health.text[:200]}")
    key, made_key_id = obtain_key(args)
    say(f"The key: {key[:16]}... (the rest is its secret)")
    endpoint_id = None
    api = Api(base, key)
    try:
        with Receiver(args.receiver_host, args.receiver_port) as receiver:
            step(2, "A webhook receiver, registered with the API")
            say(f"Listening on {receiver.url}")
            asked = {"url": receiver.url, "description": "docs/platform_loop.py", "event_types": EVENT_TYPES}
            say("POST /api/v1/webhooks " + json.dumps(asked))
            created = api.call("POST", "/api/v1/webhooks", json=asked, expect=(201,)).json()
            endpoint_id = created["id"]
            receiver.webhook = Webhook(created["secret"])
            say(
                f"-> 201: endpoint {endpoint_id}, events {', '.join(created['event_types'])}; signing secret "
                f"whsec_... ({len(created['secret'])} characters, shown this once, kept in memory only)"
            )
            loop(args, api, receiver)
    finally:
        print()
        if endpoint_id is not None:
            try:
                api.call("DELETE", f"/api/v1/webhooks/{endpoint_id}", expect=(204, 401, 404))
                say(f"Cleaned up: webhook endpoint {endpoint_id} disabled (DELETE /api/v1/webhooks/{endpoint_id}).", 0)
            except (LoopFailed, requests.RequestException):
                say(f"Could not disable webhook endpoint {endpoint_id}; disable it under Admin > Webhooks.", 0)
        if made_key_id:
            revoke_key(made_key_id)


def loop(args, api: Api, receiver: Receiver) -> None:
    step(3, f"The shop “{args.shop_name}”: its connection, its token, a Graph call with it")
    listed = find_connection(api, args.shop_name)
    if listed is None or listed["state"] not in USABLE_STATES:
        state = listed["state"] if listed else "never connected"
        say(f"GET /api/v1/connections: the shop is {state}; connecting it first, as its merchant would.")
        known = listed["account"]["username"] if listed else None
        connect_as_merchant(args, Browser(args.base_url), known or args.instagram_username)
        listed = find_connection(api, args.shop_name)
    if listed is None or listed["state"] not in USABLE_STATES:
        raise LoopFailed(f"The shop “{args.shop_name}” has no working connection, even after connecting it.")
    if listed["login_path"] != "instagram":
        raise LoopFailed(
            f"The shop is connected through {listed['login_path']} Login; this script plays the Instagram Login "
            "path. Disconnect it on the dashboard and run the script again."
        )
    shop_id = listed["shop_id"]
    username = listed["account"]["username"]
    connection = api.call("GET", f"/api/v1/shops/{shop_id}/connection").json()
    say(
        f"GET /api/v1/shops/{shop_id}/connection -> state {connection['state']}, @{username}, "
        f"token {connection['token_age_seconds']} s old, expires {connection['token_expires_at']}, "
        f"last check {connection['last_checked_at'] or 'not yet'}"
    )
    answer = api.call("GET", f"/api/v1/shops/{shop_id}/token")
    token_body = answer.json()
    token = token_body["access_token"]
    say(
        f"GET /api/v1/shops/{shop_id}/token -> a token of {len(token)} characters, fingerprint "
        f"{token_body['token_fingerprint']}, expires {token_body['token_expires_at']} "
        f"(Cache-Control: {answer.headers.get('Cache-Control')})"
    )
    me = graph_me(args, token)
    if me.status_code != 200:
        raise LoopFailed(f"Graph refused the token the API just gave: HTTP {me.status_code} {me.text[:200]}")
    say(f"-> HTTP 200: {json.dumps(me.json())}")

    step(4, "Meta revokes the token; the service meets the error and reports it")
    revoke_in_sandbox(args, username)
    refused = graph_me(args, token)
    if refused.status_code == 200:
        raise LoopFailed("Graph still accepts the token after the password change; the sandbox did not revoke it.")
    error = refused.json().get("error", {})
    say(f"-> HTTP {refused.status_code}: {json.dumps(refused.json())}")
    report = {**error, "http_status": refused.status_code}
    idempotency_key = f"platform-loop-{uuid.uuid4()}"
    say(f"POST /api/v1/shops/{shop_id}/errors  (Idempotency-Key: {idempotency_key})")
    show_json("sent", report)
    result = api.call(
        "POST", f"/api/v1/shops/{shop_id}/errors", json=report, headers={"Idempotency-Key": idempotency_key}
    )

    step(5, "The API's answer, then the signed webhook")
    show_json("-> HTTP 200:", result.json())
    outcome = result.json()
    if outcome["connection"]["state"] != "needs_reconnect":
        raise LoopFailed(f"The report left the shop {outcome['connection']['state']}, not needs_reconnect.")
    if outcome["action"] != "confirmed_disconnected":
        say(f"(Note: action {outcome['action']}: something else had already found the revocation.)")
    again = api.call(
        "POST", f"/api/v1/shops/{shop_id}/errors", json=report, headers={"Idempotency-Key": idempotency_key}
    )
    say(
        f"The same report sent again with the same key -> HTTP {again.status_code}, Idempotent-Replayed: "
        f"{again.headers.get('Idempotent-Replayed')}, action {again.json()['action']} (the stored answer; "
        "applied once)"
    )
    say(f"Waiting for the webhook (a worker looks for queued ones every few seconds; at most {args.wait:.0f} s)...")
    event = wait_for_webhook(receiver, shop_id, args.wait)
    data = event["data"]
    say(f"{event['type']} at {event['timestamp']}:")
    say(
        f"shop {data['shop_id']} @{data['username']}: {data['previous_state']} -> {data['state']}, "
        f"cause {data['cause']}",
        5,
    )
    if data.get("diagnosis"):
        diagnosis = data["diagnosis"]
        say(f"diagnosis: {diagnosis['title']} ({diagnosis['confidence']})", 5)
        for line in diagnosis.get("evidence", [])[:2]:
            say(f"- {line}", 7)

    step(6, "The merchant's card has changed")
    merchant = Browser(args.base_url)
    merchant.log_in(args.merchant_email, args.merchant_password)
    card = merchant.get("/card", headers={"HX-Request": "true"}).text
    badge = first(r'<span class="state-badge[^"]*"[^>]*>(.*?)</span>\s*</header>', card)
    sentence = first(r'<p class="card-sentence">(.*?)</p>', card)
    say(f"Logged in as {args.merchant_email}; GET /card -> badge “{badge}”: {sentence}")
    panel = merchant.get("/what-happened", headers={"HX-Request": "true"}).text
    cause = first(r'<p class="diagnosis-cause"><strong>(.*?)</strong>', panel)
    confidence = first(r'<span class="confidence[^"]*">(.*?)</span>', panel)
    say(f"GET /what-happened -> “{cause}” ({confidence})")
    connection = api.call("GET", f"/api/v1/shops/{shop_id}/connection").json()
    diagnosis = connection.get("diagnosis") or {}
    say(
        f"GET /api/v1/shops/{shop_id}/connection -> state {connection['state']}, cause {connection['cause']}, "
        f"diagnosis “{diagnosis.get('title')}” ({diagnosis.get('confidence')})"
    )
    refused_token = api.call("GET", f"/api/v1/shops/{shop_id}/token", expect=(409,)).json()
    say(f"GET /api/v1/shops/{shop_id}/token -> HTTP 409: {refused_token['detail']}")
    if connection["state"] != "needs_reconnect" or badge is None:
        raise LoopFailed("The merchant's card or the API does not show the shop needing a reconnect.")
    print(
        "\nThe whole loop worked: token fetched, error reported and confirmed, signed webhook verified, "
        "the merchant's card changed. (Reconnect on the dashboard, or run this again: it reconnects first.)"
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base-url", default=os.environ.get("SHOP_HEALTH_URL", "http://127.0.0.1:5000"))
    parser.add_argument("--api-key", help="the API key (or SHOP_HEALTH_API_KEY)")
    parser.add_argument(
        "--create-key", action="store_true", help="make a key with `flask apikeys create` here, revoke it at the end"
    )
    parser.add_argument("--graph-base", help="Instagram's Graph API as the dashboard uses it (default: its sandbox)")
    parser.add_argument("--graph-version", default="v23.0")
    parser.add_argument("--shop-name", default="Bloom & Stem Flowers")
    parser.add_argument("--merchant-email", default="owner@bloom-and-stem.example")
    parser.add_argument("--merchant-password", default="sunflower-market-2026")
    parser.add_argument("--instagram-username", default="bloom_and_stem", help="the sandbox account to connect")
    parser.add_argument("--receiver-host", default="127.0.0.1")
    parser.add_argument("--receiver-port", type=int, default=0, help="0: any free port")
    parser.add_argument("--wait", type=float, default=90.0, help="seconds to wait for the webhook")
    args = parser.parse_args(argv)
    args.base_url = args.base_url.rstrip("/")
    if urlsplit(args.base_url).scheme not in ("http", "https"):
        parser.error("--base-url must start with http:// or https://")
    args.graph_base = (args.graph_base or f"{args.base_url}/sandbox/graph").rstrip("/")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    print(f"A platform service's loop against {args.base_url}")
    try:
        run(args)
    except LoopFailed as failure:
        sys.stdout.flush()
        print(f"\nFailed: {failure}", file=sys.stderr)
        return 1
    except requests.RequestException as error:
        sys.stdout.flush()
        print(f"\nFailed: the dashboard did not answer as expected ({type(error).__name__}: {error}).", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\nStopped.", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
