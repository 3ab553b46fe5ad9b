"""Log-bucketed histograms of nanosecond durations: mergeable, compact, good for percentiles.

Values 0..31 get a bucket each; above that every power of two is split into 16 buckets, so a
bucket is at most 1/16 (6.25 %) wide relative to its lower bound, whatever the magnitude. Two
histograms merge by adding counts, which is what lets files be analysed separately (in parallel
or on other machines) and combined later. Count, sum, min and max are kept exactly.

The scanner does not bucket value by value in its hot loop: it appends raw values to an
``array('q')`` and folds them in with `Histogram.add_values`, which sorts once and counts each
bucket with a binary search (C speed for the sort and the searches).
"""

from __future__ import annotations

import os
from array import array
from bisect import bisect_left
from collections import Counter
from collections.abc import Iterable
from itertools import repeat
from operator import rshift
from typing import Any


def _python_add_counts(dst: dict[int, int], src: dict[int, int]) -> None:
    for i, c in src.items():
        dst[i] = dst.get(i, 0) + c


def _python_sum_counts(dicts: list[dict[int, int]]) -> dict[int, int]:
    out: dict[int, int] = {}
    for d in dicts:
        _python_add_counts(out, d)
    return out


def _native(name: str, fallback: Any) -> Any:
    if os.environ.get("TRACEDSYNC_PURE_PYTHON"):
        return fallback
    try:
        from . import _cscan
    except ImportError:
        return fallback
    return getattr(_cscan, name)


def _python_sum_hists(hists: list[Histogram]) -> tuple[int, int, int, int, dict[int, int]] | None:
    full = [h for h in hists if h.count]
    if not full:
        return 0, 0, 0, 0, {}
    return (
        sum(h.count for h in full),
        sum(h.total for h in full),
        min(h.min for h in full),
        max(h.max for h in full),
        _python_sum_counts([h.buckets for h in full]),
    )


# dst[i] += src[i], and the sum of many, for dicts of counts; count, total, min, max and
# buckets of many histograms in one pass (native when built: None when a figure does not fit
# in 64 bits)
add_counts = _native("add_counts", _python_add_counts)
sum_counts = _native("sum_counts", _python_sum_counts)
sum_hists = _native("sum_hists", _python_sum_hists)

SUB_BITS = 4
SUB = 1 << SUB_BITS  # buckets per power of two
_LINEAR = 2 * SUB  # values below this have a bucket each


def bucket_of(value: int) -> int:
    """The index of the bucket that holds ``value`` (negative values count as 0)."""
    if value < _LINEAR:
        return value if value > 0 else 0
    b = value.bit_length()
    shift = b - SUB_BITS - 1
    return (shift + 1) * SUB + ((value >> shift) - SUB)


def bucket_low(index: int) -> int:
    """The smallest value of bucket ``index``."""
    if index < _LINEAR:
        return index
    e, m = divmod(index, SUB)
    return (m + SUB) << (e - 1)


def bucket_high(index: int) -> int:
    """The largest value of bucket ``index``."""
    return bucket_low(index + 1) - 1


# Above 255 a bucket is at least 16 ns wide and starts on a multiple of 16: the bucket of v is
# a function of v >> 4, which a table gives for the values most holds and waits have.
_TABLE_LOW, _TABLE_HIGH = 256, 1 << 20
_TABLE: list[int] = []


def _table() -> list[int]:
    if not _TABLE:
        _TABLE.extend(bucket_of(b << 4) for b in range(_TABLE_HIGH >> 4))
    return _TABLE


# Every bucket a 64-bit value can fall in, with its bounds (for reports: no arithmetic there).
BOUNDS = [(bucket_low(i), bucket_high(i)) for i in range(bucket_of(2**63 - 1) + 1)]


class Histogram:
    """Counts of values per log bucket, plus exact count, sum, min and max."""

    __slots__ = ("buckets", "count", "max", "min", "total")

    def __init__(self) -> None:
        self.buckets: dict[int, int] = {}
        self.count = 0
        self.total = 0
        self.min = 0
        self.max = 0

    def add(self, value: int) -> None:
        """Count one value."""
        self._extend_range(value, value)
        self.count += 1
        self.total += value
        i = bucket_of(value)
        self.buckets[i] = self.buckets.get(i, 0) + 1

    def add_values(self, values: array[int] | list[int]) -> None:
        """Count many values at once (fast for large batches: each distinct value once when
        there are few, a table of buckets for values of 256 ns to 1 ms, else a sorted copy)."""
        n = len(values)
        if n == 0:
            return
        if n >= 1024:
            distinct = Counter(values)
            if len(distinct) * 8 <= n:  # few distinct values (a coarse clock): each once
                self._extend_range(min(distinct), max(distinct))
                self.count += n
                self.total += sum(values)
                b = self.buckets
                for v, c in distinct.items():
                    i = bucket_of(v)
                    b[i] = b.get(i, 0) + c
                return
            lo, hi = min(values), max(values)
            if lo >= _TABLE_LOW and hi < _TABLE_HIGH:
                # Every value's bucket from its 16-ns block, all in C-level iteration.
                counts = Counter(map(_table().__getitem__, map(rshift, values, repeat(4))))
                self._extend_range(lo, hi)
                self.count += n
                self.total += sum(values)
                add_counts(self.buckets, counts)
                return
        ordered = sorted(values)
        lo, hi = ordered[0], ordered[-1]
        self._extend_range(lo, hi)
        self.count += n
        self.total += sum(ordered)
        buckets = self.buckets
        if n < 64:
            for v in ordered:
                i = bucket_of(v)
                buckets[i] = buckets.get(i, 0) + 1
            return
        start = 0
        i = bucket_of(lo)
        last = bucket_of(hi)
        while start < n:
            end = n if i == last else bisect_left(ordered, bucket_low(i + 1), start)
            if end > start:
                buckets[i] = buckets.get(i, 0) + (end - start)
                start = end
            # Jump straight to the bucket of the next value instead of walking empty ones.
            i = bucket_of(ordered[start]) if start < n else last + 1

    def _extend_range(self, lo: int, hi: int) -> None:
        if self.count == 0:
            self.min, self.max = lo, hi
        else:
            if lo < self.min:
                self.min = lo
            if hi > self.max:
                self.max = hi

    def merge(self, other: Histogram) -> None:
        """Add ``other``'s counts to this one."""
        if other.count == 0:
            return
        self._extend_range(other.min, other.max)
        self.count += other.count
        self.total += other.total
        add_counts(self.buckets, other.buckets)

    def copy(self) -> Histogram:
        h = Histogram.__new__(Histogram)
        h.buckets = dict(self.buckets)
        h.count, h.total, h.min, h.max = self.count, self.total, self.min, self.max
        return h

    @classmethod
    def merged(cls, parts: Iterable[Histogram]) -> Histogram:
        """A new histogram holding all of ``parts`` (their buckets summed in one go)."""
        hists = parts if isinstance(parts, list) else list(parts)
        sums = sum_hists(hists)
        if sums is None:  # a figure beyond 64 bits
            sums = _python_sum_hists(hists)
        h = cls()
        h.count, h.total, h.min, h.max, h.buckets = sums
        return h

    def percentile(self, q: float) -> int:
        """The value at quantile ``q`` (0..1): the middle of its bucket, clamped to [min, max].

        Exact for values below 32 ns; otherwise within half a bucket (about 3 %).
        """
        return self.percentiles((q,))[0]

    def percentiles(self, qs: tuple[float, ...]) -> list[int]:
        """`percentile` of each of ``qs`` (ascending), in one walk over the buckets."""
        if self.count == 0:
            return [0] * len(qs)
        ranks = [max(1, min(self.count, int(q * self.count + 0.999999))) for q in qs]
        out: list[int] = []
        k, want = 0, len(ranks)
        seen = 0
        for i, n in sorted(self.buckets.items()):
            seen += n
            while seen >= ranks[k]:
                mid = (bucket_low(i) + bucket_high(i)) // 2
                out.append(max(self.min, min(self.max, mid)))
                k += 1
                if k == want:
                    return out
        return out + [self.max] * (want - k)  # pragma: no cover - counts always add up

    def count_at_least(self, threshold: int) -> int:
        """How many values were >= ``threshold`` (whole buckets: may miss values in the
        threshold's own bucket, never counts one below it)."""
        if self.count == 0 or self.max < threshold:
            return 0
        if self.min >= threshold:
            return self.count
        return sum(c for i, c in self.buckets.items() if bucket_low(i) >= threshold) or 1

    def summary(self) -> dict[str, int]:
        """count, total, min, max, p50, p95, p99: the figures the reports show."""
        return {
            "count": self.count,
            "total": self.total,
            "min": self.min,
            "max": self.max,
            **dict(zip(("p50", "p95", "p99"), self.percentiles((0.50, 0.95, 0.99)), strict=True)),
        }

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form; `from_dict` reverses it."""
        return {
            "count": self.count,
            "total": self.total,
            "min": self.min,
            "max": self.max,
            "buckets": [[i, self.buckets[i]] for i in sorted(self.buckets)],
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Histogram:
        """Rebuild a histogram written by `to_dict`."""
        h = cls()
        h.count = int(d["count"])
        h.total = int(d["total"])
        h.min = int(d["min"])
        h.max = int(d["max"])
        h.buckets = dict(d["buckets"])  # (pairs of ints: this runs for every stat of a shard)
        return h

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Histogram):
            return NotImplemented
        return self.to_dict() == other.to_dict()

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"<Histogram n={self.count} min={self.min} max={self.max}>"
