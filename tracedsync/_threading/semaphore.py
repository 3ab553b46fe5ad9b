"""`TracedSemaphore` and `TracedBoundedSemaphore`: ``threading``'s semaphores, telling their story.

Design note.

* Behaviour. Each is a subclass of ``threading``'s class: every acquire and release is
  ``threading``'s own code (called with the caller's own arguments, returning or raising what it
  does), and ``isinstance`` holds. The Condition and Lock inside are built with the guard on, so
  they stay raw even when ``threading`` is patched.
* At level ``off`` the recording methods are not on the class (`set_tracing` takes them off), so
  a semaphore costs exactly what ``threading``'s costs.
* Contention. Like `TracedLock`: a blocking acquire first tries the real ``acquire(False)``
  (which never raises, whatever the caller's timeout); success is *uncontended*. Failure makes it
  *contended*: we read the clock and call the real ``acquire`` with the caller's own arguments,
  which validates them as the original does. A non-blocking call with other arguments than
  ``acquire(False)`` goes straight to the real ``acquire`` (``acquire(False, 1)`` raises its
  ValueError there); it is contended if it fails.
* Holders. A semaphore has no owner, but knowing who holds permits is what explains a thread
  stuck in ``acquire``. ``held`` maps ident -> permits, updated after the real call succeeds,
  under the primitive's raw ``books`` lock (several threads update it at once). A release takes
  back the releasing thread's own permits first; the rest (a hand-off, or a semaphore used as a
  signal) is taken from the other holders, oldest first, and counted as ``for_others``. So the
  books hold exactly acquires minus releases, never negative, and what is left at exit is
  reported in the ``stats`` event (``held_by``).
* ``permits`` in events is the real semaphore's value read just after the call: a snapshot,
  since other threads may acquire or release at the same instant.
* Records. At ``full``, an uncontended ``acquire()``/``acquire(False)`` and a ``release()`` of
  one permit write one native record (`K_SEM_ACQUIRE`, `K_SEM_RELEASE`): its arguments are
  objects that already exist, so the path creates no Python object (the books' counters past
  256 aside). Everything else (a wait, a timeout, other arguments, a failure, a misuse, a value
  a record cannot hold) writes the op tuple, as does the pure-Python twin throughout.
* Misuse. Releasing a BoundedSemaphore past its initial value raises the original's ValueError
  and is recorded as ``misuse`` (``over_release``); ``release(0)`` raises its own ValueError
  (an argument error, not recorded).
* Twins. The multiprocessing semaphores (`tracedsync._multiprocessing.semaphore`) keep the same
  books and record the same events with the functions below: `_acquire_blocked`, `_booked`,
  `_refused`, `_released` and `_sem_stats`. Each twin makes its own calls to the real
  semaphore (their signatures differ) and passes what else differs: how the permits left are
  read (``permits``), and whether an exception from a blocked acquire is recorded as an
  interruption (``plain``: threading's only with a timeout it accepts, see `plain_timeout`;
  multiprocessing's always).
"""

from __future__ import annotations

import sys
import weakref
from collections.abc import Callable
from types import MethodType
from typing import Any

from .._core import runtime as rt
from .._core.native import NATIVE
from .._core.native_kinds import K_SEM_ACQUIRE, K_SEM_RELEASE
from .._core.ops import OP_GENERIC, OP_MISUSE, OP_SEM_ACQUIRE, OP_SEM_RELEASE
from .._core.registry import new_state
from .._core.sites import user_site
from .._core.state import SemaphoreState
from .._core.waits import forget, wait_sem
from . import originals as _originals
from .common import OriginalSubclass, install_methods, new_books, plain_timeout, untraced

_getframe = sys._getframe
FULL = rt.FULL
_rec = None if NATIVE is None else NATIVE.rec

# The real classes, captured before anyone can patch them.
RawSemaphore = _originals.RawSemaphore
RawBoundedSemaphore = _originals.RawBoundedSemaphore
_raw_acquire = RawSemaphore.acquire

Permits = Callable[[SemaphoreState], int | None]
"""How a twin reads the permits left in the real semaphore (a snapshot, for events)."""


def _permits(st: SemaphoreState) -> int:
    return st.raw._value  # type: ignore[no-any-return]


def _max_permits(st: SemaphoreState) -> int:
    return st.raw._initial_value  # type: ignore[no-any-return]


class TracedSemaphore(OriginalSubclass, RawSemaphore):
    """A traced ``threading.Semaphore``: same behaviour, plus who waited and who holds permits."""

    _ts_kind = "Semaphore"
    _ts_raw: Any = RawSemaphore
    _ts_state: SemaphoreState

    def __init__(
        self,
        value: int = 1,
        *,
        name: str | None = None,
        _site: tuple[Any, int] | None = None,
    ) -> None:
        untraced(self._ts_raw.__init__, self, value)  # its errors are the original's
        code, lineno = _site if _site is not None else user_site()
        st = new_state(SemaphoreState, weakref.proxy(self), self._ts_kind, name, code, lineno,
                       {"value": value})
        st.acquire = st.release = None  # the real ones are threading's methods of this object
        new_books(st)
        st.extra_stats = _extra_stats
        self._ts_state = st


class TracedBoundedSemaphore(TracedSemaphore, RawBoundedSemaphore):
    """A traced ``threading.BoundedSemaphore``; an over-release is also recorded as misuse."""

    _ts_kind = "BoundedSemaphore"
    _ts_raw: Any = RawBoundedSemaphore


# -- the recording methods (on the classes while the level is not off) --------------------------
def _acquire(self: TracedSemaphore, blocking: bool = True, timeout: float | None = None) -> bool:
    """Acquire a permit, exactly as ``threading``'s does, and record it."""
    st = self._ts_state
    level = rt.level
    if (timeout is None and (blocking is True or blocking is False) and level
            and _raw_acquire(self, False)):
        # Uncontended: the books and one record, inline (see _booked for the general case).
        try:
            me = rt.tls.ident
        except AttributeError:
            me = rt.register_thread()
        held = st.held
        books = st.books
        books.acquire()
        try:
            mine = held.get(me, 0) + 1
            held[me] = mine
            st.acquisitions += 1
        finally:
            books.release()
        if level == FULL:
            if _rec is not None:
                try:  # bits: ok, blocking; w0 wait 0, w1 permits, w2 held
                    _rec(K_SEM_ACQUIRE, st.prim_pid, st.prim_n, 5 if blocking else 1, 0,
                         self._value, mine, 0)
                    return True
                except (TypeError, OverflowError):  # a value no record holds (float, huge)
                    pass
            f = _getframe(1)
            rt.emit((OP_SEM_ACQUIRE, rt.now(), me, st.prim, True, False, 0, self._value, mine,
                     blocking, None, f.f_code, f.f_lineno))
        return True
    if not level:
        return _raw_acquire(self, blocking, timeout)
    if timeout is None:
        if blocking is False:  # acquire(False) found no permit
            return _booked(st, False, True, 0, False, None, 2, None, _permits)
        if blocking is True:  # acquire() found no permit: it blocks
            return _acquire_blocked(st, MethodType(_raw_acquire, self), True, None, True, 2,
                                    _permits)
    return _acquire_slow(self, st, blocking, timeout)


def _acquire_slow(self: TracedSemaphore, st: SemaphoreState, blocking: Any, timeout: Any) -> bool:
    """An acquire with other arguments than ``()`` or ``(False)``."""
    # (frames: the caller <- _acquire <- here <- ...)
    if not blocking or (plain_timeout(timeout) and timeout is not None and timeout <= 0):
        # A try never waits (timeout <= 0 is one): never in the wait-for graph.
        ok = _raw_acquire(self, blocking, timeout)  # the real one validates and answers
        return _booked(st, ok, not ok, 0, blocking, timeout, 3, None, _permits)
    if _raw_acquire(self, False):  # (never raises, whatever the timeout)
        return _booked(st, True, False, 0, blocking, timeout, 3, None, _permits)
    return _acquire_blocked(st, MethodType(_raw_acquire, self), blocking, timeout,
                            plain_timeout(timeout), 3, _permits)


def _acquire_blocked(st: SemaphoreState, acquire: Callable[[Any, Any], bool], blocking: Any,
                     timeout: Any, plain: bool, fdepth: int, permits: Permits) -> bool:
    """A blocking acquire that found no permit: the real ``acquire(blocking, timeout)``, in the
    wait-for graph meanwhile, timed, booked and recorded. ``plain``: the timeout is registered,
    and an exception from the call is an interruption (recorded), not an argument error. Both
    twins. ``fdepth``: how far the caller's frame is from here."""
    t0 = rt.now()
    me = rt.ident()
    try:
        # Runtime detection (_detect.py): in the wait-for graph while blocked (owners: the
        # permit holders); raises DeadlockError, unregistered, with on_deadlock="raise".
        wait_sem(me, st, timeout if plain else None, _getframe(fdepth))
        got: bool | None = None  # how the wait ended, for a reported deadlock (deadlock_end)
        try:
            ok = got = acquire(blocking, timeout)
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
        left = permits(st)
        if (_rec is not None and ok and not contended and timeout is None
                and type(left) is int and (blocking is True or blocking is False)):
            try:  # (a multiprocessing acquire: the twin's uncontended path)
                _rec(K_SEM_ACQUIRE, st.prim_pid, st.prim_n, 5 if blocking else 1, 0, left,
                     mine, 0)
                return ok
            except OverflowError:
                pass
        f = _getframe(fdepth)
        rt.emit((OP_SEM_ACQUIRE, rt.now() if t is None else t, me, st.prim, bool(ok), contended,
                 wait, left, mine, bool(blocking), timeout, f.f_code, f.f_lineno))
    return ok


def _make_release(raw_release: Callable[[Any, int], None]) -> tuple[Any, Any]:
    """``release`` and ``__exit__`` over ``threading``'s ``raw_release`` (a Semaphore's or a
    BoundedSemaphore's)."""

    def release(self: TracedSemaphore, n: int = 1) -> None:
        """Release ``n`` permits, exactly as ``threading``'s does, and record it."""
        level = rt.level
        if not level:
            return raw_release(self, n)
        st = self._ts_state
        try:
            raw_release(self, n)
        except ValueError as exc:
            _refused(st, n, exc, 2)  # _refused <- release <- the caller
            raise
        if type(n) is not int or n != 1:
            return _released(st, n, 2, _permits)
        # One permit (the common path, as in exit_ below): the books and one record.
        try:
            me = rt.tls.ident
        except AttributeError:
            me = rt.register_thread()
        held = st.held
        others = 0
        books = st.books
        books.acquire()
        try:
            mine = held.get(me, 0) - 1
            if mine > 0:
                held[me] = mine
            elif mine == 0:
                del held[me]
            else:
                others = _take_from_others(held, me, 1)
                mine = 0
            st.releases += 1
        finally:
            books.release()
        if level == FULL:
            if _rec is not None:
                try:  # w0 n, w1 permits, w2 held, w3 for_others
                    _rec(K_SEM_RELEASE, st.prim_pid, st.prim_n, 0, 1, self._value, mine, others)
                    return None
                except (TypeError, OverflowError):  # a value no record holds (float, huge)
                    pass
            f = _getframe(1)
            rt.emit((OP_SEM_RELEASE, rt.now(), me, st.prim, 1, self._value, mine, others,
                     f.f_code, f.f_lineno))
        return None

    def exit_(self: TracedSemaphore, *exc_info: object) -> None:
        level = rt.level
        if not level:
            return raw_release(self, 1)
        st = self._ts_state
        try:
            raw_release(self, 1)
        except ValueError as exc:
            _refused(st, 1, exc, 2)
            raise
        try:
            me = rt.tls.ident
        except AttributeError:
            me = rt.register_thread()
        held = st.held
        others = 0
        books = st.books
        books.acquire()
        try:
            mine = held.get(me, 0) - 1
            if mine > 0:
                held[me] = mine
            elif mine == 0:
                del held[me]
            else:
                others = _take_from_others(held, me, 1)
                mine = 0
            st.releases += 1
        finally:
            books.release()
        if level == FULL:
            if _rec is not None:
                try:
                    _rec(K_SEM_RELEASE, st.prim_pid, st.prim_n, 0, 1, self._value, mine, others)
                    return None
                except (TypeError, OverflowError):
                    pass
            f = _getframe(1)
            rt.emit((OP_SEM_RELEASE, rt.now(), me, st.prim, 1, self._value, mine, others,
                     f.f_code, f.f_lineno))
        return None

    return release, exit_


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
        left = permits(st)
        if _rec is not None and type(n) is int and type(left) is int:
            try:
                _rec(K_SEM_RELEASE, st.prim_pid, st.prim_n, 0, n, left, mine, others)
                return
            except OverflowError:
                pass
        f = _getframe(fdepth)
        rt.emit((OP_SEM_RELEASE, rt.now(), me, st.prim, n, left, mine, others,
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


_release, _exit = _make_release(RawSemaphore.release)
_bounded_release, _bounded_exit = _make_release(RawBoundedSemaphore.release)
_TRACING: dict[type, dict[str, Any]] = {
    TracedSemaphore: {"acquire": _acquire, "__enter__": _acquire, "release": _release,
                      "__exit__": _exit},
    TracedBoundedSemaphore: {"release": _bounded_release, "__exit__": _bounded_exit},
}


def set_tracing(on: bool) -> None:
    """Put the recording methods on the traced semaphores (or take them off: level ``off``)."""
    install_methods(_TRACING, on)


set_tracing(rt.level != rt.OFF)  # (imported when first used: at the level of that moment)


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
