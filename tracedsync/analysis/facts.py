"""Facts the findings need beyond counts: rare events kept whole, and time spans. Mergeable.

Design note. A finding that must be right by construction needs the evidence itself, not a
tally: how a reported deadlock ended (``deadlock_end``), which test was running
(``test``), whether another thread wrote an item *while* a thread read-modified-wrote it (the
spans of their writes), what a semaphore's value was at the very end of the run (the last
``stats`` of all its processes). `Facts` keeps them, one instance per `Aggregate`, with the
same rules as the rest of it: merging is associative, commutative and pure (lists sorted,
spans widened, "the last" chosen by timestamp then by value), ids renamed by
`Aggregate.rename`, and a JSON form.

* ``notes``: events by name, each the fields the findings read (see `scan`/`handlers`),
  with ``host``, ``pid``, ``tid`` and ``ts``. Kept for rare events only.
* ``writes``: per item of a Value or Array (``prim``, ``key``: an index, a slice, a field, or
  None for ``.value``), per thread, the span of its writes ``[first ts, last ts]``.
* ``rmws``: per unsynchronised read-modify-write site and item (``prim``, ``site``, ``key``),
  per thread, ``[first read ts, last write ts, count]``; ``read_sites``: where each site's
  writes read the value (the smallest, per primitive and write site).
* ``sem_last``: per semaphore, ``[ts, permits]`` of its last ``stats`` (the value at the end).

Items of one Value or Array past `MAX_ITEMS` are folded into one item, ``ALL``: a write
anywhere in it then counts for every item (more reports, never fewer).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from typing import Any

from .caps import stable_key

Thread = tuple[str, int, int]
ItemKey = tuple[str, Any]  # (prim, key)
RmwKey = tuple[str, str, Any]  # (prim, write site, key)
ALL = "*"
MAX_ITEMS = 50_000  # items of one primitive kept apart, in writes and in rmws
PRIM_FIELDS = ("prim", "lock", "cond", "held", "waited_lock")
"""Fields of a note that hold a primitive id (renamed with the rest)."""


def _widen(span: list[int], lo: int, hi: int) -> None:
    if lo < span[0]:
        span[0] = lo
    if hi > span[1]:
        span[1] = hi


@dataclasses.dataclass
class Facts:
    """See the module docstring."""

    notes: dict[str, list[dict[str, Any]]] = dataclasses.field(default_factory=dict)
    writes: dict[ItemKey, dict[Thread, list[int]]] = dataclasses.field(default_factory=dict)
    rmws: dict[RmwKey, dict[Thread, list[int]]] = dataclasses.field(default_factory=dict)
    read_sites: dict[tuple[str, str], str] = dataclasses.field(default_factory=dict)
    sem_last: dict[str, list[Any]] = dataclasses.field(default_factory=dict)

    # -- adding (a scan) ---------------------------------------------------------------------
    def note(self, name: str, fields: dict[str, Any]) -> None:
        self.notes.setdefault(name, []).append(fields)

    def wrote(self, prim: str, key: Any, thread: Thread, ts: int) -> None:
        per = self.writes.get((prim, key))
        if per is None:
            per = self.writes[(prim, key)] = {}
        span = per.get(thread)
        if span is None:
            per[thread] = [ts, ts]
        else:
            _widen(span, ts, ts)

    def rmw(self, prim: str, site: str, key: Any, thread: Thread, read_ts: int, ts: int,
            read_site: str | None) -> None:
        k = (prim, site, key)
        per = self.rmws.get(k)
        if per is None:
            per = self.rmws[k] = {}
        span = per.get(thread)
        if span is None:
            per[thread] = [read_ts, ts, 1]
        else:
            _widen(span, read_ts, ts)
            span[2] += 1
        rk = (prim, site)
        if read_site and (rk not in self.read_sites or read_site < self.read_sites[rk]):
            self.read_sites[rk] = read_site

    def sem_stats(self, prim: str, ts: int, permits: Any) -> None:
        cur = self.sem_last.get(prim)
        if cur is None or stable_key([ts, permits]) > stable_key(cur):
            self.sem_last[prim] = [ts, permits]

    def cap(self) -> None:
        """Fold the items of a primitive with too many into `ALL` (see the module docstring)."""
        self.writes = _fold(self.writes, lambda k: k[0], lambda k: (k[0], ALL))
        self.rmws = _fold(self.rmws, lambda k: k[0], lambda k: (k[0], k[1], ALL))

    # -- queries -------------------------------------------------------------------------------
    def writers(self, prim: str, key: Any) -> dict[Thread, list[int]]:
        """Who wrote the item, and when (the folded item's writers too)."""
        out = dict(self.writes.get((prim, key), {}))
        for t, span in self.writes.get((prim, ALL), {}).items():
            cur = out.get(t)
            out[t] = list(span) if cur is None else [min(cur[0], span[0]), max(cur[1], span[1])]
        return out

    # -- merging -------------------------------------------------------------------------------
    def merge(self, o: Facts) -> None:
        for name, items in o.notes.items():
            mine = self.notes.setdefault(name, [])
            mine.extend(dict(x) for x in items)
            mine.sort(key=stable_key)
        _merge_spans(self.writes, o.writes)
        _merge_spans(self.rmws, o.rmws)
        for k, v in o.read_sites.items():
            if k not in self.read_sites or v < self.read_sites[k]:
                self.read_sites[k] = v
        for prim, last in o.sem_last.items():
            self.sem_stats(prim, *last)
        self.cap()

    def rename(self, prim: Callable[[str], str], host: Callable[[str], str]) -> None:
        def th(t: Thread) -> Thread:
            return (host(t[0]), t[1], t[2])

        for items in self.notes.values():
            for x in items:
                x["host"] = host(str(x.get("host", "")))
                for f in PRIM_FIELDS:
                    if isinstance(x.get(f), str):
                        x[f] = prim(x[f])
        self.writes = {(prim(p), k): {th(t): s for t, s in per.items()}
                       for (p, k), per in self.writes.items()}
        self.rmws = {(prim(p), site, k): {th(t): s for t, s in per.items()}
                     for (p, site, k), per in self.rmws.items()}
        self.read_sites = {(prim(p), s): v for (p, s), v in self.read_sites.items()}
        self.sem_last = {prim(p): v for p, v in self.sem_last.items()}

    # -- JSON ----------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        def spans(d: dict[Any, dict[Thread, list[int]]]) -> list[Any]:
            return [[list(k), [[list(t), s] for t, s in sorted(per.items())]]
                    for k, per in sorted(d.items(), key=lambda kv: stable_key(list(kv[0])))]

        return {
            "notes": {n: list(v) for n, v in sorted(self.notes.items())},
            "writes": spans(self.writes),
            "rmws": spans(self.rmws),
            "read_sites": [[list(k), v] for k, v in sorted(
                self.read_sites.items(), key=lambda kv: stable_key(list(kv[0])))],
            "sem_last": dict(sorted(self.sem_last.items())),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> Facts:
        if not d:
            return cls()

        def spans(items: list[Any]) -> dict[Any, dict[Thread, list[int]]]:
            return {_key(k): {(str(t[0]), int(t[1]), int(t[2])): list(s) for t, s in per}
                    for k, per in items}

        return cls(
            notes={str(n): [dict(x) for x in v] for n, v in d.get("notes", {}).items()},
            writes=spans(d.get("writes", [])),
            rmws=spans(d.get("rmws", [])),
            read_sites={_key(k): str(v) for k, v in d.get("read_sites", [])},
            sem_last={str(p): list(v) for p, v in d.get("sem_last", {}).items()},
        )


def _key(k: list[Any]) -> Any:
    """A tuple key from its JSON list (a slice key stays a string, an index an int)."""
    return tuple(k)


def _merge_spans(mine: dict[Any, dict[Thread, list[int]]],
                 other: dict[Any, dict[Thread, list[int]]]) -> None:
    for k, per in other.items():
        cur = mine.get(k)
        if cur is None:
            mine[k] = {t: list(s) for t, s in per.items()}
            continue
        for t, s in per.items():
            c = cur.get(t)
            if c is None:
                cur[t] = list(s)
            else:
                _widen(c, s[0], s[1])
                if len(s) > 2:
                    c[2] += s[2]


def _fold(d: dict[Any, dict[Thread, list[int]]], prim_of: Callable[[Any], str],
          folded: Callable[[Any], Any]) -> dict[Any, dict[Thread, list[int]]]:
    """Fold the items of every primitive that has more than `MAX_ITEMS`, or that is folded
    already (an `ALL` item), into its `ALL` item."""
    counts: dict[str, int] = {}
    any_all: set[str] = set()
    for k in d:
        p = prim_of(k)
        counts[p] = counts.get(p, 0) + 1
        if k[-1] == ALL:
            any_all.add(p)
    fold = {p for p, n in counts.items() if n > MAX_ITEMS} | {
        p for p in any_all if counts[p] > 1}
    if not fold:
        return d
    out: dict[Any, dict[Thread, list[int]]] = {}
    for k, per in d.items():
        target = k if prim_of(k) not in fold or k[-1] == ALL else folded(k)
        cur = out.get(target)
        if cur is None:
            out[target] = {t: list(s) for t, s in per.items()}
        else:
            _merge_spans(out, {target: per})
    return out


def threads_overlapping(span: list[int], others: Iterable[tuple[Thread, list[int]]]
                        ) -> list[Thread]:
    """The threads whose span overlaps ``span`` (both ``[lo, hi, ...]``)."""
    return sorted(t for t, s in others if s[0] <= span[1] and span[0] <= s[1])
