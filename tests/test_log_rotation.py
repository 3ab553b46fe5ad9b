"""``max_log_bytes``: the log rotates over four files, keeps the most recent history, says what it
deleted, and the analyzer reads a rotated set as one process's stream."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from helpers import read_jsonl
from test_analyze_util import Log

import tracedsync
from tracedsync._core import schema
from tracedsync._record.config import MIN_LOG_BYTES, ConfigError, Settings
from tracedsync._record.sink import LOG_FILES, Sink, count_lines, rotated_path
from tracedsync.analysis.reader import log_files, process_sets, read_all
from tracedsync.analysis.scan import scan_files
from tracedsync.analysis.summary import summarise
from tracedsync.cli import main


# -- the setting -----------------------------------------------------------------------------------
def test_max_log_bytes_from_environment_and_validation() -> None:
    """TRACEDSYNC_MAX_LOG_BYTES takes bytes with a binary suffix, or none/off; it round-trips
    through to_env and shows in the session header's settings; bad values are refused."""
    assert Settings().max_log_bytes == 1 << 30
    for raw, want in (("65536", 65536), ("64K", 65536), ("64KiB", 65536), ("512m", 512 << 20),
                      ("2G", 2 << 30), ("none", None), ("OFF", None), ("", 1 << 30)):
        s = Settings.from_env({"TRACEDSYNC_MAX_LOG_BYTES": raw})
        assert s.max_log_bytes == want, raw
        assert Settings.from_env(s.to_env()).max_log_bytes == want
        assert s.public()["max_log_bytes"] == want
    # a bad variable is reported and ignored (the default kept), as every other one
    for raw, why in (("1.5G", "a number of bytes"), ("lots", "a number of bytes"),
                     ("-1", "a number of bytes"), ("100", ">= 65536")):
        errors: list[str] = []
        s = Settings.from_env({"TRACEDSYNC_MAX_LOG_BYTES": raw}, errors=errors)
        assert s.max_log_bytes == 1 << 30
        assert len(errors) == 1 and "TRACEDSYNC_MAX_LOG_BYTES" in errors[0], errors
        assert why in errors[0]
    for bad in (MIN_LOG_BYTES - 1, 1.5e9, True, "1G"):
        with pytest.raises(ConfigError, match="max_log_bytes must be"):
            Settings(max_log_bytes=bad)  # type: ignore[arg-type]
    # configure(max_log_bytes=None) means "no cap", not "unchanged"
    assert Settings(max_log_bytes=MIN_LOG_BYTES).replace(max_log_bytes=None).max_log_bytes is None


# -- the sink --------------------------------------------------------------------------------------
class _Opening:
    """The recorder's part: a header per file (its part number) and the rotated event."""

    def __init__(self) -> None:
        self.part = 0
        self.lost: list[int | None] = []

    def __call__(self, lost: int | None) -> list[dict[str, Any]]:
        self.lost.append(lost)
        events: list[dict[str, Any]] = [{"event": "session", "ts": 0, "pid": 1, "tid": 1,
                                         "part": self.part}]
        self.part += 1
        if lost:
            events.append({"event": "dropped", "ts": 0, "pid": 1, "tid": None, "count": lost,
                           "reason": "rotated"})
        return events


def _batch(n: int, k: int) -> list[dict[str, Any]]:
    """``n`` events of about 100 bytes each (numbered from ``k``)."""
    return [{"event": "acquire", "ts": k + i, "pid": 1, "tid": 2, "pad": "x" * 60}
            for i in range(n)]


def _dropped(self: Any) -> Any:  # make_dropped: never called here (no write fails)
    raise AssertionError("no write failed")


def test_sink_rotates_keeps_four_files_and_counts_what_it_deletes(tmp_path: Path) -> None:
    """Before a write that would pass a quarter of the cap, the current file becomes .1 (the others
    shift), the oldest is deleted, and the new file opens with its own header and a dropped event
    that counts exactly the lines the deleted file held. No file passes its share (the Python
    path knows a batch's size before writing it)."""
    path = str(tmp_path / "tracedsync-1.jsonl")
    opening = _Opening()
    cap = 64 * 1024
    sink = Sink(path, max_bytes=cap, opening=opening)
    expected: dict[int, int] = {}  # part -> the lines of the file deleted to start it
    k = 0
    while opening.part < 12:
        oldest = rotated_path(path, LOG_FILES - 1)
        before = count_lines(oldest) if os.path.exists(oldest) else None
        parts = opening.part
        sink.write(_batch(7, k), _dropped)
        k += 7
        if opening.part != parts and before is not None:
            expected[opening.part - 1] = before
    sink.close()
    files = sorted(os.listdir(tmp_path))
    assert files == sorted(os.path.basename(rotated_path(path, n)) for n in range(LOG_FILES))
    seen = []
    for n in range(LOG_FILES - 1, -1, -1):  # oldest first
        lines = read_jsonl(rotated_path(path, n))
        assert lines[0]["event"] == "session"
        part = lines[0]["part"]
        seen.append(part)
        assert os.path.getsize(rotated_path(path, n)) <= cap // LOG_FILES
        assert lines[1]["event"] == "dropped" and lines[1]["reason"] == "rotated"
        assert lines[1]["count"] == expected[part]
    assert seen == list(range(opening.part - LOG_FILES, opening.part))
    # every acquire left is a contiguous run of the most recent ones, in order
    ts = [e["ts"] for f in log_files([str(tmp_path)]) for e in read_jsonl(f)
          if e["event"] == "acquire"]
    assert ts == list(range(k - len(ts), k))
    assert opening.lost[:LOG_FILES] == [None] * LOG_FILES  # nothing deleted until four files


def test_a_file_changed_behind_the_writers_back_is_counted_when_deleted(tmp_path: Path) -> None:
    """The writer counts what it writes, so a rotation need not read back the file it deletes;
    a file that changed since (or that it did not write: an earlier process with the same pid)
    is counted from the disk instead."""
    path = str(tmp_path / "tracedsync-1.jsonl")
    oldest = rotated_path(path, LOG_FILES - 1)
    with open(oldest, "wb") as fh:  # left by an earlier process: 3 lines
        fh.write(b'{"event":"session","ts":0,"pid":1,"tid":1}\n' * 3)
    opening = _Opening()
    sink = Sink(path, max_bytes=64 * 1024, opening=opening)
    k = 0

    def until_part(part: int) -> None:
        nonlocal k
        while opening.part < part:
            sink.write(_batch(7, k), _dropped)
            k += 7

    until_part(2)  # the first rotation deleted the earlier process's file
    assert opening.lost[1] == 3
    until_part(LOG_FILES + 1)
    with open(oldest, "ab") as fh:  # appended to behind the writer's back
        fh.write(b'{"event":"acquire","ts":0,"pid":1,"tid":1}\n' * 5)
    expected = count_lines(oldest)
    until_part(LOG_FILES + 2)
    assert opening.lost[-1] == expected
    sink.close()
    assert read_jsonl(path)[1] == {"event": "dropped", "ts": 0, "pid": 1, "tid": None,
                                   "count": expected, "reason": "rotated"}


def test_native_writes_rotate_before_the_next_batch(tmp_path: Path) -> None:
    """The native renderer writes straight to the descriptor and only then knows how much: a file
    that passed its share is rotated before the next batch, never in the middle of one."""
    path = str(tmp_path / "tracedsync-1.jsonl")
    opening = _Opening()
    sink = Sink(path, max_bytes=64 * 1024, opening=opening)
    share = 64 * 1024 // LOG_FILES
    fd = sink.native_fd()
    assert opening.part == 1  # the first file's header, written before the first batch
    big = b"".join(orjson_line(i) for i in range(400))  # one batch, bigger than a share
    assert len(big) > share
    os.write(fd, big)
    assert sink.native_fd() != -1 and opening.part == 2  # rotated before the next one
    assert os.path.getsize(rotated_path(path, 1)) > share  # by one batch, as documented
    os.write(sink.native_fd(), orjson_line(1000))
    assert opening.part == 2  # under its share: no rotation
    sink.close()
    assert [e["event"] for e in read_jsonl(path)] == ["session", "acquire"]


def orjson_line(i: int) -> bytes:
    return (json.dumps({"event": "acquire", "ts": i, "pid": 1, "tid": 2}) + "\n").encode()


def test_uncapped_sink_never_rotates(tmp_path: Path) -> None:
    path = str(tmp_path / "tracedsync-1.jsonl")
    opening = _Opening()
    sink = Sink(path, max_bytes=None, opening=opening)
    for k in range(50):
        sink.write(_batch(50, k * 50), _dropped)
    sink.close()
    assert os.listdir(tmp_path) == ["tracedsync-1.jsonl"] and opening.part == 1
    assert count_lines(path) == 1 + 50 * 50


# -- a real program --------------------------------------------------------------------------------
PROGRAM = """
import json, os, sys, threading
import tracedsync
from tracedsync._record.recorder import RECORDER
from tracedsync._record.sink import LOG_FILES, count_lines, rotated_path

lock = tracedsync.Lock(name="work")
cond = tracedsync.Condition(name="cond")
held = tracedsync.RLock(name="held across rotations")
path = tracedsync.log_path()
oldest = rotated_path(path, LOG_FILES - 1)

def work():
    for _ in range(ROUND):
        with lock:
            pass
    with cond:
        cond.notify()

expected = {}  # part -> lines of the file deleted to start it
held.acquire()
while RECORDER._part < PARTS:
    before = count_lines(oldest) if os.path.exists(oldest) else None
    part = RECORDER._part
    t = threading.Thread(target=work)
    t.start()
    work()
    t.join()
    tracedsync.flush()  # the flusher sleeps for an hour: each batch is one round
    if RECORDER._part != part and before is not None:
        expected[RECORDER._part - 1] = before
held.release()
print(json.dumps({"pid": os.getpid(), "expected": expected}))
"""


def _run_program(tmp_path: Path, cap: int, parts: int, round_: int) -> dict[str, Any]:
    code = textwrap.dedent(PROGRAM).replace("ROUND", str(round_)).replace("PARTS", str(parts))
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRACEDSYNC_")
           or k == "TRACEDSYNC_PURE_PYTHON"}
    env.update(TRACEDSYNC_LOG_DIR=str(tmp_path), TRACEDSYNC_MAX_LOG_BYTES=str(cap),
               TRACEDSYNC_FLUSH_INTERVAL="3600")
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    out: dict[str, Any] = json.loads(proc.stdout)
    return out


def test_cap_holds_under_a_real_program(tmp_path: Path) -> None:
    """Two threads, a lock, a condition and an RLock held across every rotation; a flush per
    round. Four files remain, each describing itself (its own session header, parts in order),
    each within its share plus one batch; each dropped event counts exactly the lines of the file
    deleted to make room; every event follows the schema; and the analyzer reads the set as one
    process: nothing held at the end of a file, the losses reported."""
    cap = 256 * 1024
    share = cap // LOG_FILES
    out = _run_program(tmp_path, cap, parts=8, round_=25)
    pid = out["pid"]
    expected = {int(k): v for k, v in out["expected"].items()}
    current = str(tmp_path / f"tracedsync-{pid}.jsonl")
    files = [rotated_path(current, n) for n in range(LOG_FILES - 1, -1, -1)]  # oldest first
    assert sorted(os.listdir(tmp_path)) == sorted(os.path.basename(f) for f in files)
    assert log_files([str(tmp_path)]) == files
    events = {f: read_jsonl(f) for f in files}
    longest = max(len(json.dumps(e)) for evs in events.values() for e in evs)
    batch = (2 * 2 * 25 + 10) * (longest + 1)  # a round's events, with room for the others
    parts = []
    checked = 0
    for f in files:
        evs = events[f]
        head = evs[0]
        assert head["event"] == "session" and head["pid"] == pid
        assert head["settings"]["max_log_bytes"] == cap
        parts.append(head["part"])
        assert os.path.getsize(f) <= share + batch
        assert evs[1]["event"] == "dropped" and evs[1]["reason"] == "rotated"
        if head["part"] in expected:  # not the last rotation, made by the exit's flush
            assert evs[1]["count"] == expected[head["part"]]
            checked += 1
        bad = [f"{p} in {e}" for e in evs for p in schema.problems(e)]
        assert not bad, bad[:5]
    assert checked >= LOG_FILES - 1
    assert parts == list(range(parts[0], parts[0] + LOG_FILES)) and parts[0] >= LOG_FILES
    assert sum(os.path.getsize(f) for f in files) <= cap + LOG_FILES * batch
    assert events[current][-1]["event"] == "session_end"

    report = tmp_path.parent / f"{tmp_path.name}-report.json"
    assert main(["analyze", "--no-progress", "-f", "json", "-o", str(report), str(tmp_path),
                 "--fail-on", "never"]) == 0
    rep = json.loads(report.read_text())
    assert rep["totals"]["files"] == LOG_FILES and rep["totals"]["processes"] == 1
    kinds = {f["kind"] for f in rep["findings"]}
    assert kinds <= {"dropped_events"}, rep["findings"]  # nothing held "at the end" of a file
    lost = sum(evs[1]["count"] for evs in events.values())
    assert sum(f["count"] for f in rep["findings"]) == lost
    acquires = sum(1 for evs in events.values() for e in evs
                   if e["event"] == "acquire" and e.get("ok"))
    by_name = {p["label"]: p for p in rep["primitives"]}
    work = next(p for label, p in by_name.items() if "work" in label)
    assert work["acquisitions"] == sum(
        1 for evs in events.values() for e in evs
        if e["event"] == "acquire" and e.get("ok") and e["prim"] == work["prims"][0])
    summary = summarise(read_all([str(tmp_path)], []))
    assert sum(s.acquisitions for s in summary.values()) == acquires


def test_default_cap_is_large_and_none_disables_it(tmp_path: Path) -> None:
    """By default a process's files hold at most 1 GiB together; configure(max_log_bytes=None)
    lifts the cap for the files the recorder opens from then on."""
    before = tracedsync.settings()
    try:
        assert before.max_log_bytes == 1 << 30
        tracedsync.configure(max_log_bytes=None)
        assert tracedsync.settings().max_log_bytes is None
        assert os.environ["TRACEDSYNC_MAX_LOG_BYTES"] == "none"
    finally:
        tracedsync.configure(max_log_bytes=before.max_log_bytes)
    assert tracedsync.settings().max_log_bytes == 1 << 30


# -- the analyzer ----------------------------------------------------------------------------------
def test_process_sets_order_each_process_oldest_first(tmp_path: Path) -> None:
    """A rotated set is ordered .N (highest first) ... .1, then the current file; .10 is older
    than .9; files of other processes and other names keep their own groups."""
    names = ["tracedsync-7.jsonl", "tracedsync-7.1.jsonl", "tracedsync-7.10.jsonl",
             "tracedsync-7.2.jsonl", "tracedsync-7.9.jsonl", "tracedsync-8.jsonl",
             "tracedsync-8.1.jsonl", "tracedsync-custom.jsonl"]
    for n in names:
        (tmp_path / n).write_text("")
    d = str(tmp_path)
    assert log_files([d]) == [os.path.join(d, n) for n in (
        "tracedsync-7.10.jsonl", "tracedsync-7.9.jsonl", "tracedsync-7.2.jsonl",
        "tracedsync-7.1.jsonl", "tracedsync-7.jsonl", "tracedsync-8.1.jsonl",
        "tracedsync-8.jsonl", "tracedsync-custom.jsonl")]
    # files given one by one (a shell glob sorts .1 before .2): grouped and ordered the same
    glob = sorted(os.path.join(d, n) for n in names)
    sets = process_sets(glob)
    assert [[os.path.basename(p) for p in s] for s in sets] == [
        ["tracedsync-7.10.jsonl", "tracedsync-7.9.jsonl", "tracedsync-7.2.jsonl",
         "tracedsync-7.1.jsonl", "tracedsync-7.jsonl"],
        ["tracedsync-8.1.jsonl", "tracedsync-8.jsonl"],
        ["tracedsync-custom.jsonl"]]
    # the same pid in two directories: two processes
    other = tmp_path / "other"
    other.mkdir()
    (other / "tracedsync-7.jsonl").write_text("")
    assert len(process_sets([*glob, str(other / "tracedsync-7.jsonl")])) == 4


def _rotated_pair(directory: Path) -> tuple[str, str]:
    """One process's log in two files: a lock taken in the older, released in the current."""
    older = Log(pid=500)
    lock = older.created(1, name="across")
    older.thread(7, "worker")
    older.acquire(7, lock, "app.py:10")
    newer = Log(pid=500, ts=older.ts)
    newer.lines[0]["part"] = 1
    newer.ev("dropped", None, count=40, reason="rotated")
    newer.release(7, lock, hold=5000)
    newer.end()
    a = os.path.join(os.fspath(directory), "tracedsync-500.1.jsonl")
    b = os.path.join(os.fspath(directory), "tracedsync-500.jsonl")
    with open(a, "wb") as fh:
        fh.write(older.text())
    with open(b, "wb") as fh:
        fh.write(newer.text())
    return a, b


def test_a_rotated_set_is_one_stream(tmp_path: Path) -> None:
    """The hold that spans the two files is attributed to its acquire's site and nothing is
    reported held at the end of the older file; each file stays a source of its own; a header
    with part 0 in the middle still starts a new run (a reused pid)."""
    a, b = _rotated_pair(tmp_path)
    agg = scan_files([a, b])
    assert [s.path for s in agg.sources] == [a, b]
    assert [s.ended for s in agg.sources] == [False, True]
    assert [s.dropped for s in agg.sources] == [0, 40]
    assert agg.ends == []  # ended, nothing held
    (ss,) = agg.sites["500.1"].values()
    assert ss.site == "app.py:10" and ss.acquisitions == 1
    assert main(["analyze", "--no-progress", "--fail-on", "info", "-o",
                 str(tmp_path / "r.txt"), str(tmp_path)]) == 1  # only the dropped events
    text = (tmp_path / "r.txt").read_text()
    assert "dropped_events" in text and "held_at_end" not in text and "still held" not in text

    # part 0: a new process that reused the pid; the first one ends with the lock held
    with open(b, "rb") as fh:
        lines = fh.read().split(b"\n")
    lines[0] = lines[0].replace(b'"part":1', b'"part":0')
    with open(b, "wb") as fh:
        fh.write(b"\n".join(lines))
    agg = scan_files([a, b])
    assert len(agg.ends) == 1 and agg.ends[0].held


def test_summary_of_a_directory_reads_every_file_of_the_set(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _rotated_pair(tmp_path)
    assert main(["summary", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "across" in out
    row = next(line for line in out.splitlines() if line.startswith("across"))
    assert row.split()[2:4] == ["1", "0"]  # acquired once, not contended
