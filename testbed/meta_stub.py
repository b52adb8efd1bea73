"""A stand-in for graph.instagram.com on loopback that misbehaves the way the real one does.

Used by the multi-process worker tests, the race and fault tests, and bench/sweep.py. Tokens look
like `stub-<connection id>-<generation>`; every token the stub ever issued stays valid, as
Instagram's old tokens do after a refresh.

Faults are queued with `add_fault(kind, ...)` and hit the matching calls in order:

- `latency`: `seconds`, or a random delay between `low` and `high`;
- `trickle`: the whole reply (status line, headers, body) one byte every `interval` seconds;
  with `close=True` the headers come at once with `Connection: close` and only the body trickles
  (as a load balancer's error page or an HTTP/1.0 proxy would send it);
- `status`: HTTP `status` with an HTML error page, as a load balancer sends it;
- `reset`: the connection is closed without an answer;
- `malformed`: 200 with a body that is not JSON;
- `app_rate_limit`: code 4 with `X-App-Usage` at 100%;
- `account_rate_limit`: code 32 with `X-Business-Use-Case-Usage` at 100% and a time to regain access;
- `echo_token`: code 190 whose message quotes the token that was sent ("Malformed access token ...");
- `revoked`: code 190 subcode 460 (password changed).

`hold()` keeps matching calls open until the test releases them, and tells the test when one arrives.
"""

from __future__ import annotations

import json
import random
import select
import socket
import threading
import time
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

FAULT_KINDS = frozenset(
    {
        "latency",
        "trickle",
        "status",
        "reset",
        "malformed",
        "app_rate_limit",
        "account_rate_limit",
        "echo_token",
        "revoked",
    }
)


@dataclass
class Fault:
    kind: str
    path: str | None = None  # "refresh_access_token", "me", or None for any
    connection_id: int | None = None
    times: int | None = 1  # None: every matching call
    params: dict = field(default_factory=dict)

    def matches(self, path: str, connection_id: int | None) -> bool:
        if self.path is not None and not path.endswith("/" + self.path):
            return False
        return self.connection_id is None or self.connection_id == connection_id


@dataclass
class Hold:
    """Calls matching `path` wait here until `release()`; `arrived` is set when the first one does."""

    path: str | None
    arrived: threading.Event = field(default_factory=threading.Event)
    released: threading.Event = field(default_factory=threading.Event)
    count: int = 0

    def wait_for_call(self, timeout: float = 10.0) -> None:
        if not self.arrived.wait(timeout):
            raise TimeoutError(f"no call to {self.path or 'Meta'} arrived within {timeout} s")

    def release(self) -> None:
        self.released.set()


class MetaStub:
    def __init__(self, latency: float = 0.1, seed: int = 0):
        self.latency = latency
        self.random = random.Random(seed)
        self.lock = threading.Lock()
        self.refreshes: Counter = Counter()
        self.checks: Counter = Counter()
        self.calls: Counter = Counter()  # per connection id, every call that reached the stub
        self.in_flight: Counter = Counter()
        self.most_at_once: Counter = Counter()  # per connection id: the most calls open at the same time
        self.issued: set[str] = set()
        self.generation = 0
        self.faults: list[Fault] = []
        self.holds: list[Hold] = []
        self.faults_served: Counter = Counter()
        # time.monotonic() of the first call that arrived and of the last answer (bench/sweep.py)
        self.first_call_at: float | None = None
        self.last_answer_at: float | None = None
        stub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body go out as two writes; no 40 ms stall

            def log_message(self, *args):  # quiet
                pass

            def do_GET(self):  # noqa: N802 (http.server's name)
                stub.serve(self)

            do_POST = do_GET  # noqa: N815

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.server.request_queue_size = 1024
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    @staticmethod
    def seed_token(connection_id: int) -> str:
        return f"stub-{connection_id}-0"

    @staticmethod
    def connection_of(token: str) -> int | None:
        parts = token.split("-")
        return int(parts[1]) if len(parts) == 3 and parts[0] == "stub" and parts[1].isdigit() else None

    def valid(self, token: str) -> bool:
        return token.endswith("-0") or token in self.issued

    def add_fault(
        self, kind: str, *, path: str | None = None, connection_id: int | None = None, times: int | None = 1, **params
    ) -> Fault:
        """Queue a fault for the next `times` matching calls (None: all of them)."""
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault {kind!r}; one of {sorted(FAULT_KINDS)}")
        fault = Fault(kind, path, connection_id, times, params)
        with self.lock:
            self.faults.append(fault)
        return fault

    def clear_faults(self) -> None:
        with self.lock:
            self.faults.clear()

    @contextmanager
    def hold(self, path: str | None = None):
        """Keep matching calls open inside the block (or until `release()`); released on exit."""
        held = Hold(path)
        with self.lock:
            self.holds.append(held)
        try:
            yield held
        finally:
            held.release()
            with self.lock:
                self.holds.remove(held)

    def _take_fault(self, path: str, connection_id: int | None) -> Fault | None:
        with self.lock:
            for fault in self.faults:
                if fault.matches(path, connection_id):
                    if fault.times is not None:
                        fault.times -= 1
                        if fault.times <= 0:
                            self.faults.remove(fault)
                    self.faults_served[fault.kind] += 1
                    return fault
        return None

    def serve(self, handler: BaseHTTPRequestHandler) -> None:
        connection_id = None
        try:
            connection_id = self._serve(handler)
        finally:
            with self.lock:
                self.in_flight[connection_id] -= 1
                self.last_answer_at = time.monotonic()

    def _serve(self, handler: BaseHTTPRequestHandler) -> int | None:
        parts = urlsplit(handler.path)
        query = parse_qs(parts.query)
        if handler.command == "POST":
            length = int(handler.headers.get("Content-Length") or 0)
            query.update(parse_qs(handler.rfile.read(length).decode()))
        token = (query.get("access_token") or [""])[0]
        connection_id = self.connection_of(token)
        with self.lock:
            self.first_call_at = self.first_call_at or time.monotonic()
            self.calls[connection_id] += 1
            self.in_flight[connection_id] += 1
            self.most_at_once[connection_id] = max(self.most_at_once[connection_id], self.in_flight[connection_id])
            holds = [h for h in self.holds if h.path is None or parts.path.endswith("/" + h.path)]
        for held in holds:
            held.count += 1
            held.arrived.set()
            held.released.wait(60)
        fault = self._take_fault(parts.path, connection_id)
        delay = self.latency
        if fault is not None and fault.kind == "latency":
            if "seconds" in fault.params:
                delay = fault.params["seconds"]
            else:
                delay = self.random.uniform(fault.params.get("low", 0.0), fault.params.get("high", 1.0))
        time.sleep(delay)
        if fault is not None and fault.kind == "reset":
            handler.close_connection = True
            handler.connection.close()
            return connection_id
        status, body, headers = self.answer(parts.path, token, fault)
        if isinstance(body, bytes):
            payload, content_type = body, headers.pop("Content-Type", "text/html")
        else:
            payload, content_type = json.dumps(body).encode(), "application/json"
        head = [f"HTTP/1.1 {status} Stub", f"Content-Type: {content_type}", f"Content-Length: {len(payload)}"]
        closing = fault is not None and fault.kind == "trickle" and fault.params.get("close", False)
        if closing:
            head.append("Connection: close")
            handler.close_connection = True
        head += [f"{name}: {value}" for name, value in headers.items()]
        header_bytes = ("\r\n".join(head) + "\r\n\r\n").encode()
        raw = header_bytes + payload
        try:
            if fault is not None and fault.kind == "trickle":
                interval = fault.params.get("interval", 0.05)
                start = 0
                if closing:
                    handler.wfile.write(header_bytes)
                    handler.wfile.flush()
                    start = len(header_bytes)
                for index in range(start, len(raw)):
                    handler.wfile.write(raw[index : index + 1])
                    handler.wfile.flush()
                    if self._client_gave_up(handler.connection, interval):
                        break
            else:
                handler.wfile.write(raw)
        except OSError:
            handler.close_connection = True  # the client gave up (its deadline); nothing to do
        return connection_id

    @staticmethod
    def _client_gave_up(connection: socket.socket, seconds: float) -> bool:
        """Wait `seconds`, but stop at once when the client closes: its call is over, not in flight."""
        readable, _, _ = select.select([connection], [], [], seconds)
        if not readable:
            return False
        try:
            gone = connection.recv(1, socket.MSG_PEEK) == b""
        except OSError:
            return True
        if not gone:
            time.sleep(seconds)  # the client sent more (it never should mid-reply): keep the pace
        return gone

    def answer(self, path: str, token: str, fault: Fault | None = None) -> tuple[int, dict | bytes, dict]:
        """The reply to one call: (status, JSON body or raw bytes, extra headers)."""
        kind = fault.kind if fault is not None else None
        if kind == "status":
            status = fault.params.get("status", 502)
            page = f"<html><body><h1>{status} Bad Gateway</h1><p>Please try again.</p></body></html>"
            return status, page.encode(), {"Content-Type": "text/html"}
        if kind == "malformed":
            return 200, b"<!DOCTYPE html><title>Instagram</title>", {"Content-Type": "text/html"}
        if kind == "echo_token":
            return 400, self._error(f"Malformed access token {token}", 190), {}
        if kind == "revoked":
            message = (
                "Error validating access token: The session has been invalidated because the user changed "
                "their password or Facebook has changed the session for security reasons."
            )
            return 400, self._error(message, 190, subcode=460), {}
        if kind == "app_rate_limit":
            usage = {"call_count": 100, "total_time": 40, "total_cputime": 30}
            return 400, self._error("(#4) Application request limit reached", 4), {"X-App-Usage": json.dumps(usage)}
        if kind == "account_rate_limit":
            minutes = fault.params.get("minutes", 5)
            usage = {
                "17841400000000000": [
                    {
                        "type": "instagram",
                        "call_count": 100,
                        "total_cputime": 10,
                        "total_time": 10,
                        "estimated_time_to_regain_access": minutes,
                    }
                ]
            }
            return (
                400,
                self._error("(#32) Page request limit reached", 32),
                {"X-Business-Use-Case-Usage": json.dumps(usage)},
            )
        connection_id = self.connection_of(token)
        if connection_id is None or not self.valid(token):
            return 400, self._error("Invalid OAuth access token - Cannot parse access token", 190), {}
        if path.endswith("/refresh_access_token"):
            with self.lock:
                self.generation += 1
                new_token = f"stub-{connection_id}-{self.generation}"
                self.issued.add(new_token)
                self.refreshes[connection_id] += 1
            return 200, {"access_token": new_token, "token_type": "bearer", "expires_in": 5184000}, {}
        if path.endswith("/me"):
            with self.lock:
                self.checks[connection_id] += 1
            return 200, {"user_id": str(connection_id), "username": f"shop{connection_id}"}, {}
        return 404, self._error("Unknown path components", 100, error_type="IGApiException"), {}

    @staticmethod
    def _error(message: str, code: int, *, subcode: int | None = None, error_type: str = "OAuthException") -> dict:
        error = {"message": message, "type": error_type, "code": code, "fbtrace_id": "AbCdEfGhIjK"}
        if subcode is not None:
            error["error_subcode"] = subcode
        return {"error": error}

    def __enter__(self) -> MetaStub:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        for held in list(self.holds):
            held.release()
        self.server.shutdown()
        self.server.server_close()
