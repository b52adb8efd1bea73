"""A tiny stand-in for graph.instagram.com on loopback: fixed latency, counts refreshes per connection.

Used by the multi-process worker tests and by bench/sweep.py. Tokens look like
`stub-<connection id>-<generation>`; every token the stub ever issued stays valid, as Instagram's
old tokens do after a refresh.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit


class MetaStub:
    def __init__(self, latency: float = 0.1):
        self.latency = latency
        self.lock = threading.Lock()
        self.refreshes: Counter = Counter()
        self.checks: Counter = Counter()
        self.issued: set[str] = set()
        self.generation = 0
        stub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body go out as two writes; no 40 ms stall

            def log_message(self, *args):  # quiet
                pass

            def do_GET(self):  # noqa: N802 (http.server's name)
                parts = urlsplit(self.path)
                query = parse_qs(parts.query)
                token = (query.get("access_token") or [""])[0]
                time.sleep(stub.latency)
                status, body = stub.answer(parts.path, token)
                payload = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

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

    def answer(self, path: str, token: str) -> tuple[int, dict]:
        connection_id = self.connection_of(token)
        if connection_id is None or not self.valid(token):
            return 400, {
                "error": {
                    "message": "Invalid OAuth access token - Cannot parse access token",
                    "type": "OAuthException",
                    "code": 190,
                }
            }
        if path.endswith("/refresh_access_token"):
            with self.lock:
                self.generation += 1
                new_token = f"stub-{connection_id}-{self.generation}"
                self.issued.add(new_token)
                self.refreshes[connection_id] += 1
            return 200, {"access_token": new_token, "token_type": "bearer", "expires_in": 5184000}
        if path.endswith("/me"):
            with self.lock:
                self.checks[connection_id] += 1
            return 200, {"user_id": str(connection_id), "username": f"shop{connection_id}"}
        return 404, {"error": {"message": "Unknown path components", "type": "IGApiException", "code": 100}}

    def __enter__(self) -> MetaStub:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
