"""The watchdog: ``long_wait`` and ``long_hold`` while they last, and deadlocks no check saw.

Design note. It runs inside the recorder's flusher thread (`Recorder.tick_hooks`), once per
``flush_interval``, just before the periodic flush, so what it records is on disk in the same
tick; a threshold is therefore noticed up to one ``flush_interval`` late. It only reads:

* the wait-for table (`tracedsync._core.waits.current`, a copy): a wait older than
  ``long_wait`` is reported once per wait, with the waiting thread's stack and who holds what
  it waits for;
  and every tick, `deadlock.scan` looks for a cycle that no thread's own check saw (a race on a
  condition's re-acquire, or a walk into another process that completed later);
* the live primitives' books (`_registry.live_states`): a Lock/RLock whose ``owner`` has held it
  since ``t_hold`` for more than ``long_hold`` is reported once per hold (a new hold has a new
  ``t_hold``), with the holder's stack. Scanning every live primitive costs time proportional
  to their number, once per tick, which is why it runs only when ``long_hold`` is set.

It takes no lock: single reads of other threads' books (a moment old at worst: a report of a
hold that ended a microsecond earlier is possible, and harmless).
"""

from __future__ import annotations

import sys
from typing import Any

from .._core import runtime as rt
from .._core.ops import OP_GENERIC
from .._core.registry import live_states
from .._core.sites import format_stack
from .._core.state import ConditionState, is_lock_state
from .._core.waits import any_waiting, current, native_id
from .._multiprocessing import wait_table as _xwaits
from .._record.config import Settings
from . import deadlock
from .lockorder import acquired_at

_long_wait_ns: int | None = None
_long_hold_ns: int | None = None
_hold_reported: dict[str, int] = {}  # prim -> t_hold of the hold already reported
ticks = 0
"""Passes made so far (tests wait on it)."""


def tick() -> None:
    """One watchdog pass (the flusher calls it every ``flush_interval``)."""
    global ticks
    if rt.level:  # at "off" nothing is traced and the books are not kept
        _xwaits.refresh()  # first: the scan below, and other processes', read it
        if any_waiting():
            deadlock.scan()
            if _long_wait_ns is not None:
                _long_waits(_long_wait_ns)
        if _long_hold_ns is not None:
            _long_holds(_long_hold_ns)
    ticks += 1


def _long_waits(limit: int) -> None:
    now = rt.now()
    frames: dict[int, Any] | None = None
    for ident, w in current().items():
        if w.long_reported or now - w.since < limit:
            continue
        w.long_reported = True
        if frames is None:
            frames = sys._current_frames()
        st = w.st
        owners = [o for o in w.owners()]
        tids = [o[1] if isinstance(o, tuple) else native_id(o) for o in owners]
        fields: dict[str, Any] = {
            "prim": st.prim,
            "name": st.name,
            "kind": st.kind,
            "what": w.what,
            "wait_ns": now - w.since,
            "timeout": w.timeout,
            "blocked_by": tids[0] if len(tids) == 1 and not isinstance(owners[0], tuple) else None,
            "owners": tids,
            "ongoing": True,
            "stack": format_stack(frames.get(ident)),
        }
        if isinstance(st, ConditionState) and st.lock_state is not None:
            fields["lock"] = st.lock_state.prim
        code, line = w.site()
        rt.emit((OP_GENERIC, now, ident, "long_wait", fields, code, line))


def _long_holds(limit: int) -> None:
    global _hold_reported
    now = rt.now()
    frames: dict[int, Any] | None = None
    still: dict[str, int] = {}
    for st in live_states():
        if not is_lock_state(st):
            continue
        owner = st.owner
        t = st.t_hold
        if owner is None or not t or now - t < limit:
            continue
        still[st.prim] = t
        if _hold_reported.get(st.prim) == t:
            continue
        if frames is None:
            frames = sys._current_frames()
        fields: dict[str, Any] = {
            "prim": st.prim,
            "name": st.name,
            "kind": st.kind,
            "hold_ns": now - t,
            "depth": st.depth,
            "ongoing": True,
            "alive": owner in frames,
            "stack": format_stack(frames.get(owner)),
        }
        site = acquired_at(owner, st)  # known only with lock_order on
        if site is not None:
            fields["site"] = site
        rt.emit((OP_GENERIC, now, owner, "long_hold", fields, None, 0))
    _hold_reported = still


def needs_ticks() -> bool:
    """Whether the watchdog must run every flush_interval even when nothing is recorded: a
    thread is blocked (long waits, deadlocks no check saw, and its wait published for other
    processes to refresh), or holds are watched. A process whose threads all run cannot be
    part of a deadlock: its flusher may sleep."""
    return any_waiting() or _long_hold_ns is not None


def apply_settings(settings: Settings) -> None:
    """``long_wait`` and ``long_hold`` from the settings in force."""
    global _long_wait_ns, _long_hold_ns
    _long_wait_ns = None if settings.long_wait is None else int(settings.long_wait * 1e9)
    _long_hold_ns = None if settings.long_hold is None else int(settings.long_hold * 1e9)
