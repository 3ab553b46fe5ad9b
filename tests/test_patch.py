"""patch()/unpatch()/patched(): exact undo, idempotence, selection, creation-site scoping, the
multiprocessing extension point, and the standard library still working under the patch."""

from __future__ import annotations

import concurrent.futures
import inspect
import logging
import multiprocessing
import multiprocessing.context
import os
import pickle
import queue
import subprocess
import sys
import textwrap
import threading
import types
import warnings
from typing import Any

import pytest

import tracedsync
from tracedsync._core import runtime as _runtime
from tracedsync._patch import patcher as _patch
from tracedsync._patch.scope import DEFAULT_EXCLUDED, Scope, layout, matches, split_patterns
from tracedsync._patch.shims import hook_of
from tracedsync.testing import capture

KINDS = ("Lock", "RLock", "Condition", "Semaphore", "BoundedSemaphore", "Event", "Barrier")
ORIGINALS = {k: getattr(threading, k) for k in KINDS}
RawEvent = threading.Event
RawBarrier = threading.Barrier
TIMEOUT = 30


def _created(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in events if e["event"] == "created"]


def _traced(obj: Any) -> bool:
    return "Traced" in type(obj).__name__


def _make_all() -> dict[str, Any]:
    """One of each primitive, created here (a user module)."""
    return {
        "Lock": threading.Lock(),
        "RLock": threading.RLock(),
        "Condition": threading.Condition(),
        "Semaphore": threading.Semaphore(2),
        "BoundedSemaphore": threading.BoundedSemaphore(3),
        "Event": threading.Event(),
        "Barrier": threading.Barrier(2),
    }


@pytest.fixture
def no_mp(monkeypatch: pytest.MonkeyPatch) -> None:
    """Run the test as if ``tracedsync._multiprocessing.factories`` did not exist."""
    monkeypatch.setitem(sys.modules, "tracedsync._multiprocessing.factories", None)


# -- the table: replace, undo exactly ------------------------------------------------------------
def test_patch_replaces_every_threading_factory_and_unpatch_restores_them(no_mp: None) -> None:
    """After patch() every factory is a shim; after unpatch() each is the very original object."""
    names = tracedsync.patch()
    try:
        assert set(names) == {f"threading.{k}" for k in KINDS}
        for k in KINDS:
            assert getattr(threading, k) is not ORIGINALS[k]
            assert hook_of(getattr(threading, k)) is not None
    finally:
        tracedsync.unpatch()
    for k in KINDS:
        assert getattr(threading, k) is ORIGINALS[k]
    assert not _patch.is_patched()


def test_unpatch_without_patch_does_nothing() -> None:
    """unpatch() when nothing is patched changes nothing and raises nothing."""
    tracedsync.unpatch()
    tracedsync.unpatch()
    assert all(getattr(threading, k) is ORIGINALS[k] for k in KINDS)


def test_patch_is_idempotent(no_mp: None) -> None:
    """Patching twice with the same request keeps the same shims: one unpatch() undoes it."""
    tracedsync.patch()
    first = {k: getattr(threading, k) for k in KINDS}
    try:
        tracedsync.patch()
        assert {k: getattr(threading, k) for k in KINDS} == first
        assert all(getattr(threading, k) is first[k] for k in KINDS)
    finally:
        tracedsync.unpatch()
    assert all(getattr(threading, k) is ORIGINALS[k] for k in KINDS)


def test_a_different_request_replaces_the_patch_in_force(no_mp: None) -> None:
    """patch(primitives=["Lock"]) then patch(primitives=["Event"]): only Event stays patched."""
    try:
        assert tracedsync.patch(primitives=["Lock"]) == ("threading.Lock",)
        assert threading.Lock is not ORIGINALS["Lock"]
        assert tracedsync.patch(primitives=["threading.Event"]) == ("threading.Event",)
        assert threading.Lock is ORIGINALS["Lock"]
        assert threading.Event is not ORIGINALS["Event"]
        assert threading.RLock is ORIGINALS["RLock"]
    finally:
        tracedsync.unpatch()


def test_selective_patch_leaves_the_others_alone(no_mp: None) -> None:
    """primitives= chooses what is patched; the rest stay the originals and stay untraced."""
    with tracedsync.patched(primitives=["Lock", "RLock"]):
        assert threading.Condition is ORIGINALS["Condition"]
        assert _traced(threading.Lock()) and _traced(threading.RLock())
        assert not _traced(threading.Semaphore())


def test_unknown_primitive_is_an_error() -> None:
    """A misspelt primitive raises ValueError and patches nothing."""
    with pytest.raises(ValueError, match="Lokc"):
        tracedsync.patch(primitives=["Lokc"])
    assert not _patch.is_patched()


def test_patched_restores_the_state_before_it(no_mp: None) -> None:
    """patched() nests: the inner block's exit restores the outer patch, the outer's none."""
    with tracedsync.patched(primitives=["Lock"]):
        outer = threading.Lock
        with tracedsync.patched(primitives=["Event"]) as names:
            assert names == ("threading.Event",)
            assert threading.Lock is ORIGINALS["Lock"]
        assert threading.Event is ORIGINALS["Event"]
        assert hook_of(threading.Lock) is not None and threading.Lock is not outer
        assert _traced(threading.Lock())
    assert threading.Lock is ORIGINALS["Lock"]


def test_patched_restores_settings_it_changed(no_mp: None, level: None) -> None:
    """Settings passed to patched() hold inside the block only."""
    before = tracedsync.settings().level
    with tracedsync.patched(level="contention"):
        assert tracedsync.settings().level == "contention"
    assert tracedsync.settings().level == before


def test_patched_restores_even_when_the_block_raises(no_mp: None) -> None:
    """An exception in the block still unpatches."""
    with pytest.raises(KeyError), tracedsync.patched():
        raise KeyError("boom")
    assert threading.Lock is ORIGINALS["Lock"]


def test_a_shim_kept_after_unpatch_returns_raw_primitives(no_mp: None) -> None:
    """``from threading import Lock`` while patched keeps a shim: after unpatch it is a
    pass-through to the original."""
    with tracedsync.patched():
        kept_lock = threading.Lock
        kept_event = threading.Event
        assert _traced(kept_lock())
    lock = kept_lock()
    event = kept_event()
    assert not _traced(lock) and not _traced(event)
    assert type(event) is RawEvent


def test_someone_elses_replacement_is_left_in_place_with_a_warning(no_mp: None) -> None:
    """If another tool replaced our shim after patch(), unpatch() warns and keeps theirs."""
    def theirs() -> Any:
        return ORIGINALS["Lock"]()

    tracedsync.patch(primitives=["Lock"])
    try:
        threading.Lock = theirs  # type: ignore[assignment]
        with pytest.warns(RuntimeWarning, match="threading.Lock"):
            tracedsync.unpatch()
        assert threading.Lock is theirs  # type: ignore[comparison-overlap]
    finally:
        threading.Lock = ORIGINALS["Lock"]  # type: ignore[misc]


def test_concurrent_patch_unpatch_and_creation_end_consistent(no_mp: None) -> None:
    """Threads patching, unpatching and creating primitives at once never break anything; after
    a final unpatch() the originals are back."""
    start = RawBarrier(4, timeout=TIMEOUT)
    errors: list[BaseException] = []

    def toggler() -> None:
        try:
            start.wait()
            for _ in range(50):
                tracedsync.patch()
                tracedsync.unpatch()
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    def creator() -> None:
        try:
            start.wait()
            for _ in range(200):
                for k in KINDS:
                    obj = getattr(threading, k)(1) if k == "Barrier" else getattr(threading, k)()
                    assert obj is not None
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=f) for f in (toggler, toggler, creator, creator)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(TIMEOUT)
    tracedsync.unpatch()
    assert not errors
    assert all(getattr(threading, k) is ORIGINALS[k] for k in KINDS)


# -- the shims look like the originals -----------------------------------------------------------
def test_shims_keep_names_signatures_and_isinstance(no_mp: None) -> None:
    """Names, module, signature and isinstance() answer as for the originals, raw or traced."""
    with tracedsync.patched():
        for k in ("Condition", "Semaphore", "BoundedSemaphore", "Event", "Barrier", "RLock"):
            shim, orig = getattr(threading, k), ORIGINALS[k]
            assert shim.__name__ == orig.__name__ and shim.__module__ == orig.__module__
            assert inspect.signature(shim) == inspect.signature(orig)
        assert isinstance(threading.Event(), threading.Event)
        assert isinstance(RawEvent(), threading.Event)
        assert isinstance(threading.BoundedSemaphore(), threading.Semaphore)
        assert issubclass(threading.BoundedSemaphore, threading.Semaphore)
        assert repr(threading.Event) == repr(RawEvent)
        if isinstance(ORIGINALS["Lock"], type):  # 3.13: threading.Lock is a class
            assert isinstance(threading.Lock(), threading.Lock)


def test_subclass_defined_while_patched_is_an_ordinary_subclass(no_mp: None) -> None:
    """``class Gate(threading.Event)`` while patched works, is untraced, and outlives unpatch."""
    with tracedsync.patched():
        class Gate(threading.Event):
            def open(self) -> None:
                self.set()

        gate = Gate()
        gate.open()
        assert gate.is_set() and isinstance(gate, Gate) and isinstance(gate, threading.Event)
        assert not _traced(gate)
    again = Gate()
    assert not again.is_set() and isinstance(again, RawEvent)


def test_shims_pickle_as_the_attribute_they_replaced(no_mp: None) -> None:
    """A shim pickles by name (as multiprocessing pickles a manager's registry) and unpickles as
    whatever that name is then: the shim while patched, the original after unpatch()."""
    with tracedsync.patched():
        shim_lock, shim_event = threading.Lock, threading.Event
        assert pickle.loads(pickle.dumps(shim_lock)) is shim_lock
        assert pickle.loads(pickle.dumps(shim_event)) is shim_event
        data = pickle.dumps((shim_lock, shim_event))
    assert pickle.loads(data) == (ORIGINALS["Lock"], ORIGINALS["Event"])
    assert pickle.loads(pickle.dumps(shim_lock)) is ORIGINALS["Lock"]


def test_patch_applies_recorder_settings(no_mp: None, level: None) -> None:
    """Keywords other than patch's own are configure() settings."""
    with tracedsync.patched(level="contention"):
        assert tracedsync.settings().level == "contention"
    tracedsync.patch(level="full", primitives=["Lock"])
    tracedsync.unpatch()
    assert tracedsync.settings().level == "full"


def test_argument_errors_are_the_originals(no_mp: None) -> None:
    """Bad arguments raise what threading raises."""
    with tracedsync.patched():
        with pytest.raises(ValueError):
            threading.Semaphore(-1)
        with pytest.raises(TypeError):
            threading.Lock(1)  # type: ignore[call-arg]
        with pytest.raises(TypeError):
            threading.Event(1)  # type: ignore[call-arg]


# -- scope: who gets traced primitives -----------------------------------------------------------
def test_user_code_gets_traced_primitives_named_at_their_line(no_mp: None) -> None:
    """Every kind created in a user module is traced, and `created` names the creating line."""
    lines, first = inspect.getsourcelines(_make_all)
    with tracedsync.patched(), capture() as events:
        made = _make_all()
    assert all(_traced(v) for v in made.values()), made
    created = _created(events)
    assert {e["kind"] for e in created} == set(KINDS)
    for e in created:
        path, line = e["site"].rsplit(":", 1)
        assert path == __file__ and first < int(line) < first + len(lines), e
        assert e["func"].endswith("_make_all")


def test_standard_library_internals_stay_untraced(no_mp: None) -> None:
    """queue, Thread, Timer, logging and concurrent.futures create raw primitives under the
    patch, and record nothing."""
    with tracedsync.patched(), capture() as events:
        q: queue.Queue[int] = queue.Queue()
        q.put(1)
        assert q.get(timeout=TIMEOUT) == 1
        t = threading.Thread(target=lambda: None)
        t.start()
        t.join(TIMEOUT)
        handler = logging.StreamHandler()
        with concurrent.futures.ThreadPoolExecutor(2) as ex:
            assert list(ex.map(abs, [-1, -2])) == [1, 2]
        timer = threading.Timer(TIMEOUT, lambda: None)
        timer.cancel()
    assert not _traced(q.mutex) and not _traced(q.not_empty)
    assert not _traced(handler.lock) and not _traced(timer.finished)
    assert not _created(events)


def test_include_opts_a_stdlib_module_in_and_it_still_works(no_mp: None) -> None:
    """include=["queue"]: Queue's lock and conditions are traced, and put/get/join/task_done with
    timeouts behave (Condition uses the lock's _is_owned and _release_save)."""
    with tracedsync.patched(include=["queue"]), capture() as events:
        q: queue.Queue[int] = queue.Queue(maxsize=1)
        done = RawEvent()

        def consumer() -> None:
            for _ in range(3):
                q.get(timeout=TIMEOUT)
                q.task_done()
            done.set()

        t = threading.Thread(target=consumer)
        t.start()
        for i in range(3):
            q.put(i, timeout=TIMEOUT)
        q.join()
        assert done.wait(TIMEOUT)
        t.join(TIMEOUT)
        with pytest.raises(queue.Empty):
            q.get(timeout=0.01)
    assert _traced(q.mutex) and _traced(q.not_empty) and _traced(q.all_tasks_done)
    sites = {e["site"].rsplit(":", 1)[0] for e in _created(events)}
    assert queue.__file__ in sites
    assert any(e["event"] == "cond_wait" for e in events)


def test_exclude_keeps_user_modules_out(no_mp: None) -> None:
    """exclude= by module name wins over the default: this module's primitives stay raw."""
    with tracedsync.patched(exclude=[__name__]):
        assert not _traced(threading.Lock())
    with tracedsync.patched(exclude=["nomatch", __name__.split(".")[0] + "*"]):
        assert not _traced(threading.RLock())


def test_include_and_exclude_come_from_the_environment(
    no_mp: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """TRACEDSYNC_INCLUDE / TRACEDSYNC_EXCLUDE are read when the keywords are not given."""
    monkeypatch.setenv("TRACEDSYNC_INCLUDE", " queue , logging")
    monkeypatch.setenv("TRACEDSYNC_EXCLUDE", __name__)
    with tracedsync.patched():
        assert _traced(queue.Queue().mutex)
        assert not _traced(threading.Lock())
    with tracedsync.patched(include=[], exclude=[]):
        assert not _traced(queue.Queue().mutex)
        assert _traced(threading.Lock())


def test_tracedsyncs_own_guard_gets_raw_primitives(no_mp: None) -> None:
    """While tracedsync's machinery runs (the guard is on), shims return the originals."""
    with tracedsync.patched():
        _runtime.guard.on = True
        try:
            lock, event = threading.Lock(), threading.Event()
        finally:
            _runtime.guard.on = False
    assert not _traced(lock) and type(event) is RawEvent


def test_scope_rules() -> None:
    """Scope.decide: tracedsync never, exclude, include, stdlib, dependencies, the rest."""
    stdlib_file = queue.__file__
    user_file = os.path.abspath("app/worker.py")
    dep = "structlog._output"
    assert "structlog" in DEFAULT_EXCLUDED
    s = Scope()
    assert s.decide("__main__", user_file)
    assert s.decide("app.worker", "<string>")
    assert not s.decide("queue", stdlib_file)
    assert not s.decide("importlib._bootstrap", "<frozen importlib._bootstrap>")
    assert not s.decide(dep, os.path.join(layout().sites[0], "structlog", "_output.py"))
    assert s.decide("requests.sessions",
                    os.path.join(layout().sites[0], "requests", "sessions.py"))
    assert not s.decide("tracedsync._record.recorder", tracedsync.__file__)
    scope = Scope(include=["tracedsync*"])
    assert not scope.decide("tracedsync._record.recorder", tracedsync.__file__)
    assert Scope(include=["queue"]).decide("queue", stdlib_file)
    assert Scope(include=["concurrent"]).decide("concurrent.futures.thread", stdlib_file)
    assert not Scope(include=["queue"], exclude=["queue"]).decide("queue", stdlib_file)
    assert not Scope(exclude=["app.*"]).decide("app.worker", user_file)
    assert Scope(exclude=["app.*"]).decide("application", user_file)


def test_pattern_helpers() -> None:
    """Comma-separated patterns split cleanly; a package pattern matches its submodules."""
    assert split_patterns(" a, b.*,,c ") == ("a", "b.*", "c")
    assert split_patterns(None) == ()
    assert matches("pkg.sub.mod", ["pkg"]) and matches("pkg", ["pkg"])
    assert not matches("pkgx", ["pkg"]) and matches("pkgx", ["pkg*"])


def test_scope_decides_once_per_code_object() -> None:
    """The decision is cached per code object: decide() runs once for repeated calls."""
    calls: list[str] = []

    class Counting(Scope):
        __slots__ = ()

        def decide(self, module: str, filename: str) -> bool:
            calls.append(module)
            return super().decide(module, filename)

    s = Counting()
    frame = sys._getframe()
    assert [s.traced(frame) for _ in range(5)] == [True] * 5
    assert calls == [__name__]


# -- the multiprocessing extension point ---------------------------------------------------------
_FAKE_MP_SOURCE = """
import multiprocessing

calls = []


def _factory(kind):
    def factory(*args, ctx=None, name=None, **kw):
        calls.append((kind, args, {"ctx": ctx, **kw}))
        real_ctx = ctx if ctx is not None else multiprocessing.get_context()
        return ("traced", getattr(real_ctx, kind)(*args, **kw))  # builds the real one

    factory.__name__ = kind
    return factory


for _kind in ("Lock", "RLock", "Condition", "Semaphore", "BoundedSemaphore", "Event", "Barrier",
              "Value", "Array"):
    globals()[_kind] = _factory(_kind)
"""


def _fake_mp() -> Any:
    """A stand-in for the factories module whose factories record their calls. Its code is compiled
    as a file of the tracedsync package, as the real module's is (so it is out of scope)."""
    module = types.ModuleType("tracedsync._multiprocessing.factories")
    path = os.path.join(os.path.dirname(tracedsync.__file__), "_mp_fake_for_tests.py")
    exec(compile(_FAKE_MP_SOURCE, path, "exec"), module.__dict__)
    return module


@pytest.fixture
def fake_mp(monkeypatch: pytest.MonkeyPatch) -> Any:
    """Install a fake ``tracedsync._multiprocessing.factories`` for the test."""
    fake = _fake_mp()
    monkeypatch.setitem(sys.modules, "tracedsync._multiprocessing.factories", fake)
    return fake


def test_multiprocessing_entries_follow_tracedsync_mp(fake_mp: Any) -> None:
    """With the factories module importable, module functions and BaseContext methods are shims that
    call it (ctx=None, or ctx=the context); its own calls back into the context are raw."""
    module_lock = multiprocessing.Lock
    method_value = vars(multiprocessing.context.BaseContext)["Value"]
    with tracedsync.patched() as names:
        assert "multiprocessing.Value" in names and "multiprocessing.Lock" in names
        tag, lock = multiprocessing.Lock()
        assert tag == "traced" and lock.acquire(False)
        spawn = multiprocessing.get_context("spawn")
        tag, value = spawn.Value("i", 7, lock=False)
        assert tag == "traced" and value.value == 7
    assert fake_mp.calls[0] == ("Lock", (), {"ctx": None})
    assert fake_mp.calls[1][0] == "Value" and fake_mp.calls[1][2]["ctx"] is spawn
    assert fake_mp.calls[1][1] == ("i", 7) and fake_mp.calls[1][2]["lock"] is False
    assert len(fake_mp.calls) == 2  # the factory's own ctx.Lock()/ctx.Value() were not shimmed
    assert multiprocessing.Lock is module_lock
    assert vars(multiprocessing.context.BaseContext)["Value"] is method_value


def test_multiprocessing_internals_get_the_originals(fake_mp: Any) -> None:
    """A multiprocessing.Queue made under the patch builds its own locks untraced."""
    with tracedsync.patched():
        q = multiprocessing.get_context("spawn").Queue()
        q.close()
        q.join_thread()
    assert fake_mp.calls == []


def test_multiprocessing_entries_are_skipped_without_tracedsync_mp(no_mp: None) -> None:
    """No tracedsync._multiprocessing.factories: multiprocessing is not touched, threading is."""
    module_lock = multiprocessing.Lock
    with tracedsync.patched() as names:
        assert not [n for n in names if n.startswith("multiprocessing.")]
        assert multiprocessing.Lock is module_lock
        assert "Lock" in vars(multiprocessing.context.BaseContext)


def test_a_broken_tracedsync_mp_is_reported_not_fatal(monkeypatch: pytest.MonkeyPatch) -> None:
    """An _mp that fails to import warns; threading is patched all the same."""
    def broken(name: str, *a: Any, **k: Any) -> Any:
        if name == "tracedsync._multiprocessing.factories":
            raise RuntimeError("half-written module")
        return real_import(name, *a, **k)

    import importlib

    real_import = importlib.import_module
    monkeypatch.delitem(sys.modules, "tracedsync._multiprocessing.factories", raising=False)
    monkeypatch.setattr(importlib, "import_module", broken)
    with pytest.warns(RuntimeWarning, match="half-written"), tracedsync.patched() as names:
        assert "threading.Lock" in names
        assert not [n for n in names if n.startswith("multiprocessing.")]


def test_only_the_factories_tracedsync_mp_defines_are_patched(
    fake_mp: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A factory missing from _mp leaves that multiprocessing name alone."""
    monkeypatch.delattr(fake_mp, "Barrier")
    barrier = multiprocessing.Barrier
    with tracedsync.patched() as names:
        assert "multiprocessing.Barrier" not in names and "multiprocessing.Event" in names
        assert multiprocessing.Barrier is barrier


# -- the standard library under the patch --------------------------------------------------------
def test_thread_pool_executor_timer_and_logging_work_when_included(no_mp: None) -> None:
    """ThreadPoolExecutor, Timer and logging work with their modules included and traced."""
    fired = RawEvent()
    with tracedsync.patched(include=["concurrent.futures*", "logging", "threading"]):
        with concurrent.futures.ThreadPoolExecutor(2) as ex:
            futures = [ex.submit(pow, 2, i) for i in range(8)]
            assert [f.result(TIMEOUT) for f in futures] == [2**i for i in range(8)]
            assert _traced(futures[0]._condition)
        timer = threading.Timer(0.0, fired.set)
        assert _traced(timer.finished)
        timer.start()
        assert fired.wait(TIMEOUT)
        timer.join(TIMEOUT)
        cancelled = threading.Timer(TIMEOUT, fired.clear)
        cancelled.start()
        cancelled.cancel()
        cancelled.join(TIMEOUT)
        assert fired.is_set()
        logger = logging.getLogger("tracedsync.test.patch")
        handler = logging.StreamHandler()
        assert _traced(handler.lock)
        logger.addHandler(handler)
        try:
            with warnings.catch_warnings():
                logger.warning("traced logging works")
        finally:
            logger.removeHandler(handler)


def _run_snippet(
    tmp_path: Any, code: str, timeout: float = TIMEOUT
) -> subprocess.CompletedProcess[str]:
    """Run ``code`` as a script in a fresh interpreter (fork is unsafe in the multi-threaded
    test process; spawn children need a main module they can import)."""
    script = tmp_path / "snippet.py"
    script.write_text(textwrap.dedent(code), encoding="utf-8")
    env = dict(os.environ)
    env.pop("TRACEDSYNC_PATCH", None)
    env["TRACEDSYNC_LOG_DIR"] = str(tmp_path / "logs")
    proc = subprocess.run(
        [sys.executable, str(script)],
        capture_output=True, text=True, timeout=timeout, env=env, cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    return proc


def test_multiprocessing_pools_and_managers_work_under_the_patch(tmp_path: Any) -> None:
    """Pools (fork, spawn, forkserver), a manager's Lock/dict/Queue and ProcessPoolExecutor."""
    proc = _run_snippet(tmp_path, """
        import concurrent.futures, multiprocessing as mp, threading, tracedsync
        tracedsync.patch()
        lock = threading.Lock()
        def square(x):
            with threading.Lock():
                return x * x
        if __name__ == "__main__":
            assert isinstance(lock, tracedsync.TracedLock)
            for method in ("fork", "spawn", "forkserver"):
                ctx = mp.get_context(method)
                with ctx.Pool(2) as pool:
                    assert pool.map(square, range(5)) == [0, 1, 4, 9, 16]
                with ctx.Manager() as m:
                    ml, d, q = m.Lock(), m.dict(), m.Queue()
                    with ml:
                        d["k"] = 1
                    q.put(3)
                    assert q.get(timeout=30) == 3 and d["k"] == 1
                with concurrent.futures.ProcessPoolExecutor(2, mp_context=ctx) as ex:
                    assert list(ex.map(square, range(4))) == [0, 1, 4, 9]
            tracedsync.unpatch()
            print("ok")
    """, timeout=120)
    assert proc.stdout.strip().endswith("ok")


def test_private_lock_methods_work_when_stdlib_modules_are_included(tmp_path: Any) -> None:
    """With threading, queue, logging and concurrent.futures included (so their locks are
    traced), fork runs their _at_fork_reinit hooks, and conditions use _is_owned and
    _release_save, without error in parent or child."""
    proc = _run_snippet(tmp_path, """
        import os, sys, tracedsync
        tracedsync.patch(include=["threading", "queue", "logging", "concurrent.futures*"])
        import concurrent.futures.thread, logging, queue, threading
        assert isinstance(concurrent.futures.thread._global_shutdown_lock, tracedsync.TracedLock)
        handler = logging.StreamHandler(sys.stdout)
        logging.getLogger("t").addHandler(handler)
        assert isinstance(handler.lock, tracedsync.TracedRLock)
        q = queue.Queue()
        t = threading.Thread(target=lambda: q.put(q.get(timeout=30) + 1))
        t.start()
        q.put(1)
        t.join(30)
        assert q.get(timeout=30) == 2
        with concurrent.futures.ThreadPoolExecutor(1) as ex:
            assert ex.submit(abs, -3).result(30) == 3
        pid = os.fork()
        if pid == 0:
            try:
                logging.getLogger("t").warning("child logs")
                q.put(5); assert q.get(timeout=30) == 5
                th = threading.Thread(target=lambda: None); th.start(); th.join(30)
                with concurrent.futures.ThreadPoolExecutor(1) as ex:
                    assert ex.submit(abs, -4).result(30) == 4
            except BaseException:
                import traceback; traceback.print_exc(); os._exit(1)
            os._exit(0)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0, status
        logging.getLogger("t").warning("parent logs")
        tracedsync.unpatch()
        print("ok")
    """)
    assert "child logs" in proc.stdout and "parent logs" in proc.stdout


def test_daemon_threads_at_interpreter_exit_under_the_patch(tmp_path: Any) -> None:
    """A daemon thread still using a traced lock when the interpreter exits: clean exit 0."""
    proc = _run_snippet(tmp_path, """
        import threading, tracedsync
        tracedsync.patch()
        lock = threading.Lock()
        running = threading.Event()
        def spin():
            while True:
                with lock:
                    running.set()
        threading.Thread(target=spin, daemon=True).start()
        assert running.wait(30)
        print("main done")
    """)
    assert proc.stdout.strip() == "main done"
    assert "Traceback" not in proc.stderr


def test_threads_and_queues_keep_working_under_the_patch(no_mp: None) -> None:
    """A small producer/consumer through queue.Queue with traced user locks around it."""
    with tracedsync.patched():
        lock = threading.Lock()
        q: queue.Queue[int | None] = queue.Queue()
        total: list[int] = []

        def consume() -> None:
            while (item := q.get(timeout=TIMEOUT)) is not None:
                with lock:
                    total.append(item)

        workers = [threading.Thread(target=consume) for _ in range(2)]
        for w in workers:
            w.start()
        for i in range(100):
            q.put(i)
        for _ in workers:
            q.put(None)
        for w in workers:
            w.join(TIMEOUT)
    assert sorted(total) == list(range(100))
    assert lock.statistics().acquisitions == 100


def _real_mp_available() -> bool:
    try:
        import tracedsync._multiprocessing.factories  # noqa: F401
    except ImportError:
        return False
    return True


needs_real_mp = pytest.mark.skipif(not _real_mp_available(), reason="no multiprocessing factories")


@needs_real_mp
def test_real_multiprocessing_primitives_are_traced_at_the_users_line() -> None:
    """With the real the factories module: module functions and context methods give traced objects
    created at the caller's line; multiprocessing's own Queue keeps raw locks."""
    with tracedsync.patched(primitives=["multiprocessing.Value", "multiprocessing.Lock"]):
        with capture() as events:
            line = sys._getframe().f_lineno + 1
            value = multiprocessing.Value("i", 0)
            lock = multiprocessing.get_context("spawn").Lock()
        q = multiprocessing.Queue()
        q.close()
        q.join_thread()
    # (the traced classes bear multiprocessing's __name__; their __qualname__ is their own)
    assert type(value).__qualname__.startswith("Traced")
    assert type(lock).__qualname__.startswith("Traced")
    assert not type(q._rlock).__qualname__.startswith("Traced")  # type: ignore[attr-defined]
    sites = {e["kind"]: e["site"] for e in _created(events) if e["kind"] in ("Value", "Lock")}
    assert sites["Value"] == f"{__file__}:{line}" and sites["Lock"] == f"{__file__}:{line + 1}"
