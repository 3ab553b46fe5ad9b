"""Human names for primitives and threads, shared by findings and renderers.

A primitive is named by what the user can find in their code: the ``name=`` it was given, else
the name its creating line assigned it to (``self._lock = threading.Lock()`` in
``Account.__init__`` is ``Account._lock``; read from the source by the recorder's flusher, the
``created`` event's ``var``), then its kind and id, and where it was created:
``Account._lock (Lock 123.4, created at bank.py:12)``. The lock a Condition, Value or Array
made for itself on the same line is ``<its owner>.lock``.
"""

from __future__ import annotations

from typing import Any

from .aggregate import Aggregate, PrimInfo
from .hosts import hosts_of


class Labels:
    """Names primitives (see the module docstring) and threads (their names)."""

    def __init__(self, agg: Aggregate) -> None:
        self._agg = agg
        self._lock_of = {i.lock: p for p, i in agg.prims.items() if i.lock}  # lock -> owner
        names = {
            (src.host, s.get("pid")): s.get("process") for src in agg.sources for s in src.sessions
        }
        # Threads of child processes are all "MainThread": name them by their process too.
        self._process = {
            pid: name for pid, name in names.items()
            if isinstance(name, str) and name != "MainProcess" and len(names) > 1
        }
        # Over several hosts, a thread is named with its host (its pid alone is ambiguous).
        self.multi_host = len(hosts_of(agg)) > 1

    def title(self, prim: str) -> str | None:
        """What the user calls it: its ``name=``, else the name its creating line assigned it
        to (``<owner>.lock`` for the lock its Condition, Value or Array made), else None."""
        info = self._agg.prims.get(prim)
        if info is None:
            return None
        if info.name:
            return info.name
        owner = self._lock_of.get(prim)
        if owner is not None:
            o = self._agg.prims.get(owner)
            if o is not None and (not info.var or (info.site and info.site == o.site)):
                mine = self.title(owner)
                return f"{mine}.lock" if mine else None
        return info.var

    def prim(self, prim: str) -> str:
        """For a sentence: ``"Account._lock (Lock 12.3, created at bank.py:12)"``,
        ``"Lock 12.3 (created at bank.py:12)"``, or ``"Lock 12.3"``."""
        info = self._agg.prims.get(prim)
        if info is None:
            return prim
        title = self.title(prim)
        base = f"{info.kind} {prim}"
        if info.site:
            return (f"{title} ({base}, created at {info.site})" if title
                    else f"{base} (created at {info.site})")
        return f"{title} ({base})" if title else self._unsited(prim, base)

    def short(self, prim: str) -> str:
        """For a table, which shows the creation site in a column of its own:
        ``"Account._lock (Lock 12.3)"`` or ``"Lock 12.3"``."""
        info = self._agg.prims.get(prim)
        if info is None:
            return prim
        title = self.title(prim)
        base = f"{info.kind} {prim}"
        return f"{title} ({base})" if title else self._unsited(prim, base)

    def _unsited(self, prim: str, base: str) -> str:
        owner = self._lock_of.get(prim)
        return f"{base} (lock of {self.prim(owner)})" if owner is not None else base

    def describe(self, prim: str) -> dict[str, Any]:
        """A primitive as a finding's JSON names it: id, kind, name, assigned name, creation
        site and function, and the label used in its sentence."""
        info = self._agg.prims.get(prim) or PrimInfo(prim)
        return {"prim": prim, "kind": info.kind, "name": info.name, "var": self.title(prim),
                "created_at": info.site, "func": info.func, "label": self.prim(prim)}

    def created_at(self, prim: str) -> str | None:
        info = self._agg.prims.get(prim)
        return info.site if info is not None else None

    def thread_name(self, host: str, pid: int, tid: int) -> str:
        """The thread's name; in a log of several processes, ``"Process-1/MainThread"`` for a
        thread of a child process."""
        name = self._agg.threads.get((host, pid, tid), str(tid))
        process = self._process.get((host, pid))
        return f"{process}/{name}" if process else name

    def thread(self, host: str, pid: int, tid: int) -> dict[str, Any]:
        """A thread reference as reports carry it (with its host over several hosts)."""
        out: dict[str, Any] = {"pid": pid, "tid": tid, "name": self.thread_name(host, pid, tid)}
        if self.multi_host:
            out["host"] = host
        return out

    def thread_text(self, host: str, pid: int, tid: int) -> str:
        """``"worker-1 (12/34)"``: the name, then its process and native thread id."""
        where = f"{host}:" if self.multi_host else ""
        return f"{self.thread_name(host, pid, tid)} ({where}{pid}/{tid})"
