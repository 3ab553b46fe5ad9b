"""Analyse log files and directories into one merged `Aggregate`, serially or on an executor.

Design note. The work is a map and a reduce. The unit is one process's log: a file, or the
files of a rotated set (``tracedsync-<pid>.N.jsonl`` ... ``tracedsync-<pid>.jsonl``), which are
one stream (`inputs.process_sets`). The map scans one log (`scan.scan_files`), or one byte range
of a log too big for one worker (`ranges.scan_part`; ranges never span two files, and every
file of a set cut into ranges is at least one; they are put back together per log by
`stitch.stitch`); the reduce is `Aggregate.merge`, which is associative and commutative, so
the per-file aggregates are merged in whatever order they arrive, or by a tree of merges on a
Dask cluster, and the result is the same. The executor is any `concurrent.futures.Executor`
(by default a pool of worker processes when ``jobs > 1``) or a Dask distributed ``Client``.

Inputs may also be aggregates saved earlier (``--save-aggregate``, typically one per machine),
which are merged the same way: that is how shards from many machines combine.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import gc
import itertools
import multiprocessing
import os
from collections.abc import Callable, Iterable
from concurrent.futures.process import BrokenProcessPool
from typing import Any

import orjson

from .aggregate import Aggregate
from .hosts import host_key
from .inputs import line_start_at, log_files, open_bytes, process_sets, size
from .progress import Progress
from .ranges import Part, scan_part
from .scan import scan_files
from .shard import is_shard, load, save
from .stitch import stitch
from .trace import TraceSpec

AUTO_SERIAL_BYTES = 16 << 20  # below this much input, worker processes cost more than they save
MIN_RANGE_BYTES = 32 << 20  # a file is cut into ranges of at least this size


class NoInputError(Exception):
    """Nothing usable to analyse (no files, or none could be read)."""


def is_aggregate_file(path: str) -> bool:
    """True for a file written by ``--save-aggregate`` (sniffed from its first bytes)."""
    return os.path.isfile(path) and is_shard(path)


def load_aggregate(path: str) -> Aggregate:
    """Read an aggregate saved by `save_aggregate`; `ValueError` if it is not one."""
    return load(path)


def save_aggregate(agg: Aggregate, path: str) -> None:
    """Write ``agg`` (binary; JSON if ``path`` ends with ``.json``) to merge later."""
    save(agg, path)


def _unreadable(path: str, exc: OSError) -> Aggregate:
    agg = Aggregate()
    agg.problems.append((path, 0, f"cannot read the file ({exc.strerror or exc})"))
    agg.problem_count = 1
    return agg


# -- the map ----------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Task:
    """Scan the log ``files`` whole (``end`` None), or the byte range ``[start, end)`` of its
    file ``path``: range ``index`` (counted across the log's files) of ``ranges``."""

    files: tuple[str, ...]  # one process's log: a file, or a rotated set, oldest first
    path: str = ""  # the file of a range
    index: int = 0
    start: int = 0
    end: int | None = None
    ranges: int = 1  # how many ranges the log was cut into
    trace: TraceSpec | None = None  # draw the log's Perfetto trace too (whole logs only)

    @property
    def nbytes(self) -> int:
        if self.end is not None:
            return self.end - self.start
        return sum(size(p) for p in self.files)


def run_task(task: Task, native: bool | None = None) -> Aggregate | Part:
    """The map: an aggregate for a whole log, a `ranges.Part` for a range (an aggregate
    saying a file could not be read, if so)."""
    try:
        if task.end is None:
            return scan_files(task.files, native=native, trace=task.trace)
        return scan_part(task.path, task.index, task.start, task.end, native=native)
    except OSError as exc:
        return _unreadable(task.path or task.files[-1], exc)


def stitch_parts(
    files: tuple[str, ...], parts: list[Aggregate | Part], native: bool | None = None
) -> Aggregate:
    """A log's ranges put together (or the first "could not be read" among them)."""
    for p in parts:
        if isinstance(p, Aggregate):
            return p
    return stitch(files, [p for p in parts if isinstance(p, Part)], native)


def merge_pair(a: Aggregate, b: Aggregate) -> Aggregate:
    """The reduce: a new aggregate holding both (neither is changed)."""
    return Aggregate.merged([a, b])


def plan(
    logs: list[tuple[str, ...]], sizes: dict[str, int], workers: int,
    trace_dir: str | None = None, trace_file: str | None = None,
) -> list[Task]:
    """Tasks for ``workers``: whole logs, and logs much bigger than a worker's share cut into
    line-aligned byte ranges (each file of a rotated set cut on its own). Biggest first (the
    last task to finish is then small). With ``trace_dir``, whole logs each drawing their part
    of the trace there; with ``trace_file``, at its end, one after the other."""
    total = sum(sizes.values())
    share = max(MIN_RANGE_BYTES, -(-total // max(1, workers * 2)))
    order = sorted(logs, key=lambda fs: (-sum(sizes[p] for p in fs), fs))
    if trace_dir is not None or trace_file is not None:
        hosts = trace_hosts([fs[0] for fs in order])
        return [
            Task(fs, trace=TraceSpec(
                trace_file or os.path.join(trace_dir or "", f"{i:06d}.part"), (i + 1) << 40,
                hosts, append=trace_file is not None))
            for i, fs in enumerate(order)
        ]
    tasks: list[Task] = []
    for files in order:
        if workers <= 1 or sum(sizes[p] for p in files) < 2 * MIN_RANGE_BYTES:
            tasks.append(Task(files))
            continue
        cut = [(path, a, b) for path in files for a, b in _ranges(path, sizes[path], share)]
        if len(cut) < 2:
            tasks.append(Task(files))
            continue
        tasks.extend(Task(files, path, i, a, b, len(cut)) for i, (path, a, b) in enumerate(cut))
    return tasks


def _ranges(path: str, n: int, share: int) -> list[tuple[int, int]]:
    """``path`` (``n`` bytes) as line-aligned ranges of about ``share`` bytes (one range for a
    small file, or one whose lines are longer than a range)."""
    count = -(-n // share)
    if count < 2 or n < 2 * MIN_RANGE_BYTES:
        return [(0, n)]
    cuts = sorted({0, *(line_start_at(path, n * i // count) for i in range(1, count)), n})
    cuts = [c for c in cuts if c <= n]
    return list(itertools.pairwise(cuts))


def trace_hosts(logs: list[str]) -> tuple[str, ...]:
    """The hosts of ``logs`` (from each file's first line), sorted, if there are several."""
    hosts = set()
    for path in logs:
        try:
            with open_bytes(path) as fh:
                first = orjson.loads(fh.readline())
        except (OSError, orjson.JSONDecodeError):
            continue
        if isinstance(first, dict) and first.get("event") == "session":
            hosts.add(host_key(first))
    return tuple(sorted(hosts)) if len(hosts) > 1 else ()


# -- running it -------------------------------------------------------------------------------
def _is_dask_client(executor: Any) -> bool:
    return type(executor).__module__.split(".")[0] == "distributed" and hasattr(
        executor, "gather"
    )


def analyze(
    paths: Iterable[str],
    jobs: int = 1,
    progress: bool = False,
    executor: Any = None,
    native: bool | None = None,
    trace_dir: str | None = None,
    trace_file: str | None = None,
) -> Aggregate:
    """Scan every log under ``paths`` (and merge saved aggregates among them).

    ``jobs``: worker processes when no ``executor`` is given (0 = one per CPU, used only
    when there is enough input). ``executor``: a `concurrent.futures.Executor` or a Dask
    distributed ``Client`` to run the scans on. ``native``: the native scanner (True), the
    Python one (False), or the native one when it was built (None). ``trace_dir``: a
    directory where each file's scan also draws its part of the Perfetto trace (`trace.py`;
    it must be one the workers can write to). ``trace_file``: draw the whole trace at the end
    of this file instead (`render_perfetto.HEADER` written there first), scanning serially.
    Raises `FileNotFoundError` for a missing path, `reader.SchemaError` for a newer schema,
    `NoInputError` when there is nothing to read.
    """
    was_enabled = gc.isenabled()
    gc.disable()  # (see scan_files: many objects, no cycles)
    try:
        if trace_file is not None:
            jobs, executor = 1, None
        return _analyze(list(paths), jobs, progress, executor, native, trace_dir, trace_file)
    finally:
        if was_enabled:
            gc.enable()


def _analyze(
    paths: list[str],
    jobs: int,
    progress: bool,
    executor: Any,
    native: bool | None,
    trace_dir: str | None,
    trace_file: str | None = None,
) -> Aggregate:
    saved = [p for p in paths if is_aggregate_file(p)]
    logs = log_files([p for p in paths if p not in saved])
    if not logs and not saved:
        raise NoInputError("no tracedsync logs found (expected tracedsync-<pid>.jsonl files)")
    sizes = {p: size(p) for p in logs}
    if executor is None:
        if jobs <= 0:
            jobs = os.cpu_count() or 1
            if sum(sizes.values()) < AUTO_SERIAL_BYTES:
                jobs = 1
        jobs = max(1, jobs)
    workers = jobs if executor is None else _workers(executor)
    groups = [tuple(g) for g in process_sets(logs)]
    tasks = plan(groups, sizes, workers, trace_dir, trace_file) if logs else []
    bar = Progress(len(logs), sum(sizes.values())) if progress else None
    total = Aggregate()
    for p in saved:
        try:
            total.merge(load_aggregate(p), take=True)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            total.merge(_unreadable(p, OSError(f"not a usable aggregate: {exc}")), take=True)
    try:
        if _is_dask_client(executor):
            total.merge(_on_dask(executor, tasks, native, bar), take=True)
        elif executor is not None:
            _on_executor(executor, tasks, native, bar, total)
        elif jobs > 1 and len(tasks) > 1:
            _on_pool(jobs, tasks, native, bar, total)
        else:
            for t in tasks:
                total.merge(_serial(t, native, bar), take=True)
    finally:
        if bar is not None:
            bar.done()
    if not any(s.events for s in total.sources) and not saved:
        first = ""
        if total.problems:
            path, line, reason = total.problems[0]
            first = f"; first: {path}:{line}: {reason}"
        raise NoInputError(
            f"no events could be read from the log files ({total.problem_count} unusable "
            f"line(s){first})"
        )
    return total


def _workers(executor: Any) -> int:
    if _is_dask_client(executor):
        try:
            return max(1, int(sum(executor.nthreads().values())))
        except Exception:  # pragma: no cover - depends on the cluster
            return 1
    n = getattr(executor, "_max_workers", None)
    return int(n) if isinstance(n, int) and n > 0 else (os.cpu_count() or 1)


def _serial(task: Task, native: bool | None, bar: Progress | None) -> Aggregate:
    tick: Callable[[int], None] | None = None
    if bar is not None:
        b = bar

        def tick(n: int) -> None:
            b.add(nbytes=n)

    try:
        agg = scan_files(task.files, progress=tick, native=native, trace=task.trace)
    except OSError as exc:
        agg = _unreadable(task.files[-1], exc)
    if bar is not None:
        bar.add(files=len(task.files), events=sum(agg.event_counts.values()))
    return agg


class _Collect:
    """Takes the map's results as they arrive: merges whole files, stitches a file's ranges
    once they are all there."""

    def __init__(self, total: Aggregate, native: bool | None, bar: Progress | None) -> None:
        self.total = total
        self.native = native
        self.bar = bar
        self.parts: dict[tuple[str, ...], list[Aggregate | Part]] = {}
        self.done: set[Task] = set()

    def put(self, task: Task, result: Aggregate | Part) -> None:
        self.done.add(task)
        finished = task.ranges == 1
        if task.ranges == 1:
            assert isinstance(result, Aggregate)
            agg = result
        else:
            got = self.parts.setdefault(task.files, [])
            got.append(result)
            if len(got) < task.ranges:
                agg = None
            else:
                agg = stitch_parts(task.files, self.parts.pop(task.files), self.native)
                finished = True
        if agg is not None:
            self.total.merge(agg, take=True)
        if self.bar is not None:
            events = sum(agg.event_counts.values()) if agg is not None else 0
            self.bar.add(files=len(task.files) if finished else 0, nbytes=task.nbytes,
                         events=events)


def _on_executor(
    executor: concurrent.futures.Executor,
    tasks: list[Task],
    native: bool | None,
    bar: Progress | None,
    total: Aggregate,
) -> None:
    collect = _Collect(total, native, bar)
    futures = {executor.submit(run_task, t, native): t for t in tasks}
    for fut in concurrent.futures.as_completed(futures):
        collect.put(futures[fut], fut.result())


def _on_pool(
    jobs: int, tasks: list[Task], native: bool | None, bar: Progress | None, total: Aggregate
) -> None:
    # "spawn": a clean interpreter per worker, the same on every platform and Python version
    # (a forked worker would inherit this process's recorder and could write logs at exit).
    collect = _Collect(total, native, bar)
    ctx = multiprocessing.get_context("spawn")
    try:
        with concurrent.futures.ProcessPoolExecutor(
            max_workers=min(jobs, len(tasks)), mp_context=ctx
        ) as pool:
            futures = {pool.submit(run_task, t, native): t for t in tasks}
            for fut in concurrent.futures.as_completed(futures):
                collect.put(futures[fut], fut.result())
    except BrokenProcessPool:
        # A worker that could not start (a __main__ that a new interpreter cannot import,
        # like ``python -``) or died: what is left is done here.
        for t in tasks:
            if t not in collect.done:
                collect.put(t, run_task(t, native))


def _on_dask(client: Any, tasks: list[Task], native: bool | None, bar: Progress | None) -> Any:
    """Map on the cluster, stitch each cut file there, then reduce by a tree of merges."""
    from distributed import as_completed

    futures = {client.submit(run_task, t, native, pure=False): t for t in tasks}
    by_log: dict[tuple[str, ...], list[Any]] = {}
    for fut, t in futures.items():
        by_log.setdefault(t.files, []).append(fut)
    level = [
        fs[0] if futures[fs[0]].ranges == 1
        else client.submit(stitch_parts, files, fs, native, pure=False)
        for files, fs in by_log.items()
    ]
    if bar is not None:
        for fut in as_completed(list(futures)):  # type: ignore[no-untyped-call]
            t = futures[fut]
            bar.add(nbytes=t.nbytes, files=len(t.files) if t.index == t.ranges - 1 else 0)
    if not level:
        return Aggregate()
    while len(level) > 1:
        nxt = [
            client.submit(merge_pair, level[i], level[i + 1], pure=False)
            for i in range(0, len(level) - 1, 2)
        ]
        if len(level) % 2:
            nxt.append(level[-1])
        level = nxt
    return level[0].result()
