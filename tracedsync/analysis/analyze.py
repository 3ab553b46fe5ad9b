"""Analyse log files and directories into one merged `Aggregate`, file by file, in parallel.

Each file is scanned independently (`scan.scan_file`), in worker processes when ``jobs > 1``,
and the per-file aggregates are merged in input order, so the result does not depend on
scheduling. The files of a rotated log (``tracedsync-<pid>.N.jsonl`` ...
``tracedsync-<pid>.jsonl``) are one process's stream: they are scanned together, in order
(`reader.process_sets`, `scan.scan_files`). Inputs may also be aggregates saved earlier
(``--save-aggregate``, typically one per machine), which are merged the same way: that is how
shards from many machines combine.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import multiprocessing
import os
from collections.abc import Iterable
from concurrent.futures.process import BrokenProcessPool

import orjson

from .aggregate import AGGREGATE_KIND, Aggregate
from .progress import Progress
from .reader import log_files, process_sets
from .scan import scan_files

AUTO_SERIAL_BYTES = 16 << 20  # below this much input, worker processes cost more than they save


class NoInputError(Exception):
    """Nothing usable to analyse (no files, or none could be read)."""


def is_aggregate_file(path: str) -> bool:
    """True for a JSON file written by ``--save-aggregate`` (sniffed from its first bytes)."""
    if not path.endswith(".json"):
        return False
    try:
        with open(path, "rb") as fh:
            head = fh.read(64)
    except OSError:
        return False
    return head.startswith(b'{"kind":"' + AGGREGATE_KIND.encode())


def load_aggregate(path: str) -> Aggregate:
    """Read an aggregate saved by `save_aggregate`; `ValueError` if it is not one."""
    with open(path, "rb") as fh:
        return Aggregate.from_dict(orjson.loads(fh.read()))


def save_aggregate(agg: Aggregate, path: str) -> None:
    """Write ``agg`` as JSON (to merge later with other shards)."""
    with open(path, "wb") as fh:
        fh.write(orjson.dumps(agg.to_dict()))


Unit = tuple[str, ...]
"""What is scanned in one go: one file, or one process's rotated files in order."""


def _scan(unit: Unit) -> Aggregate:
    return scan_files(unit)


def _unreadable(unit: str | Unit, exc: OSError) -> Aggregate:
    path = unit if isinstance(unit, str) else unit[-1]
    agg = Aggregate()
    agg.problems.append((path, 0, f"cannot read the file ({exc.strerror or exc})"))
    agg.problem_count = 1
    return agg


def analyze(
    paths: Iterable[str],
    jobs: int = 1,
    progress: bool = False,
) -> Aggregate:
    """Scan every log under ``paths`` (and merge saved aggregates among them).

    ``jobs``: worker processes (0 = one per CPU, used only when there is enough input).
    Raises `FileNotFoundError` for a missing path, `reader.SchemaError` for a newer schema,
    `NoInputError` when there is nothing to read.
    """
    paths = list(paths)
    saved = [p for p in paths if os.path.isfile(p) and is_aggregate_file(p)]
    logs = log_files([p for p in paths if p not in saved])
    if not logs and not saved:
        raise NoInputError("no tracedsync logs found (expected tracedsync-<pid>.jsonl files)")
    units = [tuple(group) for group in process_sets(logs)]
    sizes = {u: sum(_size(p) for p in u) for u in units}
    if jobs <= 0:
        jobs = os.cpu_count() or 1
        if sum(sizes.values()) < AUTO_SERIAL_BYTES:
            jobs = 1
    jobs = max(1, min(jobs, len(units)))
    bar = Progress(len(logs), sum(sizes.values())) if progress else None
    total = Aggregate()
    for p in saved:
        try:
            total.merge(load_aggregate(p))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            total.merge(_unreadable(p, OSError(f"not a usable aggregate: {exc}")))
    # Biggest files first (the last worker to finish then has a small one), and the same order
    # for merging, serial or parallel, so that the result never depends on scheduling.
    merger = _InOrder(sorted(units, key=lambda u: (-sizes[u], u)), total)
    try:
        if jobs > 1:
            # A worker that could not start (a __main__ that a new interpreter cannot import,
            # like ``python -``) or died: what is left is done here, below.
            with contextlib.suppress(BrokenProcessPool):
                _parallel(merger, sizes, jobs, bar)
        for u in merger.remaining():
            merger.put(u, _one(u, bar))
            if bar is not None:
                bar.add(files=len(u), nbytes=sizes[u])
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


class _InOrder:
    """Merges per-file aggregates into ``total`` in a fixed order, as soon as they can be
    (holding at most the results that arrived early)."""

    def __init__(self, order: list[Unit], total: Aggregate) -> None:
        self.order = order
        self.total = total
        self.next = 0
        self.pending: dict[Unit, Aggregate] = {}

    def put(self, path: Unit, agg: Aggregate) -> None:
        self.pending[path] = agg
        while self.next < len(self.order) and self.order[self.next] in self.pending:
            self.total.merge(self.pending.pop(self.order[self.next]))
            self.next += 1

    def remaining(self) -> list[Unit]:
        return [p for p in self.order[self.next :] if p not in self.pending]


def _size(path: str) -> int:
    try:
        return os.path.getsize(path)
    except OSError:
        return 0


def _one(unit: Unit, bar: Progress | None) -> Aggregate:
    try:
        if bar is None:
            return scan_files(unit)
        return scan_files(unit, progress=lambda n: bar.add(events=n))
    except OSError as exc:
        return _unreadable(unit, exc)


def _parallel(merger: _InOrder, sizes: dict[Unit, int], jobs: int, bar: Progress | None) -> None:
    # "spawn": a clean interpreter per worker, the same on every platform and Python version
    # (a forked worker would inherit this process's recorder and could write logs at exit).
    ctx = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(max_workers=jobs, mp_context=ctx) as pool:
        futures = {pool.submit(_scan, p): p for p in merger.order}
        for fut in concurrent.futures.as_completed(futures):
            p = futures[fut]
            try:
                agg = fut.result()
            except OSError as exc:
                agg = _unreadable(p, exc)
            if bar is not None:
                bar.add(
                    events=sum(s.events for s in agg.sources), files=len(p), nbytes=sizes[p]
                )
            merger.put(p, agg)
