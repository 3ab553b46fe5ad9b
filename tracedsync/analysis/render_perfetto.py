"""``--format perfetto``: Chrome trace-event JSON for Perfetto (ui.perfetto.dev) or chrome://tracing.

The trace is drawn while the logs are scanned (`trace.py` says what is drawn and how): the
scan of each file writes its part, and this renderer writes the envelope, copies the parts in,
streaming, and adds the thread and process names from the report. ``tracedsync analyze -f
perfetto`` reads every log once. A report given without its parts (one read back from JSON,
say) has its trace drawn here from the logs it names, which are then read again.

The names come after the events (trace viewers take metadata events anywhere; Chrome writes
its own at the end): that lets a serial scan draw straight into the output file (``streamed``,
see cli.py), with `HEADER` written first, no part and no copy. Every drawn event is written
``,\n{...}``: the first one's comma becomes a space (`first_comma`).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from typing import IO, Any, TextIO

import orjson

from .inputs import process_sets
from .reader import Problem
from .report import Report
from .scan import scan_files
from .trace import TraceSpec

COPY_BLOCK = 1 << 20
HEADER = b'{"displayTimeUnit":"ns","traceEvents":['


def first_comma(path: str) -> bool:
    """In a file of `HEADER` and drawn events: the first event's comma made a space; whether
    there is an event."""
    with open(path, "r+b") as fh:
        fh.seek(len(HEADER))
        if fh.read(1) != b",":
            return False
        fh.seek(len(HEADER))
        fh.write(b" ")
        return True


def _spec_pid(hosts: tuple[str, ...], host: str, pid: int) -> int:
    return TraceSpec("", 0, hosts).pid(host, pid)


def _copy(path: str, raw: IO[bytes] | None, out: TextIO, first: bool) -> bool:
    """Copy a part to the output (``first``: no event written yet: its first comma becomes a
    space); whether it had an event."""
    with open(path, "rb") as fh:
        if first:
            c = fh.read(1)
            if not c:
                return False
            c = b" " if c == b"," else c
            if raw is not None:
                raw.write(c)
                raw.flush()
            else:
                out.write(c.decode())
        if raw is not None and _sendfile(fh, raw):
            return True
        while True:
            block = fh.read(COPY_BLOCK)
            if not block:
                return True
            if raw is not None:
                raw.write(block)
            else:
                out.write(block.decode())


def _sendfile(src: IO[bytes], dst: IO[bytes]) -> bool:
    """Copy ``src`` to ``dst`` in the kernel when both are plain files; False if not done."""
    try:
        out_fd = dst.fileno()
        size = os.fstat(src.fileno()).st_size - src.tell()
    except (OSError, ValueError, AttributeError):
        return False
    if not hasattr(os, "sendfile"):  # pragma: no cover - every platform we test has it
        return False
    dst.flush()
    start = src.tell()
    offset = 0
    try:
        while offset < size:
            sent = os.sendfile(out_fd, src.fileno(), start + offset, size - offset)
            if sent == 0:
                break
            offset += sent
    except OSError:
        if offset:
            raise  # part of it went out: going on would duplicate it
        return False
    return offset == size


def draw(report: Report, directory: str) -> tuple[list[str], list[Problem]]:
    """Draw the trace parts of the logs ``report`` names (reading them again)."""
    hosts = tuple(report.totals.get("hosts") or ())
    parts: list[str] = []
    problems: list[Problem] = []
    # A rotated set is one process's stream: drawn in one pass, file after file.
    for i, files in enumerate(process_sets(src["path"] for src in report.sources)):
        part = os.path.join(directory, f"{i:06d}.part")
        try:
            scan_files(files, trace=TraceSpec(part, (i + 1) << 40, hosts))
        except Exception as exc:  # a log gone since, or changed: say so, draw the rest
            problems.append(Problem(files[-1], 0, f"cannot draw its trace ({exc})"))
            continue
        parts.append(part)
    return parts, problems


class PerfettoRenderer:
    """See the module docstring. ``parts``: the trace parts drawn by the scan; ``streamed``:
    the output already holds `HEADER` and the events (``events``: whether there is one)."""

    def __init__(
        self, parts: list[str] | None = None, streamed: bool = False, events: bool = False,
        **_: Any,
    ) -> None:
        self.parts = parts
        self.streamed = streamed
        self.events = events

    def render(self, report: Report, out: TextIO) -> None:
        tmp = None
        parts = self.parts
        problems: list[Problem] = []
        if parts is None and not self.streamed:
            tmp = tempfile.mkdtemp(prefix="tracedsync-trace-")
            parts, problems = draw(report, tmp)
        try:
            self._write(report, parts or [], problems, out)
        finally:
            if tmp is not None:
                shutil.rmtree(tmp, ignore_errors=True)

    def _write(
        self, report: Report, parts: list[str], problems: list[Problem], out: TextIO
    ) -> None:
        hosts = tuple(report.totals.get("hosts") or ())
        head: list[dict[str, Any]] = []
        for t in report.threads:
            head.append(
                {
                    "ph": "M",
                    "name": "thread_name",
                    "pid": _spec_pid(hosts, t.get("host", ""), t["pid"]),
                    "tid": t["tid"],
                    "args": {"name": t["name"]},
                }
            )
        for src in report.sources:
            if src.get("pid") is None:
                continue
            argv = next((s.get("argv") for s in src.get("sessions", []) if s.get("argv")), None)
            name = " ".join(str(a) for a in argv) if argv else os.path.basename(src["path"])
            where = f"{src['host']}:" if src.get("host") and hosts else ""
            head.append(
                {
                    "ph": "M",
                    "name": "process_name",
                    "pid": _spec_pid(hosts, src.get("host", ""), src["pid"]),
                    "args": {"name": f"{name} ({where}{src['pid']})"},
                }
            )
        events = self.events
        if not self.streamed:
            out.write(HEADER.decode())
            raw = getattr(out, "buffer", None)
            out.flush()
            for part in parts:
                events = _copy(part, raw, out, not events) or events
        if head:
            names = ",\n".join(orjson.dumps(e).decode() for e in head)
            out.write((",\n" if events else "\n") + names)
        meta = {"tracedsync": report.tracedsync, "problems": [str(p) for p in problems[:100]]}
        out.write('\n],"metadata":' + orjson.dumps(meta).decode() + "}\n")


RENDERER = PerfettoRenderer
