"""HTTP calls that end by one overall deadline, however slowly the other side trickles its reply.

`requests` timeouts bound each socket operation, not the call: a server that sends one byte every
few seconds keeps a call alive for ever, long past a worker's lease (promise 35). Here every request
is watched: connections register themselves with the calling thread's watch when they send, and a
timer shuts their sockets down when the deadline passes, which makes the blocked read fail at once.
"""

from __future__ import annotations

import contextlib
import heapq
import socket
import threading
import time
from typing import Any
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3 import exceptions as urllib3_exceptions
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

_watch = threading.local()


class DeadlineExceeded(requests.Timeout):
    """The whole call (connect, headers and body) took longer than its deadline."""


class _Watchdog:
    """One thread for every watch in the process: it wakes at the earliest deadline and fires it.

    A timer thread per call would cost a thread start for each of the worker's thousands of calls;
    a watch that ends first is simply skipped when its time comes.
    """

    def __init__(self) -> None:
        self.condition = threading.Condition()
        self.due: list[tuple[float, int, _Watch]] = []
        self.thread: threading.Thread | None = None

    def schedule(self, watch: _Watch) -> None:
        with self.condition:
            heapq.heappush(self.due, (watch.deadline, id(watch), watch))
            if self.thread is None or not self.thread.is_alive():
                self.thread = threading.Thread(target=self._run, name="http-deadline", daemon=True)
                self.thread.start()
            if self.due[0][2] is watch:
                self.condition.notify()  # only an earlier deadline changes when the watchdog must wake

    def _run(self) -> None:
        while True:
            with self.condition:
                while True:
                    # Calls that already ended need no firing: drop them now, whatever their deadline,
                    # so the watchdog wakes for calls still open, not once for every call ever made.
                    while self.due and self.due[0][2].closed:
                        heapq.heappop(self.due)
                    if self.due and self.due[0][0] <= time.monotonic():
                        break
                    timeout = self.due[0][0] - time.monotonic() if self.due else None
                    self.condition.wait(timeout)
                _, _, watch = heapq.heappop(self.due)
            watch.fire()


_watchdog = _Watchdog()


class _Watch:
    """The sockets one call in this thread uses, cut off when the call's deadline passes.

    Sockets, not connections, are recorded: when a reply says `Connection: close` (or is HTTP/1.0),
    http.client hands the socket to the response and forgets it on the connection, so the
    connection would have nothing left to cut while the body still trickles in.
    """

    def __init__(self, seconds: float):
        self.seconds = seconds
        self.deadline = time.monotonic() + seconds
        self.sockets: list[socket.socket] = []
        self.fired = False
        self.closed = False
        self.lock = threading.Lock()

    def add(self, sock: socket.socket | None) -> None:
        if sock is None:
            return
        with self.lock:
            if self.closed:
                return
            self.sockets.append(sock)
            fired = self.fired
        if fired:
            _cut(sock)

    def fire(self) -> None:
        with self.lock:
            if self.closed:
                return  # the call ended first: its pooled socket may already serve another call
            self.fired = True
            sockets = list(self.sockets)
        for sock in sockets:
            _cut(sock)

    def __enter__(self) -> _Watch:
        _watch.current = self
        _watchdog.schedule(self)
        return self

    def __exit__(self, *exc) -> None:
        with self.lock:
            self.closed = True
            self.sockets.clear()
        _watch.current = None


def _cut(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):  # already closed
        sock.shutdown(socket.SHUT_RDWR)


def _watch_socket(sock: socket.socket | None) -> None:
    watch = getattr(_watch, "current", None)
    if watch is not None:
        watch.add(sock)


class _WatchedConnectionMixin(HTTPConnection):
    """Report the socket to the calling thread's watch when it is opened and when it is reused."""

    def connect(self) -> None:
        super().connect()
        _watch_socket(self.sock)

    def request(self, *args, **kwargs):
        _watch_socket(getattr(self, "sock", None))
        return super().request(*args, **kwargs)


class _WatchedHTTPConnection(_WatchedConnectionMixin, HTTPConnection):
    pass


class _WatchedHTTPSConnection(_WatchedConnectionMixin, HTTPSConnection):
    pass


class _WatchedHTTPPool(HTTPConnectionPool):
    ConnectionCls = _WatchedHTTPConnection


class _WatchedHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _WatchedHTTPSConnection


WATCHED_POOLS = {"http": _WatchedHTTPPool, "https": _WatchedHTTPSPool}


class DeadlineAdapter(HTTPAdapter):
    """A transport adapter whose every request, body included, ends within `deadline` seconds."""

    def __init__(self, deadline: float, *, max_body_bytes: int | None = None, **kwargs):
        self.deadline = deadline
        # Read at most this much of a body and drop the connection: a caller that keeps only an
        # excerpt must not hold a huge answer in memory.
        self.max_body_bytes = max_body_bytes
        super().__init__(**kwargs)

    def init_poolmanager(self, *args, **kwargs) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = WATCHED_POOLS

    def proxy_manager_for(self, proxy, **proxy_kwargs):
        manager = super().proxy_manager_for(proxy, **proxy_kwargs)
        manager.pool_classes_by_scheme = WATCHED_POOLS  # behind HTTPS_PROXY too
        return manager

    def send(self, request, stream=False, timeout=None, verify=True, cert=None, proxies=None):
        with _Watch(self.deadline) as watch:
            try:
                # Per-operation timeouts never exceed the deadline; the watch bounds their sum.
                response = super().send(
                    request, stream=stream, timeout=timeout or self.deadline, verify=verify, cert=cert, proxies=proxies
                )
                if not stream:
                    _read_body(response, self.max_body_bytes)  # under the watch, not after it
            except requests.RequestException as error:
                if watch.fired:
                    raise DeadlineExceeded(f"no complete answer within {self.deadline:g} s") from error
                raise
        if watch.fired:
            raise DeadlineExceeded(f"no complete answer within {self.deadline:g} s")
        return response


class SettledSession(requests.Session):
    """A session that reads proxy and CA-bundle settings from the environment once per host, not per call.

    requests looks them up on every request, walking the whole of os.environ twice (proxies, then
    no_proxy): a sixth of the CPU time of a call to the Meta stub (0.83 ms -> 0.69 ms). A process's
    environment does not change while it runs, and Meta's calls go to two or three hosts.
    """

    def __init__(self) -> None:
        super().__init__()
        self._settings_by_origin: dict[tuple, Any] = {}

    def merge_environment_settings(self, url, proxies, stream, verify, cert):
        if proxies or not self.trust_env:  # proxies given for this call: requests' own way
            return super().merge_environment_settings(url, proxies, stream, verify, cert)
        parts = urlsplit(url)
        key = (parts.scheme, parts.netloc, stream, verify, cert)
        settings = self._settings_by_origin.get(key)
        if settings is None:
            settings = super().merge_environment_settings(url, {}, stream, verify, cert)
            self._settings_by_origin[key] = settings
        return {**settings, "proxies": dict(settings["proxies"])}


def _read_body(response: requests.Response, max_bytes: int | None) -> None:
    if max_bytes is None:
        response.content  # noqa: B018 (reading it keeps it)
        return
    # A bounded read: what is left unread stays on a connection that is closed, not pooled. urllib3's
    # errors become requests' own, as `.content` would raise them.
    try:
        response._content = response.raw.read(max_bytes, decode_content=True) or b""
    except urllib3_exceptions.DecodeError as error:
        raise requests.exceptions.ContentDecodingError(error) from error
    except (urllib3_exceptions.ProtocolError, urllib3_exceptions.ReadTimeoutError, OSError) as error:
        raise requests.exceptions.ChunkedEncodingError(error) from error
    finally:
        response.raw.close()
    response._content_consumed = True  # type: ignore[attr-defined]


def deadline_session(deadline: float, pool_maxsize: int = 10, max_body_bytes: int | None = None) -> requests.Session:
    """A requests session whose calls end by `deadline` seconds, over http and https alike.

    With `max_body_bytes`, an answer's body is read only that far (the rest is dropped with the connection).
    """
    session = SettledSession()
    adapter = DeadlineAdapter(deadline, max_body_bytes=max_body_bytes, pool_connections=4, pool_maxsize=pool_maxsize)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return session
