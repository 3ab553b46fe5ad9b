"""``import tracedsync`` is cheap (issue 13: at most 50 ms above ``import threading``): it imports
neither structlog nor rich nor asyncio (wrapt imports asyncio), nor the analysis, nor
multiprocessing; each is imported when something needs it. benchmarks/bench_import.py measures
the time; this checks what is imported, which does not depend on the machine's load."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from helpers import clean_env

HEAVY = ("structlog", "rich", "asyncio", "wrapt", "multiprocessing", "tracedsync.analysis",
         "tracedsync.mp", "tracedsync._patch.patcher", "socket", "tempfile")
ROOT = Path(__file__).resolve().parent.parent

NATIVE_BUILT = importlib.util.find_spec("tracedsync._core._native") is not None
"""Whether the native recorder is there (whatever TRACEDSYNC_PURE_PYTHON says in this process):
only with it do the locks need no wrapt."""


def _loaded_after(code: str, tmp_path: Path, pure: bool = False, **env: str) -> dict[str, Any]:
    """Run ``code`` in a fresh interpreter; which of `HEAVY` it left imported, and its output."""
    script = textwrap.dedent(code) + textwrap.dedent(f"""
        import json as _json, sys as _sys
        print(_json.dumps([m for m in {HEAVY!r} if m in _sys.modules]))
    """)
    extra = {"TRACEDSYNC_LOG_DIR": str(tmp_path), **env}
    if pure:
        extra["TRACEDSYNC_PURE_PYTHON"] = "1"
    proc = subprocess.run([sys.executable, "-c", script], env=clean_env(**extra),
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    *out, loaded = proc.stdout.splitlines()
    return {"loaded": set(json.loads(loaded)), "out": out, "stderr": proc.stderr}


@pytest.mark.skipif(not NATIVE_BUILT, reason="the twin's locks are wrapt proxies")
def test_import_loads_none_of_the_heavy_modules(tmp_path: Path) -> None:
    """A fresh ``import tracedsync``; then a program that records and flushes with the default
    pipeline (a Lock, an RLock, a Condition): still none of them."""
    assert _loaded_after("import tracedsync", tmp_path)["loaded"] == set()
    run = _loaded_after("""
        import tracedsync
        lock, cond = tracedsync.RLock(), tracedsync.Condition()
        with lock, tracedsync.Lock():
            pass
        with cond:
            cond.notify()
        tracedsync.flush()
    """, tmp_path)
    assert run["loaded"] == set()
    assert list(tmp_path.glob("tracedsync-*.jsonl"))


def test_the_twin_does_not_load_structlog_or_rich(tmp_path: Path) -> None:
    """The pure-Python twin's locks are wrapt proxies (and wrapt imports asyncio), but structlog,
    rich and the analysis stay out."""
    loaded = _loaded_after("import tracedsync", tmp_path, pure=True)["loaded"]
    assert not loaded & {"structlog", "rich", "tracedsync.analysis", "multiprocessing"}


def test_lazy_names_load_on_first_use(tmp_path: Path) -> None:
    """The public names of the lazy parts work as before: attribute, ``from tracedsync import``,
    ``import *``, dir(); an unknown name is still an AttributeError."""
    run = _loaded_after("""
        import tracedsync
        names = dir(tracedsync)
        assert "Semaphore" in names and "Value" in names and "patch" in names
        sem = tracedsync.Semaphore(2, name="s")
        assert isinstance(sem, tracedsync.TracedSemaphore)
        from tracedsync import Barrier, Event
        assert Event().wait(0) is False and Barrier(1).wait() == 0
        v = tracedsync.Value("i", 3)
        assert v.value == 3 and tracedsync.mp.Value is tracedsync.Value
        namespace = {}
        exec("from tracedsync import *", namespace)
        assert set(tracedsync.__all__) <= set(namespace)
        try:
            tracedsync.Nope
        except AttributeError as exc:
            print(exc)
    """, tmp_path)
    assert run["out"] == ["module 'tracedsync' has no attribute 'Nope'"]
    assert {"multiprocessing", "tracedsync.mp"} <= run["loaded"]
    if NATIVE_BUILT:  # (the twin's locks are wrapt proxies)
        assert not run["loaded"] & {"wrapt", "asyncio"}


@pytest.mark.skipif(not NATIVE_BUILT, reason="the twin's locks are wrapt proxies")
def test_multiprocessing_primitives_import_no_wrapt(tmp_path: Path) -> None:
    """The traced multiprocessing primitives are multiprocessing's classes subclassed: making
    and using each of them (and a Value, an Array) imports neither wrapt nor asyncio, at any
    level."""
    run = _loaded_after("""
        import tracedsync, tracedsync.mp as mp
        for level in ("full", "off", "contention"):
            tracedsync.configure(level=level)
            v, a = tracedsync.Value("i", 0), tracedsync.Array("c", b"ab")
            with v.get_lock():
                v.value += 1
            a.value = b"x"
            lock, rlock, cond = mp.Lock(), mp.RLock(), mp.Condition()
            sem, bsem = mp.Semaphore(), mp.BoundedSemaphore()
            ev, barrier = mp.Event(), mp.Barrier(1)
            with lock, rlock, cond, sem, bsem:
                cond.notify()
            ev.set()
            assert ev.wait(0) and barrier.wait() == 0
        tracedsync.flush()
    """, tmp_path)
    assert {"multiprocessing", "tracedsync.mp"} <= run["loaded"]
    assert not run["loaded"] & {"wrapt", "asyncio", "structlog", "rich"}, run["stderr"]


def test_structlog_only_for_user_processors(tmp_path: Path) -> None:
    """A user processor is the structlog path: structlog is imported then, and it works."""
    run = _loaded_after("""
        import sys, tracedsync
        assert "structlog" not in sys.modules
        def tag(logger, method, ev):
            ev["tagged"] = True
            return ev
        tracedsync.configure(processors=[tag])
        with tracedsync.Lock():
            pass
        tracedsync.flush()
    """, tmp_path)
    assert "structlog" in run["loaded"]  # (which imports rich and asyncio itself)
    (log,) = tmp_path.glob("tracedsync-*.jsonl")
    assert all(json.loads(line)["tagged"] for line in log.read_text().splitlines())


def test_lazy_modules_imported_under_patch_trace_nothing_of_their_own(tmp_path: Path) -> None:
    """patch() of threading imports no wrapt, nor does the first traced Semaphore or Barrier
    (threading's classes subclassed): their modules are imported with the guard on, so the
    primitives those imports create are not traced, and they subclass threading's originals,
    not the shims, even though they are imported while threading is patched."""
    run = _loaded_after("""
        import threading, tracedsync
        tracedsync.patch(primitives=["threading.Semaphore", "threading.Barrier",
                                     "threading.RLock", "threading.Lock"])
        import sys
        print("wrapt" in sys.modules)
        sem = threading.Semaphore(2)
        barrier = threading.Barrier(1)
        print(type(sem).__name__, type(barrier).__name__, "wrapt" in sys.modules)
        from tracedsync._threading import originals, semaphore, barrier_books
        assert semaphore.RawSemaphore is originals.RawSemaphore is not threading.Semaphore
        assert barrier_books.raw_break is originals.RawBarrier.__dict__["_break"]
        barrier.wait()
        tracedsync.unpatch()
        tracedsync.flush()
    """, tmp_path, TRACEDSYNC_INCLUDE="*")
    assert run["out"] == ["False", "TracedSemaphore TracedBarrier False"], run["stderr"]
    (log,) = tmp_path.glob("tracedsync-*.jsonl")
    created = [json.loads(line) for line in log.read_text().splitlines()
               if '"event":"created"' in line]
    assert created and all(e["site"].startswith("<string>:") for e in created), created


def test_import_benchmark_reports_the_figure(tmp_path: Path) -> None:
    """benchmarks/bench_import.py runs and reports the figure above ``import threading``."""
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "bench_import.py"), "--runs", "1", "--json"],
        env=clean_env(), capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["above_threading_us"] == result["tracedsync_us"] - result["threading_us"]
    assert result["tracedsync_us"] > 0
