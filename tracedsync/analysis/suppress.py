"""Findings the user has looked at: an inline comment on the line, or a baseline file.

* Inline: ``# tracedsync: ignore[rmw]`` (kinds as in the report, comma-separated; aliases
  too, `kinds.canonical`) or ``# tracedsync: ignore`` (every kind), on a line the finding
  names: one of its call sites (where a primitive was acquired, waited on, misused...), or the
  line that created one of its primitives. Read from the source when the report is built.
* Baseline: ``tracedsync analyze --write-baseline FILE`` writes the key of every finding;
  ``--baseline FILE`` leaves out the findings whose key is in it. A key is the finding's kind
  and its sites (call sites and creation sites), each a path (from ``site-packages/`` for an
  installed module, else its last two components: the same on another checkout or machine)
  and the text of its line rather than its number, so that it stays the same across runs (ids,
  pids, thread ids and counts change) and when lines move; a site whose source cannot be read
  keeps its line number.

Suppressed findings are not dropped silently: the report lists them apart
(``Report.suppressed``, each with ``details.suppressed`` saying why), and they never count for
``--fail-on`` or the pytest plugin's ``--tracedsync-fail-on``.
"""

from __future__ import annotations

import hashlib
import json
import linecache
import os
import re
from collections.abc import Iterable
from typing import Any

from .findings import Finding
from .kinds import canonical

BASELINE_VERSION = 1
_COMMENT = re.compile(r"#\s*tracedsync:\s*ignore(?:\[([^\]]*)\])?")


def _split_site(site: str) -> tuple[str, int] | None:
    path, _, line = site.rpartition(":")
    if not path or not line.isdigit():
        return None
    return path, int(line)


def _line(site: str) -> str | None:
    where = _split_site(site)
    if where is None:
        return None
    return linecache.getline(*where) or None


def _sites(f: Finding) -> list[str]:
    created = [p.get("created_at") for p in f.primitives]
    return [s for s in dict.fromkeys([*f.call_sites, *created]) if isinstance(s, str) and s]


def inline(f: Finding) -> str | None:
    """The site whose line says to ignore this finding's kind, or None."""
    for site in _sites(f):
        text = _line(site)
        if text is None or "tracedsync" not in text:
            continue
        m = _COMMENT.search(text)
        if m is None:
            continue
        if m.group(1) is None:
            return site
        kinds = {canonical(k.strip()) for k in m.group(1).split(",") if k.strip()}
        if canonical(f.kind) in kinds:
            return site
    return None


def _portable(path: str) -> str:
    """A path as the same file is named on another machine or checkout: from
    ``site-packages/`` on for an installed module, else its last two components."""
    for marker in ("site-packages" + os.sep, "dist-packages" + os.sep):
        if marker in path:
            return path.split(marker, 1)[1]
    return os.sep.join(path.split(os.sep)[-2:])


def key(f: Finding) -> str:
    """The finding's baseline key (see the module docstring)."""
    parts = []
    for site in _sites(f):
        where = _split_site(site)
        if where is None:
            parts.append(site)
            continue
        text = linecache.getline(*where).strip()
        parts.append(f"{_portable(where[0])}:{text or where[1]}")
    blob = "\n".join([canonical(f.kind), *sorted(set(parts))])
    return hashlib.sha1(blob.encode("utf-8")).hexdigest()[:16]


def split(findings: Iterable[Finding], baseline: frozenset[str] = frozenset()
          ) -> tuple[list[Finding], list[Finding]]:
    """(kept, suppressed); every finding gets its ``key``."""
    kept: list[Finding] = []
    gone: list[Finding] = []
    for f in findings:
        f.key = key(f)
        site = inline(f)
        if site is not None:
            f.details["suppressed"] = f"ignore comment at {site}"
            gone.append(f)
        elif f.key in baseline:
            f.details["suppressed"] = "baseline"
            gone.append(f)
        else:
            kept.append(f)
    return kept, gone


def write_baseline(path: str, findings: Iterable[Finding]) -> int:
    """Write the keys of ``findings`` to ``path``; returns how many."""
    items = sorted({f.key: f for f in findings}.values(), key=lambda f: (f.kind, f.key))
    data: dict[str, Any] = {
        "tracedsync_baseline": BASELINE_VERSION,
        "findings": [{"key": f.key, "kind": f.kind, "message": f.message} for f in items],
    }
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(data, fh, indent=1, ensure_ascii=False)
        fh.write("\n")
    return len(items)


def read_baseline(path: str) -> frozenset[str]:
    """The keys of a baseline file; `ValueError` if it is not one, `OSError` if unreadable."""
    with open(path, encoding="utf-8") as fh:
        try:
            data = json.load(fh)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path} is not a tracedsync baseline ({exc})") from None
    if not isinstance(data, dict) or "tracedsync_baseline" not in data:
        raise ValueError(f"{path} is not a tracedsync baseline")
    if int(data["tracedsync_baseline"]) > BASELINE_VERSION:
        raise ValueError(f"{path} is a baseline of a newer tracedsync")
    return frozenset(str(x["key"]) for x in data.get("findings", []) if "key" in x)
