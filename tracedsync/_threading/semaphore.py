"""`TracedSemaphore` and `TracedBoundedSemaphore`: ``threading``'s semaphores, behind a proxy.

Design note.

* Behaviour. The real semaphore does all the counting, blocking and raising; the proxy calls its
  ``acquire``/``release`` with the caller's own arguments and returns or raises what they do.
* Contention. Like `TracedLock`: a blocking acquire first tries the real ``acquire(False)``
  (which never raises, whatever the caller's timeout); success is *uncontended*. Failure makes it
  *contended*: we read the clock and call the real ``acquire`` with the caller's own arguments,
  which validates them as the original does. A non-blocking call goes straight to the real
  ``acquire`` (``acquire(False, 1)`` raises its ValueError there); it is contended if it fails.
* Holders. A semaphore has no owner, but knowing who holds permits is what explains a thread
  stuck in ``acquire``. ``held`` maps ident -> permits, updated after the real call succeeds,
  under the primitive's raw ``books`` lock (several threads update it at once). A release takes
  back the releasing thread's own permits first; the rest (a hand-off, or a semaphore used as a
  signal) is taken from the other holders, oldest first, and counted as ``for_others``. So the
  books hold exactly acquires minus releases, never negative, and what is left at exit is
  reported in the ``stats`` event (``held_by``).
* ``permits`` in events is the real semaphore's value read just after the call: a snapshot,
  since other threads may acquire or release at the same instant.
* Misuse. Releasing a BoundedSemaphore past its initial value raises the original's ValueError
  and is recorded as ``misuse`` (``over_release``); ``release(0)`` raises its own ValueError
  (an argument error, not recorded).
* Twins. The multiprocessing semaphores (`_mp_semaphore.py`) keep the same books and record the
  same events with the functions below: `_acquire_blocked`, `_booked`, `_refused`, `_released`
  and `_sem_stats`. Each twin makes its own calls to the real semaphore (their signatures
  differ) and passes what else differs: how the permits left are read (``permits``), and
  whether an exception from a blocked acquire is recorded as an interruption (``plain``:
  threading's only with a timeout it accepts, see `plain_timeout`; multiprocessing's always).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any, cast

from .._core import runtime as rt
from .._core.ops import OP_GENERIC, OP_MISUSE, OP_SEM_ACQUIRE, OP_SEM_RELEASE
from .._core.registry import new_state
from .._core.sites import user_site
from .._core.state import SemaphoreState
from .._core.waits import forget, wait_sem
from . import originals as _originals
from .proxy import TracedProxy, new_books, plain_timeout, untraced
from .proxy import get_state as _get_any_state

get_state = cast("Callable[[Any], SemaphoreState]", _get_any_state)
"""The state of one of this module's proxies (always a `SemaphoreState`)."""

_getframe = sys._getframe
FULL = rt.FULL

# The real classes, captured before anyone can patch them.
RawSemaphore = _originals.RawSemaphore
RawBoundedSemaphore = _originals.RawBoundedSemaphore

Permits = Callable[[SemaphoreState], int | None]
"""How a twin reads the permits left in the real semaphore (a snapshot, for events)."""


def _permits(st: SemaphoreState) -> int:
    return st.raw._value  # type: ignore[no-any-return]


def _max_permits(st: SemaphoreState) -> int:
    return st.raw._initial_value  # type: ignore[no-any-return]


class TracedSemaphore(TracedProxy):
    """A traced ``threading.Semaphore``: same behaviour, plus who waited and who holds permits."""

    __slots__ = ()
    _kind = "Semaphore"
    _raw_class: Any = RawSemaphore

    def __init__(
        self,
        value: int = 1,
        *,
        name: str | None = None,
        _site: tuple[Any, int] | None = None,
    ) -> None:
        raw = untraced(self._raw_class, value)
        super().__init__(raw)
        code, lineno = _site if _site is not None else user_site()
        st = new_state(SemaphoreState, raw, self._kind, name, code, lineno, {"value": value})
        new_books(st)
        st.extra_stats = _extra_stats
        self._self_state = st

    def acquire(self, blocking: bool = True, timeout: float | None = None, *,
                _depth: int = 1) -> bool:
        """Acquire a permit, exactly as ``threading``'s does, and record it."""
        st = get_state(self)
        raw = st.raw
        level = rt.level
        if level and blocking and raw.acquire(False):
            # Uncontended: the books and one event, inline (see _booked for the general case).
            try:
                me = rt.tls.ident
            except AttributeError:
                me = rt.register_thread()
            held = st.held
            with st.books:
                mine = held.get(me, 0) + 1
                held[me] = mine
                st.acquisitions += 1
            if level == FULL:
                f = _getframe(_depth)
                rt.emit((OP_SEM_ACQUIRE, rt.now(), me, st.prim, True, False, 0, raw._value, mine,
                         bool(blocking), timeout, f.f_code, f.f_lineno))
            return True
        if not level:
            return raw.acquire(blocking, timeout)  # type: ignore[no-any-return]
        return _acquire_slow(st, blocking, timeout, _depth + 1)

    def __enter__(self) -> bool:
        st = get_state(self)
        raw = st.raw
        level = rt.level
        if level and raw.acquire(False):
            try:
                me = rt.tls.ident
            except AttributeError:
                me = rt.register_thread()
            held = st.held
            with st.books:
                mine = held.get(me, 0) + 1
                held[me] = mine
                st.acquisitions += 1
            if level == FULL:
                f = _getframe(1)
                rt.emit((OP_SEM_ACQUIRE, rt.now(), me, st.prim, True, False, 0, raw._value, mine,
                         True, None, f.f_code, f.f_lineno))
            return True
        if not level:
            return raw.acquire()  # type: ignore[no-any-return]
        return _acquire_slow(st, True, None, 2)

    def release(self, n: int = 1) -> None:
        """Release ``n`` permits, exactly as ``threading``'s does, and record it."""
        _release(get_state(self), n)

    def __exit__(self, *exc_info: object) -> None:
        _release(get_state(self), 1)


class TracedBoundedSemaphore(TracedSemaphore):
    """A traced ``threading.BoundedSemaphore``; an over-release is also recorded as misuse."""

    __slots__ = ()
    _kind = "BoundedSemaphore"
    _raw_class: Any = RawBoundedSemaphore



def _acquire_slow(st: SemaphoreState, blocking: bool, timeout: float | None, fdepth: int) -> bool:
    """Every acquire whose first non-blocking try did not succeed (or that is non-blocking)."""
    if not blocking or (plain_timeout(timeout) and timeout is not None and timeout <= 0):
        # A try never waits (timeout <= 0 is one): never in the wait-for graph.
        ok = st.raw.acquire(blocking, timeout)  # the real one validates and answers
        return _booked(st, ok, not ok, 0, blocking, timeout, fdepth + 1, None, _permits)
    return _acquire_blocked(st, blocking, timeout, plain_timeout(timeout), fdepth + 1, _permits)


def _acquire_blocked(st: SemaphoreState, blocking: Any, timeout: Any, plain: bool, fdepth: int,
                     permits: Permits) -> bool:
    """A blocking acquire that found no permit: the real ``acquire(blocking, timeout)``
    (``st.acquire``), in the wait-for graph meanwhile, timed, booked and recorded. ``plain``:
    the timeout is registered, and an exception from the call is an interruption (recorded),
    not an argument error. Both twins."""
    t0 = rt.now()
    me = rt.ident()
    try:
        # Runtime detection (_detect.py): in the wait-for graph while blocked (owners: the
        # permit holders); raises DeadlockError, unregistered, with on_deadlock="raise".
        wait_sem(me, st, timeout if plain else None, _getframe(fdepth))
        got: bool | None = None  # how the wait ended, for a reported deadlock (deadlock_end)
        try:
            ok = got = st.acquire(blocking, timeout)
        finally:
            forget(me, got)
    except BaseException as exc:  # KeyboardInterrupt while blocked, or a bad timeout
        if plain:
            t1 = rt.now()
            _booked(st, False, True, t1 - t0, blocking, timeout, fdepth + 1, t1, permits)
            f = _getframe(fdepth)
            rt.emit((OP_GENERIC, t1, me, "interrupted",
                     {"prim": st.prim, "error": repr(exc)}, f.f_code, f.f_lineno))
        raise
    t1 = rt.now()
    return _booked(st, ok, True, t1 - t0, blocking, timeout, fdepth + 1, t1, permits)


def _booked(
    st: SemaphoreState,
    ok: bool,
    contended: bool,
    wait: int,
    blocking: Any,
    timeout: Any,
    fdepth: int,
    t: int | None,
    permits: Permits,
) -> bool:
    """Update the books after an acquire and record it. Returns ``ok``. Both twins."""
    try:
        me = rt.tls.ident
    except AttributeError:
        me = rt.register_thread()
    with st.books:
        held = st.held
        if ok:
            mine = held.get(me, 0) + 1
            held[me] = mine
            st.acquisitions += 1
        else:
            mine = held.get(me, 0)
            st.failed += 1
        if contended:
            st.contended += 1
            st.wait_ns += wait
    level = rt.level
    if level == FULL or (level and (contended or not ok)):
        f = _getframe(fdepth)
        rt.emit((OP_SEM_ACQUIRE, rt.now() if t is None else t, me, st.prim, bool(ok), contended,
                 wait, permits(st), mine, bool(blocking), timeout, f.f_code, f.f_lineno))
    return ok


def _release(st: SemaphoreState, n: int) -> None:
    """release(n) on the real semaphore, then the books: the caller's own permits first."""
    raw = st.raw
    if not rt.level:
        raw.release(n)
        return
    try:
        raw.release(n)
    except ValueError as exc:
        _refused(st, n, exc, 3)  # _refused <- _release <- release/__exit__ <- the caller
        raise
    _released(st, n, 3, _permits)


def _refused(st: SemaphoreState, n: int, exc: BaseException, fdepth: int) -> None:
    """The real release(n) raised ValueError ``exc``: the over-release of a BoundedSemaphore
    is recorded as misuse. Both twins (multiprocessing's releases one: ``n`` 1)."""
    # The original checks n >= 1 first; any other ValueError from a bounded semaphore with a
    # whole n is the over-release.
    if st.kind == "BoundedSemaphore" and type(n) is int and n >= 1:
        with st.books:
            st.misuse += 1
        f = _getframe(fdepth)
        rt.emit((OP_MISUSE, rt.now(), rt.ident(), st.prim, "over_release", str(exc),
                 f.f_code, f.f_lineno))


def _released(st: SemaphoreState, n: int, fdepth: int, permits: Permits) -> None:
    """The books after a real release of ``n`` permits, and its event. Both twins."""
    try:
        me = rt.tls.ident
    except AttributeError:
        me = rt.register_thread()
    held = st.held
    others = 0
    with st.books:
        mine = held.get(me, 0) - n
        if mine > 0:
            held[me] = mine
        elif mine == 0:
            del held[me]
        else:
            others = _take_from_others(held, me, -mine)
            mine = 0
        st.releases += 1
    if rt.level == FULL:
        f = _getframe(fdepth)
        rt.emit((OP_SEM_RELEASE, rt.now(), me, st.prim, n, permits(st), mine, others,
                 f.f_code, f.f_lineno))


def _take_from_others(held: dict[int, int], me: int, rest: int) -> int:
    """The caller released ``rest`` permits more than it held: take them from the other holders,
    oldest first. Returns how many were found. Called with the books lock held."""
    held.pop(me, None)
    others = 0
    while rest and held:
        ident = next(iter(held))
        count = held[ident]
        if count > rest:
            held[ident] = count - rest
            others += rest
            rest = 0
        else:
            del held[ident]
            others += count
            rest -= count
    return others


def _extra_stats(st: SemaphoreState) -> dict[str, Any]:
    return _sem_stats(st, _permits, _max_permits)


def _sem_stats(st: SemaphoreState, permits: Permits, max_permits: Permits) -> dict[str, Any]:
    """The ``stats`` fields of a semaphore: permits left, releases, holders. Both twins."""
    with st.books:
        held_by = tuple(st.held.items())
        releases = st.releases
    extra: dict[str, Any] = {"permits": permits(st), "releases": releases, "held_by": held_by}
    if st.kind == "BoundedSemaphore":
        extra["max_permits"] = max_permits(st)
    return extra


def Semaphore(value: int = 1, *, name: str | None = None) -> TracedSemaphore:
    """A new traced ``threading.Semaphore``; ``name`` labels it in the logs."""
    if rt.in_guard():
        return RawSemaphore(value)  # type: ignore[return-value]  # our own machinery: untraced
    f = _getframe(1)
    return TracedSemaphore(value, name=name, _site=(f.f_code, f.f_lineno))


def BoundedSemaphore(value: int = 1, *, name: str | None = None) -> TracedBoundedSemaphore:
    """A new traced ``threading.BoundedSemaphore``; ``name`` labels it in the logs."""
    if rt.in_guard():
        return RawBoundedSemaphore(value)  # type: ignore[return-value]
    f = _getframe(1)
    return TracedBoundedSemaphore(value, name=name, _site=(f.f_code, f.f_lineno))
