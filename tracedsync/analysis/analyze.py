"""Analyse log files and directories into one merged `Aggregate`, file by file, in parallel.

Each file is scanned independently (`scan.scan_file`), in worker processes when ``jobs > 1``,
and the per-file aggregates are merged in input order, so the result does not depend on
scheduling. Inputs may also be aggregates saved earlier (``--save-aggregate``, typically one per
machine), which are merged the same way: that is how shards from many machines combine.
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
from .reader import log_files
from .scan import scan_file

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


def _scan(path: str) -> Aggregate:
    return scan_file(path)


def _unreadable(path: str, exc: OSError) -> Aggregate:
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
    sizes = {p: _size(p) for p in logs}
    if jobs <= 0:
        jobs = os.cpu_count() or 1
        if sum(sizes.values()) < AUTO_SERIAL_BYTES:
            jobs = 1
    jobs = max(1, min(jobs, len(logs)))
    bar = Progress(len(logs), sum(sizes.values())) if progress else None
    total = Aggregate()
    for p in saved:
        try:
            total.merge(load_aggregate(p))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            total.merge(_unreadable(p, OSError(f"not a usable aggregate: {exc}")))
    # Biggest files first (the last worker to finish then has a small one), and the same order
    # for merging, serial or parallel, so that the result never depends on scheduling.
    merger = _InOrder(sorted(logs, key=lambda p: (-sizes[p], p)), total)
    try:
        if jobs > 1:
            # A worker that could not start (a __main__ that a new interpreter cannot import,
            # like ``python -``) or died: what is left is done here, below.
            with contextlib.suppress(BrokenProcessPool):
                _parallel(merger, sizes, jobs, bar)
        for p in merger.remaining():
            merger.put(p, _one(p, bar))
            if bar is not None:
                bar.add(files=1)
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

    def __init__(self, order: list[str], total: Aggregate) -> None:
        self.order = order
        self.total = total
        self.next = 0
        self.pending: dict[str, Aggregate] = {}

    def put(self, path: str, agg: Aggregate) -> None:
        self.pending[path] = agg
        while self.next < len(self.order) and self.order[self.next] in self.pending:
            self.total.merge(self.pending.pop(self.order[self.next]))
            self.next += 1

    def remaining(self) -> list[str]:
        return [p for p in self.order[self.next :] if p not in self.pending]


def _size(path: str) -> int:
    try:
        return os.path.getsize(path)
    except OSError:
        return 0


def _one(path: str, bar: Progress | None) -> Aggregate:
    try:
        if bar is None:
            return scan_file(path)
        return scan_file(path, progress=lambda n: bar.add(nbytes=n))
    except OSError as exc:
        return _unreadable(path, exc)


def _parallel(merger: _InOrder, sizes: dict[str, int], jobs: int, bar: Progress | None) -> None:
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
                    events=agg.sources[0].events if agg.sources else 0, files=1, nbytes=sizes[p]
                )
            merger.put(p, agg)
