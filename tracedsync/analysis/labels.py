"""Human names for primitives and threads, shared by findings and renderers."""

from __future__ import annotations

from typing import Any

from .aggregate import Aggregate


class Labels:
    """Names primitives (``name`` if given, else kind and id) and threads (their names)."""

    def __init__(self, agg: Aggregate) -> None:
        self._agg = agg
        self._lock_of = {i.lock: p for p, i in agg.prims.items() if i.lock}  # lock -> condition

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

    def thread_name(self, pid: int, tid: int) -> str:
        return self._agg.threads.get((pid, tid), str(tid))

    def thread(self, pid: int, tid: int) -> dict[str, Any]:
        """A thread reference as reports carry it."""
        return {"pid": pid, "tid": tid, "name": self.thread_name(pid, tid)}

    def thread_text(self, pid: int, tid: int) -> str:
        return f"{self.thread_name(pid, tid)} ({pid}/{tid})"
