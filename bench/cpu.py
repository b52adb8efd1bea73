"""CPU time of processes the benchmarks start, and of the PostgreSQL backends that serve them (from /proc)."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import psycopg

TICKS = os.sysconf("SC_CLK_TCK")


def process_cpu(pid: int) -> float | None:
    """User + system CPU seconds of a process, from /proc (None once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / TICKS


class BackendWatch:
    """Samples the CPU of the PostgreSQL backends named `application_name` until the block ends.

    Needs the database server on this machine (its processes readable in /proc); a backend that
    ends between two samples loses at most its last 0.2 s.
    """

    def __init__(self, url: str, application_name: str):
        self.url = url
        self.application_name = application_name
        self.cpu: dict[int, float] = {}
        self.baseline: dict[int, float] = {}  # backends already there when the watch began: counted from then
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    @property
    def seconds(self) -> float:
        return sum(seconds - self.baseline.get(pid, 0.0) for pid, seconds in self.cpu.items())

    def _sample(self, connection) -> None:
        rows = connection.execute(
            "SELECT pid FROM pg_stat_activity WHERE application_name = %s", (self.application_name,)
        ).fetchall()
        for (pid,) in rows:
            seconds = process_cpu(pid)
            if seconds is not None:
                self.cpu[pid] = seconds

    def _run(self) -> None:
        with psycopg.connect(self.url, autocommit=True) as connection:
            while not self.stop.wait(0.2):
                self._sample(connection)
            self._sample(connection)

    def __enter__(self) -> BackendWatch:
        with psycopg.connect(self.url, autocommit=True) as connection:
            self._sample(connection)
        self.baseline = dict(self.cpu)
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join()
