"""Unsynchronised read-modify-writes that can lose an update: ``rmw``.

A thread reads an item of a shared Value or Array and writes it back without holding the
value's lock across both (``v.value += 1``; ``arr[i] += 1``). That loses an update only if
another thread or process writes the same item in between. So the finding asks the log exactly
that: while this thread read-modified-wrote the item (from its first such read to its last such
write), did another thread or process write the same item? Each process updating its own slot
of an Array, or the parent updating a Value after joining every worker, is correct and not
reported. At level ``contention`` the log has no reads and writes, only the first
read-modify-write of each site and process: two or more threads (or processes) doing it to the
same item is then reported, with a warning, since their overlap in time cannot be checked.
"""

from __future__ import annotations

from typing import Any

from ..aggregate import Aggregate, Thread
from ..facts import ALL, threads_overlapping
from ..labels import Labels
from . import Finding, make

ADVICE = "hold the value's lock around the whole update (with v.get_lock(): ...)"


def _item_text(key: Any) -> str:
    if key is None or key == ALL:
        return ""
    return f" [{key}]" if isinstance(key, int) or ":" in str(key) else f".{key}"


def detect(agg: Aggregate, labels: Labels) -> list[Finding]:
    facts = agg.facts
    found: dict[tuple[str, str], dict[str, Any]] = {}
    for (prim, site, key), per in sorted(facts.rmws.items(), key=lambda kv: str(kv[0])):
        wrote = facts.writers(prim, key)
        for thread, span in sorted(per.items()):
            others = [(t, s) for t, s in wrote.items() if t != thread]
            racing = threads_overlapping(span, others)
            if not racing:
                continue
            f = found.setdefault((prim, site), {"threads": set(), "racing": set(), "count": 0,
                                                "items": set(), "stamps": []})
            f["threads"].add(thread)
            f["racing"].update(racing)
            f["count"] += span[2]
            f["items"].add(key)
            f["stamps"].append([*thread, span[0]])
    out: list[Finding] = []
    for (prim, site), f in sorted(found.items()):
        read = facts.read_sites.get((prim, site))
        items = sorted(f["items"], key=str)
        which = ", ".join(_item_text(k).strip(" .") for k in items[:5] if _item_text(k))
        more = f" and {len(items) - 5} more" if len(items) > 5 else ""
        doers: list[Thread] = sorted(f["threads"])
        writers: list[Thread] = sorted(f["racing"] - f["threads"])
        by = ", ".join(labels.thread_text(*t) for t in doers[:3])
        by += f" and {len(doers) - 3} more" if len(doers) > 3 else ""
        also = ", ".join(labels.thread_text(*t) for t in writers[:3])
        also += f" and {len(writers) - 3} more" if len(writers) > 3 else ""
        out.append(make(
            "rmw", "error",
            f"Unsynchronised read-modify-write of {labels.prim(prim)}"
            + (f" (item {which}{more})" if which else "")
            + f" at {site}" + (f" (read at {read})" if read and read != site else "")
            + f", {f['count']} time(s), by {by}"
            + (f", while {also} wrote the same item" if also else "")
            + f": these updates overlap in time, so some can be lost; {ADVICE}.",
            labels,
            sites=[site, read or ""],
            threads=[*f["threads"], *f["racing"]],
            prims=[prim],
            count=f["count"],
            items=[k for k in items if k is not None][:64],
            stamps=f["stamps"][:64],
        ))
    out.extend(_without_values(agg, labels))
    return out


def _without_values(agg: Aggregate, labels: Labels) -> list[Finding]:
    """Level ``contention``: the first read-modify-write of each site and process only."""
    by_item: dict[tuple[str, Any], dict[tuple[str, int, Any], dict[str, Any]]] = {}
    for n in agg.facts.notes.get("rmw", []):
        t = (str(n.get("host", "")), int(n.get("pid") or 0), n.get("tid"))
        by_item.setdefault((n["prim"], n.get("key")), {}).setdefault(t, n)
    out: list[Finding] = []
    for (prim, key), per in sorted(by_item.items(), key=lambda kv: str(kv[0])):
        if len(per) < 2:
            continue
        sites = sorted({str(n.get("site")) for n in per.values()})
        out.append(make(
            "rmw", "warning",
            f"Unsynchronised read-modify-write of {labels.prim(prim)}{_item_text(key)} at "
            f"{', '.join(sites)} by {len(per)} threads or processes: concurrent updates can be "
            f"lost if they overlap in time (a log at level contention cannot show it); {ADVICE}.",
            labels,
            sites=sites,
            threads=[t for t in per if isinstance(t[2], int)],
            prims=[prim],
            count=len(per),
            stamps=[[*t, n.get("ts")] for t, n in sorted(per.items(), key=str)],
        ))
    return out
