"""Deterministic caps: keep the *smallest* keys, never the first ones to arrive.

A capped collection (the site pairs kept as examples of a lock-order edge, the threads kept per
finding) must not depend on the order in which events, files or shards were folded in, or two
reductions of the same logs would differ. Keeping the ``cap`` smallest keys is such a rule:
once a key has been dropped, ``cap`` smaller ones are kept, and since kept keys only ever get
smaller, it can never come back; so the kept set is a function of the whole multiset, counts
of kept keys are exact, and merging two capped collections gives what capping their union
would.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, TypeVar

K = TypeVar("K")


def count_smallest(counts: dict[K, int], key: K, n: int, cap: int) -> None:
    """Add ``n`` to ``counts[key]``, keeping only the ``cap`` smallest keys."""
    cur = counts.get(key)
    if cur is not None:
        counts[key] = cur + n
    elif len(counts) < cap:
        counts[key] = n
    else:
        worst = max(counts)  # type: ignore[type-var]
        if key < worst:  # type: ignore[operator]
            del counts[worst]
            counts[key] = n


def keep_smallest(kept: set[K], items: Iterable[K], cap: int) -> None:
    """Add ``items`` to ``kept``, keeping only the ``cap`` smallest."""
    for item in items:
        if item in kept:
            continue
        if len(kept) < cap:
            kept.add(item)
            continue
        worst = max(kept)  # type: ignore[type-var]
        if item < worst:  # type: ignore[operator]
            kept.discard(worst)
            kept.add(item)


def smallest(items: Iterable[K], cap: int) -> list[K]:
    """The ``cap`` smallest distinct items, sorted."""
    return sorted(set(items))[:cap]  # type: ignore[type-var]


def stable_key(value: Any) -> bytes:
    """A total order over JSON-like values (for picking one of several details)."""
    import orjson

    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS)
