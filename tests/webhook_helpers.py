"""A real webhook receiver on loopback, for tests that need the network: slow, trickling or counting."""

from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks.webhooks import Webhook


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """Answers POSTs with `status` after `delay` seconds; with `trickle` it sends its body a byte at a time.

    Every request is kept (path, headers, body), so a test can verify signatures as a real receiver
    would and count deliveries per webhook id and endpoint.
    """

    status: int = 204
    delay: float = 0.0
    trickle: float | None = None  # seconds between the body's bytes
    hold: threading.Event | None = None  # when given, each answer waits until it is set (10 s at most)
    received: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __enter__(self) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):  # noqa: N802 (http.server's name)
                length = int(self.headers.get("Content-Length", 0))
                body = self.rfile.read(length)
                with receiver.lock:
                    receiver.received.append(Received(self.path, {k.lower(): v for k, v in self.headers.items()}, body))
                time.sleep(receiver.delay)
                if receiver.hold is not None:
                    receiver.hold.wait(10)
                if receiver.trickle is None:
                    self.send_response(receiver.status)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                text = b"x" * 200
                self.send_response(receiver.status)
                self.send_header("Content-Length", str(len(text)))
                self.end_headers()
                try:
                    for byte in text:
                        self.wfile.write(bytes([byte]))
                        self.wfile.flush()
                        time.sleep(receiver.trickle)
                except OSError:
                    pass  # the sender gave up: its deadline cut the connection

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    def url(self, path: str = "/hooks") -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}{path}"

    def per_endpoint_and_id(self) -> Counter:
        with self.lock:
            return Counter((item.path, item.headers["webhook-id"]) for item in self.received)


def verify(secret: str, body: bytes, headers: dict[str, str]):
    """What a platform service does with each request it receives: the library's own check."""
    return Webhook(secret).verify(body, headers)
