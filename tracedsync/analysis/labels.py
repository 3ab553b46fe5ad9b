"""Human names for primitives and threads, shared by findings and renderers."""

from __future__ import annotations

from typing import Any

from .aggregate import Aggregate


class Labels:
    """Names primitives (``name`` if given, else kind and id) and threads (their names)."""

    def __init__(self, agg: Aggregate) -> None:
        self._agg = agg
        self._lock_of = {i.lock: p for p, i in agg.prims.items() if i.lock}  # lock -> condition
        names = {
            (src.host, s.get("pid")): s.get("process") for src in agg.sources for s in src.sessions
        }
        # Threads of child processes are all "MainThread": name them by their process too.
        self._process = {
            pid: name for pid, name in names.items()
            if isinstance(name, str) and name != "MainProcess" and len(names) > 1
        }
        # Over several hosts, a thread is named with its host (its pid alone is ambiguous).
        self.multi_host = len({s.host for s in agg.sources}) > 1

    def prim(self, prim: str) -> str:
        """``"accounts (RLock 12.3)"`` or ``"RLock 12.3"``."""
        info = self._agg.prims.get(prim)
        if info is None:
            return prim
        base = f"{info.kind} {prim}"
        if info.name:
            return f"{info.name} ({base})"
        cond = self._lock_of.get(prim)
        if cond is not None:
            return f"{base} (lock of {self.prim(cond)})"
        return base

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
        where = f"{host}:" if self.multi_host else ""
        return f"{self.thread_name(host, pid, tid)} ({where}{pid}/{tid})"
