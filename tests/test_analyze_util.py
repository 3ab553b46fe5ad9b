"""A builder of hand-written tracedsync logs for the analyze tests (and a test of it).

`Log` writes JSON lines shaped like the recorder's (docs/events.md) with a fake clock that
advances 1 µs per event unless told otherwise, so every test log is small and deterministic.
"""

from __future__ import annotations

import os
from typing import Any

import orjson

from tracedsync.analysis.aggregate import Aggregate
from tracedsync.analysis.findings import Finding
from tracedsync.analysis.scan import scan_file


class Log:
    """One process's log, built event by event."""

    def __init__(self, pid: int = 100, ts: int = 1_000_000_000, level: str = "full",
                 schema: int = 1) -> None:
        self.pid = pid
        self.ts = ts
        self.lines: list[dict[str, Any]] = []
        self.ev("session", pid, schema=schema, version="0.1.0", ppid=1, argv=["app.py"],
                python="3.11.7", hostname="h", wall_ns=0, mono_ns=ts,
                settings={"level": level})

    def ev(self, event: str, tid: int | None, /, dt: int = 1000, **fields: Any) -> dict[str, Any]:
        """Append an event ``dt`` ns after the previous one."""
        self.ts += dt
        e = {"event": event, "ts": self.ts, "pid": self.pid, "tid": tid, **fields}
        self.lines.append(e)
        return e

    def thread(self, tid: int, name: str) -> None:
        self.ev("thread", tid, ident=tid + 10_000, name=name, daemon=False)

    def created(self, n: int, kind: str = "Lock", name: str | None = None,
                site: str = "app.py:1", lock: str | None = None) -> str:
        prim = f"{self.pid}.{n}"
        extra = {"lock": lock} if kind == "Condition" else {}
        self.ev("created", self.pid, prim=prim, kind=kind, name=name, site=site, func="f",
                **extra)
        return prim

    def acquire(self, tid: int, prim: str, site: str, depth: int = 1, wait: int = 0,
                blocked_by: int | None = None, ok: bool = True, dt: int = 1000,
                **extra: Any) -> None:
        fields: dict[str, Any] = {"blocking": True, "timeout": None, "site": site, "func": "f"}
        fields.update(extra)
        self.ev("acquire", tid, dt=dt, prim=prim, depth=depth, ok=ok, contended=wait > 0,
                wait_ns=wait, blocked_by=blocked_by, **fields)

    def release(self, tid: int, prim: str, depth: int = 0, hold: int | None = None,
                dt: int = 1000, **extra: Any) -> None:
        fields: dict[str, Any] = {"prim": prim, "depth": depth, **extra}
        if depth == 0:
            fields["hold_ns"] = hold if hold is not None else dt
        self.ev("release", tid, dt=dt, **fields)

    def end(self) -> None:
        self.ev("session_end", self.pid, dropped=0, written=len(self.lines) + 1)

    def text(self) -> bytes:
        return b"".join(orjson.dumps(e) + b"\n" for e in self.lines)

    def write(self, directory: Any) -> str:
        """Write ``tracedsync-<pid>.jsonl`` into ``directory``; returns its path."""
        path = os.path.join(os.fspath(directory), f"tracedsync-{self.pid}.jsonl")
        with open(path, "wb") as fh:
            fh.write(self.text())
        return path

    def scan(self, directory: Any) -> Aggregate:
        return scan_file(self.write(directory))


def kinds(findings: list[Finding]) -> list[str]:
    return [f.kind for f in findings]


def test_builder_writes_what_the_scanner_reads(tmp_path: Any) -> None:
    """A log made by the builder scans without problems and counts its events."""
    log = Log()
    prim = log.created(1)
    log.thread(7, "worker")
    log.acquire(7, prim, "app.py:10")
    log.release(7, prim)
    log.end()
    agg = log.scan(tmp_path)
    assert agg.problem_count == 0
    assert agg.event_counts["acquire"] == 1
    assert agg.sources[0].ended
