"""Analysing at scale: byte ranges stitched back, merges in any order, executors, shards.

The rule every test here checks: however the work is cut up and put back together, the
result is the one a single serial pass gives.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import itertools
import random
import subprocess
import sys
from pathlib import Path

import orjson
import pytest
from helpers import clean_env
from test_analyze_kernels import workload
from test_analyze_render import _validate
from test_analyze_util import Log

from tracedsync.analysis import analyze as analyze_mod
from tracedsync.analysis import kernel, shard
from tracedsync.analysis.aggregate import Aggregate
from tracedsync.analysis.analyze import analyze, merge_pair
from tracedsync.analysis.native import kernel_class
from tracedsync.analysis.ranges import scan_part
from tracedsync.analysis.render_json import dumps
from tracedsync.analysis.report import build_report
from tracedsync.analysis.report_schema import REPORT_SCHEMA
from tracedsync.analysis.scan import scan_file, scan_files
from tracedsync.analysis.stitch import stitch
from tracedsync.cli import main

KERNELS = [False] + ([True] if kernel_class() is not None else [])


def _long_holder(seed: int) -> Log:
    """The random workload, plus a thread that holds one lock across everything it does."""
    log = workload(seed, events=500, threads=4)
    big = log.created(20, "Lock", name="big")
    log.thread(50, "holder")
    log.acquire(50, big, "app.py:500")
    rnd = random.Random(seed)
    for i in range(40):
        p = f"100.{rnd.randrange(6)}"
        log.acquire(50, p, f"app.py:{510 + i % 3}")
        log.release(50, p, hold=i)
    log.release(50, big, hold=10**6)
    return log


def _cut(path: str, every: int, native: bool) -> Aggregate:
    data = Path(path).read_bytes()
    starts = [0, *[i + 1 for i, c in enumerate(data) if c == 10][:-1]]
    cuts = sorted({*starts[::every], len(data)})
    ranges = enumerate(itertools.pairwise(cuts))
    parts = [scan_part(path, i, a, b, native) for i, (a, b) in ranges]
    random.Random(every).shuffle(parts)  # they may come back in any order
    return stitch(path, parts, native)


@pytest.mark.parametrize("native", KERNELS)
@pytest.mark.parametrize("defer", [2, 5, 1024])
def test_a_file_cut_anywhere_stitches_back_to_one_pass(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, native: bool, defer: int
) -> None:
    """Cut at every k-th line (locks held across the cuts, threads deferred or not, ranges
    rescanned when a hold outlasts the deferred prefix): the same aggregate as one pass."""
    monkeypatch.setattr(kernel, "DEFER_EVENTS", defer)
    path = _long_holder(3).write(tmp_path)
    with open(path, "ab") as fh:
        fh.write(b"garbage\n")
    whole = scan_file(path, native=native).to_dict()
    assert whole["problem_count"] == 1
    for every in (1, 7, 50, 333):
        assert _cut(path, every, native).to_dict() == whole, every


def _rotated(log: Log, directory: Path, at: list[int]) -> list[str]:
    """``log`` written as a rotated set: cut before the given lines, each later file beginning
    with a header of its own (``part`` 1, 2...), as the recorder writes them; oldest first."""
    cuts = [0, *at, len(log.lines)]
    paths = []
    for k, (a, b) in enumerate(itertools.pairwise(cuts)):
        lines = log.lines[a:b]
        if k:
            lines = [{**log.lines[0], "part": k, "ts": lines[0]["ts"]}, *lines]
        n = len(cuts) - 2 - k
        path = directory / (f"tracedsync-{log.pid}.{n}.jsonl" if n else
                            f"tracedsync-{log.pid}.jsonl")
        path.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in lines))
        paths.append(str(path))
    return paths


@pytest.mark.parametrize("native", KERNELS)
def test_a_rotated_set_cut_anywhere_stitches_back_to_one_pass(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, native: bool
) -> None:
    """A log rotated into three files (a lock held across both rotations) is one stream: its
    figures are those of the same events in one file, and its files cut into ranges (numbered
    across the files, each file cut on its own) stitch back to the same aggregate, per file
    sources included."""
    monkeypatch.setattr(kernel, "DEFER_EVENTS", 5)
    log = _long_holder(5)
    (tmp_path / "one").mkdir()
    one = log.write(tmp_path / "one")
    n = len(log.lines)
    files = _rotated(log, tmp_path, [n // 3, 2 * n // 3])
    whole = scan_files(files, native=native)
    single = scan_file(one, native=native)
    assert [s.path for s in whole.sources] == files
    assert whole.to_dict()["sites"] == single.to_dict()["sites"]
    assert [dataclasses.replace(e, path="") for e in whole.ends] == [
        dataclasses.replace(e, path="") for e in single.ends]
    assert [e.path for e in whole.ends] == [files[-1]]  # held at the end of the last file only
    assert whole.to_dict()["edges"] == single.to_dict()["edges"]
    for every in (1, 9, 40):
        parts: list[tuple[str, int, int]] = []
        for path in files:
            data = Path(path).read_bytes()
            starts = [0, *[i + 1 for i, c in enumerate(data) if c == 10][:-1]]
            cuts = sorted({*starts[::every], len(data)})
            parts.extend((path, a, b) for a, b in itertools.pairwise(cuts))
        scanned = [scan_part(p, i, a, b, native) for i, (p, a, b) in enumerate(parts)]
        random.Random(every).shuffle(scanned)
        assert stitch(files, scanned, native).to_dict() == whole.to_dict(), every
    # and through analyze, serial and with workers cutting the files (tiny ranges)
    monkeypatch.setattr(analyze_mod, "MIN_RANGE_BYTES", 256)
    serial = analyze([files[2], *files[:2]], jobs=1, native=native)  # any order given
    assert [s.path for s in serial.sources] == files
    assert serial.to_dict()["sites"] == whole.to_dict()["sites"]
    tasks = analyze_mod.plan([tuple(files)], {p: Path(p).stat().st_size for p in files}, 4)
    assert len(tasks) > 3 and {t.path for t in tasks} == set(files)
    assert [t.index for t in tasks] == list(range(len(tasks)))


def test_a_later_session_in_a_range_is_read_in_order(tmp_path: Path) -> None:
    """A second run appended to the same file closes the first one's process in the middle
    of a range: the stitcher reads that range again in order, and gets the one-pass answer."""
    first = _long_holder(4)
    second = Log(pid=100, ts=first.ts + 1000)
    lock = second.created(1)
    second.acquire(7, lock, "b.py:1")
    path = Path(first.write(tmp_path))
    path.write_bytes(path.read_bytes() + second.text())
    whole = scan_file(str(path)).to_dict()
    assert len(whole["ends"]) == 2
    assert _cut(str(path), 61, native=KERNELS[-1]).to_dict() == whole


def _files(tmp_path: Path) -> list[str]:
    out = []
    for pid, seed in ((100, 1), (200, 2), (300, 3)):
        log = workload(seed, events=400, threads=3)
        log.pid = pid
        for e in log.lines:
            e["pid"] = pid
            if isinstance(e.get("prim"), str):
                e["prim"] = e["prim"].replace("100.", f"{pid}.")
            if isinstance(e.get("lock"), str):
                e["lock"] = e["lock"].replace("100.", f"{pid}.")
        out.append(log.write(tmp_path))
    return out


def test_merging_is_pure_and_any_order_or_tree_gives_the_same(tmp_path: Path) -> None:
    """Every order and every reduction tree of the per-file aggregates give one result, and
    the merged aggregates are left as they were."""
    aggs = [scan_file(p) for p in _files(tmp_path)]
    before = [a.to_dict() for a in aggs]
    want = Aggregate.merged(aggs).to_dict()
    for perm in itertools.permutations(aggs):
        assert Aggregate.merged(perm).to_dict() == want
        a, b, c = perm
        assert merge_pair(a, merge_pair(b, c)).to_dict() == want
        assert merge_pair(merge_pair(a, b), c).to_dict() == want
    assert [a.to_dict() for a in aggs] == before


def _report(paths: list[str], **kw: object) -> bytes:
    return dumps(build_report(analyze(paths, **kw)))  # type: ignore[arg-type]


def test_serial_pool_and_any_executor_give_the_same_report(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Serial, two worker processes (with the biggest file cut into ranges) and a thread
    pool print the same JSON."""
    _files(tmp_path)
    big = _long_holder(5)
    big.pid = 400
    path = big.write(tmp_path)
    monkeypatch.setattr(analyze_mod, "MIN_RANGE_BYTES", 2000)
    tasks = analyze_mod.plan([(path,)], {path: Path(path).stat().st_size}, 2)
    assert len(tasks) > 1
    serial = _report([str(tmp_path)], jobs=1)
    assert _report([str(tmp_path)], jobs=2) == serial
    with concurrent.futures.ThreadPoolExecutor(3) as pool:
        assert _report([str(tmp_path)], executor=pool) == serial


@pytest.mark.timeout(120)
def test_dask_local_cluster_gives_the_same_report(tmp_path: Path) -> None:
    """``--scheduler local`` (a Dask LocalCluster of worker processes) prints the same JSON as
    a serial run. (In a child process: a cluster leaves threads behind in its client's.)"""
    pytest.importorskip("distributed")
    _files(tmp_path)
    d = str(tmp_path)
    cmd = [sys.executable, "-m", "tracedsync", "analyze", d, "-f", "json", "--fail-on", "never"]
    serial = subprocess.run([*cmd, "-j", "1"], capture_output=True, check=True, env=clean_env())
    dask = subprocess.run([*cmd, "--scheduler", "local", "-j", "2"], capture_output=True,
                          check=True, env=clean_env(), timeout=110)
    assert dask.stdout == serial.stdout
    assert b"Traceback" not in dask.stderr


def _host_log(host: str, boot: str, first: str, second: str, wall: int) -> Log:
    log = Log(pid=500)
    head = log.lines[0]
    head["hostname"], head["boot_id"], head["wall_ns"] = host, boot, wall
    a = log.created(1, name="a")
    b = log.created(2, name="b")
    log.thread(7, "worker")
    x, y = (a, b) if first == "a" else (b, a)
    log.acquire(7, x, f"{host}.py:1")
    log.acquire(7, y, f"{host}.py:2")
    log.release(7, y)
    log.release(7, x)
    log.end()
    return log


def test_two_hosts_with_the_same_pids_stay_apart(tmp_path: Path) -> None:
    """Host A takes a then b, host B b then a, both as pid 500: each is clean alone, and
    together they are still two hosts, not an inversion; the report says there are two."""
    for host, order, wall in (("alpha", "a", 10**18), ("beta", "b", 10**18 + 5 * 10**9)):
        d = tmp_path / host
        d.mkdir()
        _host_log(host, f"{host[0] * 8}-0000-0000", order, "", wall).write(d)
    report = build_report(analyze([str(tmp_path)]))
    assert [f.kind for f in report.findings if f.kind.startswith("lock_order")] == []
    assert report.totals["hosts"] == ["alpha/aaaaaaaa", "beta/bbbbbbbb"]
    assert report.totals["clock"] == "wall"
    assert report.totals["processes"] == 2
    assert {(t["host"], t["pid"], t["tid"]) for t in report.threads} == {
        ("alpha/aaaaaaaa", 500, 7), ("beta/bbbbbbbb", 500, 7)}
    assert sorted(r.key for r in report.primitives) == [
        "500.1@alpha/aaaaaaaa", "500.1@beta/bbbbbbbb", "500.2@alpha/aaaaaaaa",
        "500.2@beta/bbbbbbbb"]
    assert report.totals["first_ts"] >= 10**18  # wall-clock times
    _validate(orjson.loads(dumps(report)), REPORT_SCHEMA)  # host fields are documented
    assert 5 * 10**9 <= report.totals["span_ns"] < 6 * 10**9
    # Each host alone is one host: ids as the log wrote them.
    alone = build_report(analyze([str(tmp_path / "alpha")]))
    assert sorted(r.key for r in alone.primitives) == ["500.1", "500.2"]
    assert "hosts" not in alone.totals


def test_one_host_report_is_the_same_with_or_without_a_boot_id(tmp_path: Path) -> None:
    """A log of today (boot_id in its header) reports like an older one of the same events."""
    old, new = tmp_path / "old", tmp_path / "new"
    old.mkdir()
    new.mkdir()
    log = _host_log("h", "x", "a", "", 0)
    del log.lines[0]["boot_id"]
    log.write(old)
    log.lines[0]["boot_id"] = "0123abcd-x"
    log.write(new)
    a = orjson.loads(dumps(build_report(analyze([str(old)]))))
    b = orjson.loads(dumps(build_report(analyze([str(new)]))))
    for s in b["sources"]:
        for sess in s["sessions"]:
            del sess["boot_id"]
        s["path"] = s["path"].replace("new", "old")
        s["bytes"] -= len(b',"boot_id":"0123abcd-x"')
    assert a == b


def test_binary_shards_round_trip_and_json_ones_still_load(tmp_path: Path) -> None:
    """The binary form rebuilds the same aggregate, is smaller than the JSON one, and both
    (and a version-1 JSON aggregate) are read as inputs."""
    agg = analyze([str(p) for p in _files(tmp_path)])
    binary, text = tmp_path / "a.tsagg", tmp_path / "a.json"
    shard.save(agg, str(binary))
    shard.save(agg, str(text))
    assert shard.load(str(binary)).to_dict() == agg.to_dict()
    assert shard.load(str(text)).to_dict() == agg.to_dict()
    assert binary.stat().st_size * 3 < text.stat().st_size
    v1 = orjson.loads(text.read_bytes())
    v1["version"] = 1
    v1["threads"] = [t[1:] for t in v1["threads"]]
    del v1["hosts"]
    old = tmp_path / "old.json"
    old.write_bytes(orjson.dumps(v1))
    assert shard.load(str(old)).threads == agg.threads
    with pytest.raises(ValueError, match="newer"):
        shard.loads(shard.MAGIC + bytes([99, 0]))
    report = build_report(analyze([str(binary), str(text)]))
    assert report.totals["files"] == 6


def test_directories_are_read_recursively(tmp_path: Path) -> None:
    """The layouts of ``tracedsync run`` and ``make demo``: logs in subdirectories."""
    for sub in ("condition", "racy/run-1"):
        d = tmp_path / sub
        d.mkdir(parents=True)
        log = Log(pid=100 + len(sub))
        log.created(1)
        log.end()
        log.write(d)
    (tmp_path / "condition" / "notes.txt").write_text("not a log")
    assert main(["analyze", str(tmp_path), "-o", str(tmp_path / "r.txt")]) == 0
    assert build_report(analyze([str(tmp_path)])).totals["files"] == 2


def test_progress_counts_bytes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """One file: the progress line moves with the bytes read, and ends at 100 %."""
    path = workload(1, events=300).write(tmp_path)
    assert main(["analyze", path, "--progress", "-o", str(tmp_path / "r")]) == 0
    err = capsys.readouterr().err
    assert "tracedsync: 1/1 files, 100.0 %" in err


def test_fsspec_urls_are_read(tmp_path: Path) -> None:
    """A directory given as an fsspec URL (here the in-memory file system) is searched
    recursively and read like a local one."""
    fsspec = pytest.importorskip("fsspec")
    fs = fsspec.filesystem("memory")
    log = workload(2, events=200)
    fs.pipe("/logs/run-1/tracedsync-100.jsonl", log.text())
    local = tmp_path / "local"
    local.mkdir()
    log.write(local)
    got = build_report(analyze(["memory://logs"])).to_dict()
    want = build_report(analyze([str(local)])).to_dict()
    for r in (got, want):
        for s in r["sources"]:
            s["path"] = Path(s["path"]).name
        for p in r["problems"]:
            p["path"] = Path(p["path"]).name
    assert got == want
