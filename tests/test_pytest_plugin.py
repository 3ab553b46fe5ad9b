"""The pytest plugin: off unless enabled (flag, ini, environment); when on, the session is traced
and summarised, and ``--tracedsync-fail-on`` turns findings into a failing exit status.

Each test runs pytest in a subprocess on a small test file, so that the patch, the settings and
the log directory of the inner session never touch this one."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from helpers import clean_env

from tracedsync import pytest_plugin

TIMEOUT = 120

INNER_TESTS = '''
import os, threading

def test_kind_of_lock():
    lock = threading.Lock()
    with lock:
        pass
    assert type(lock).__name__ == os.environ["EXPECT_LOCK"]
'''

INVERSION_TESTS = '''
import threading

def test_inversion():
    a, b = threading.Lock(), threading.Lock()
    def one():
        with a:
            with b:
                pass
    def two():
        with b:
            with a:
                pass
    for f in (one, two):
        t = threading.Thread(target=f)
        t.start()
        t.join(30)
'''

MISUSE_TESTS = '''
import threading

def test_release_unlocked_in_a_worker():
    t = threading.Thread(target=threading.Lock().release)  # raises in the worker, unseen
    t.start()
    t.join()
'''

PROVOKED_TESTS = '''
import pytest, threading

def test_release_unlocked():
    with pytest.raises(RuntimeError):
        threading.Lock().release()
'''

UNCONFIGURE_CONFTEST = '''
def pytest_unconfigure(config):
    from tracedsync._patch import patcher as _patch
    with open("patched-at-unconfigure.txt", "w") as fh:
        fh.write(str(_patch.is_patched()))
'''


def _env(**extra: str) -> dict[str, str]:
    return clean_env("PYTEST_ADDOPTS", **extra)


def inner_pytest(
    tmp_path: Path,
    *args: str,
    tests: str = INNER_TESTS,
    ini: str = "",
    conftest: str = "",
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run pytest on ``tests`` in ``tmp_path``, in a fresh interpreter."""
    (tmp_path / "pytest.ini").write_text("[pytest]\n" + ini, encoding="utf-8")
    (tmp_path / "test_inner.py").write_text(textwrap.dedent(tests), encoding="utf-8")
    if conftest:
        (tmp_path / "conftest.py").write_text(textwrap.dedent(conftest), encoding="utf-8")
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args],
        cwd=tmp_path, env=env if env is not None else _env(EXPECT_LOCK="TracedLock"),
        capture_output=True, text=True, timeout=TIMEOUT,
    )


def test_the_plugin_is_installed_and_idle_in_this_session(request: pytest.FixtureRequest) -> None:
    """Our own suite runs with the plugin installed and disabled: no session tracer."""
    pm = request.config.pluginmanager
    if pm.get_plugin("tracedsync") is None:
        pytest.skip("tracedsync is not installed with its pytest11 entry point")
    assert pm.get_plugin("tracedsync") is pytest_plugin
    assert pm.get_plugin("tracedsync-session") is None
    assert not pytest_plugin.enabled(request.config)


def test_disabled_by_default(tmp_path: Path) -> None:
    """Without the flag, ini option or environment variable: nothing is patched or printed."""
    proc = inner_pytest(tmp_path, conftest=UNCONFIGURE_CONFTEST,
                        env=_env(EXPECT_LOCK="lock", TRACEDSYNC_LOG_DIR=str(tmp_path / "logs")))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "= tracedsync =" not in proc.stdout and "tracedsync: " not in proc.stdout
    assert (tmp_path / "patched-at-unconfigure.txt").read_text() == "False"
    assert not (tmp_path / "tracedsync-logs").exists()


def test_disabled_plugin_writes_no_log_file(tmp_path: Path) -> None:
    """A pytest run with the plugin installed but disabled leaves no tracedsync logs behind."""
    proc = inner_pytest(tmp_path, env=_env(EXPECT_LOCK="lock"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert not (tmp_path / "tracedsync-logs").exists()


@pytest.mark.parametrize(
    ("args", "ini", "extra_env"),
    [
        (["--tracedsync"], "", {}),
        ([], "tracedsync = true\n", {}),
        ([], "", {"TRACEDSYNC_PYTEST": "1"}),
    ],
    ids=["flag", "ini", "env"],
)
def test_enabled_session_is_traced_and_summarised(
    tmp_path: Path, args: list[str], ini: str, extra_env: dict[str, str]
) -> None:
    """--tracedsync, ``tracedsync = true`` or TRACEDSYNC_PYTEST=1: the tests' locks are traced,
    the summary ends the terminal report, and the session ends unpatched."""
    proc = inner_pytest(tmp_path, *args, "--tracedsync-log-dir", "logs", ini=ini,
                        conftest=UNCONFIGURE_CONFTEST,
                        env=_env(EXPECT_LOCK="TracedLock", **extra_env))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "= tracedsync =" in proc.stdout
    assert "tracedsync: logs in logs;" in proc.stdout  # (relative: below the current directory)
    assert "test_inner.py:5" in proc.stdout  # the test's lock, by its creation line
    assert list((tmp_path / "logs").glob("tracedsync-*.jsonl"))
    assert (tmp_path / "patched-at-unconfigure.txt").read_text() == "False"


def test_default_log_dir_is_a_fresh_directory(tmp_path: Path) -> None:
    """Without --tracedsync-log-dir the logs go to a new ./tracedsync-logs/<timestamp>/."""
    proc = inner_pytest(tmp_path, "--tracedsync")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (log_dir,) = (tmp_path / "tracedsync-logs").iterdir()
    assert list(log_dir.glob("tracedsync-*.jsonl"))


def test_fail_on_order_fails_a_passing_run(tmp_path: Path) -> None:
    """A lock-order inversion with --tracedsync-fail-on=deadlock,order,rmw: exit status 1 although
    every test passed; the reason is printed."""
    proc = inner_pytest(tmp_path, "--tracedsync-fail-on=deadlock,order,rmw",
                        "--tracedsync-log-dir", "logs", tests=INVERSION_TESTS)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "1 passed" in proc.stdout
    assert "tracedsync: failing the run: 1 finding(s)" in proc.stdout
    assert "lock_order" in proc.stdout


def test_fail_on_other_kinds_lets_the_run_pass(tmp_path: Path) -> None:
    """The same inversion with --tracedsync-fail-on=deadlock: reported, but the run passes."""
    proc = inner_pytest(tmp_path, "--tracedsync", "--tracedsync-fail-on", "deadlock",
                        "--tracedsync-log-dir", "logs", tests=INVERSION_TESTS)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "lock_order" in proc.stdout and "failing the run" not in proc.stdout


def test_fail_on_a_severity(tmp_path: Path) -> None:
    """--tracedsync-fail-on=error fails on any error finding (here a misuse in a worker
    thread, whose exception does not fail the test), naming the test it happened in."""
    proc = inner_pytest(tmp_path, "--tracedsync-fail-on=error", "--tracedsync-log-dir", "logs",
                        tests=MISUSE_TESTS)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "error misuse:" in proc.stdout
    assert "[tests: test_inner.py::test_release_unlocked_in_a_worker]" in proc.stdout


def test_misuse_a_test_provokes_does_not_fail_the_run(tmp_path: Path) -> None:
    """The twin: the same misuse inside ``pytest.raises`` in the test's own thread, in a test
    that passed: provoked on purpose, an info; --tracedsync-fail-on=error passes."""
    proc = inner_pytest(tmp_path, "--tracedsync-fail-on=error", "--tracedsync-log-dir", "logs",
                        tests=PROVOKED_TESTS)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "provoked on purpose" in proc.stdout and "failing the run" not in proc.stdout


def test_a_baseline_lets_known_findings_pass(tmp_path: Path) -> None:
    """``tracedsync analyze --write-baseline`` of a run's logs, then --tracedsync-baseline: the
    same findings no longer fail the run."""
    from tracedsync.cli import main

    first = inner_pytest(tmp_path, "--tracedsync-fail-on=error", "--tracedsync-log-dir",
                         "logs", tests=MISUSE_TESTS)
    assert first.returncode == 1, first.stdout + first.stderr
    baseline = tmp_path / "baseline.json"
    assert main(["analyze", str(tmp_path / "logs"), "--write-baseline", str(baseline),
                 "-o", os.devnull]) == 1
    shutil.rmtree(tmp_path / "logs")
    again = inner_pytest(tmp_path, "--tracedsync-fail-on=error", "--tracedsync-log-dir", "logs",
                         "--tracedsync-baseline", str(baseline), tests=MISUSE_TESTS)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "suppressed" in again.stdout


def test_failing_tests_keep_their_exit_status(tmp_path: Path) -> None:
    """Findings do not change the status of a run that failed on its own."""
    tests = INVERSION_TESTS + "\n\ndef test_fails():\n    assert False\n"
    proc = inner_pytest(tmp_path, "--tracedsync-fail-on=order", "--tracedsync-log-dir", "logs",
                        tests=tests)
    assert proc.returncode == 1 and "1 failed, 1 passed" in proc.stdout


def test_unknown_fail_on_kind_is_a_usage_error(tmp_path: Path) -> None:
    """A misspelt kind stops pytest with a usage error (exit 4) naming it."""
    proc = inner_pytest(tmp_path, "--tracedsync-fail-on=deadlok")
    assert proc.returncode == 4
    assert "deadlok" in proc.stderr


def test_help_lists_the_options(tmp_path: Path) -> None:
    """pytest --help shows the plugin's options."""
    proc = inner_pytest(tmp_path, "--help")
    assert proc.returncode == 0
    assert "--tracedsync-fail-on" in proc.stdout and "--tracedsync-log-dir" in proc.stdout


RMW_TESTS = '''
import multiprocessing, threading

def test_bump():
    v = multiprocessing.Value("i", 0)
    halfway = threading.Barrier(2)

    def bump():
        for i in range(20):
            if i == 10:
                halfway.wait(30)  # the two threads' updates overlap in time
            v.value += 1

    ts = [threading.Thread(target=bump) for _ in range(2)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(30)
'''


def test_fail_on_rmw(tmp_path: Path) -> None:
    """``v.value += 1`` by two threads at once on a multiprocessing.Value, with
    --tracedsync-fail-on=rmw, fails the run."""
    pytest.importorskip("tracedsync._multiprocessing.factories")
    proc = inner_pytest(tmp_path, "--tracedsync-fail-on=rmw", "--tracedsync-log-dir", "logs",
                        tests=RMW_TESTS)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "error rmw:" in proc.stdout and "1 passed" in proc.stdout


# -- parity with `tracedsync run` ------------------------------------------------------------------
CONFTEST_PRIMITIVES = '''
import threading
from threading import RLock
import helper_mod
LOCK = threading.Lock()
with LOCK:
    pass

def make_rlock():
    return RLock()
'''

HELPER_MODULE = '''
import threading
HELPER_LOCK = threading.Lock()
'''

CONFTEST_TESTS = '''
def test_what_the_root_conftest_made_is_traced():
    import conftest, helper_mod
    assert type(conftest.LOCK).__name__ == "TracedLock"
    assert type(conftest.make_rlock()).__name__ == "TracedRLock"
    assert type(helper_mod.HELPER_LOCK).__name__ == "TracedLock"
'''


def test_the_root_conftest_and_what_it_imports_are_traced(tmp_path: Path) -> None:
    """The patch comes before the root conftest is imported: its module-level lock, a module
    it imports, and ``from threading import RLock`` done there are all traced (they were not:
    the patch came at session start, after the conftests)."""
    (tmp_path / "helper_mod.py").write_text(textwrap.dedent(HELPER_MODULE), encoding="utf-8")
    proc = inner_pytest(tmp_path, "--tracedsync", "--tracedsync-log-dir", "logs",
                        tests=CONFTEST_TESTS, conftest=CONFTEST_PRIMITIVES)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "conftest.py:5" in proc.stdout  # the conftest's lock, in the report
    assert "not traced" not in proc.stdout


CHILDREN_TESTS = '''
import multiprocessing, os, threading

def child(conn):
    conn.send((os.getpid(), type(threading.Lock()).__name__))
    conn.close()

def test_spawn_and_forkserver_children_are_traced():
    seen = {}
    for method in ("spawn", "forkserver"):
        ctx = multiprocessing.get_context(method)
        parent, child_end = ctx.Pipe(duplex=False)
        p = ctx.Process(target=child, args=(child_end,))
        p.start()
        assert parent.poll(60), method
        pid, kind = parent.recv()
        p.join(60)
        seen[method] = kind
        with open(f"child-{method}.pid", "w") as fh:
            fh.write(str(pid))
    assert seen == {"spawn": "TracedLock", "forkserver": "TracedLock"}
'''


def test_spawn_and_forkserver_children_are_traced(tmp_path: Path) -> None:
    """Children started by spawn and forkserver trace themselves into the session's log
    directory, as under ``tracedsync run`` (they were not traced at all)."""
    proc = inner_pytest(tmp_path, "--tracedsync", "--tracedsync-log-dir", "logs",
                        tests=CHILDREN_TESTS, conftest=UNCONFIGURE_CONFTEST + ENV_AT_UNCONFIGURE)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for method in ("spawn", "forkserver"):
        pid = (tmp_path / f"child-{method}.pid").read_text()
        assert (tmp_path / "logs" / f"tracedsync-{pid}.jsonl").exists(), method
    # The session's environment changes are undone by its end.
    assert (tmp_path / "env-at-unconfigure.txt").read_text() == "None False"


ENV_AT_UNCONFIGURE = '''

def pytest_unconfigure(config):
    import os
    pythonpath = os.environ.get("PYTHONPATH", "")
    with open("env-at-unconfigure.txt", "w") as fh:
        fh.write(f"{os.environ.get('TRACEDSYNC_PATCH')} {'boot' in pythonpath}")
'''

EARLY_PLUGIN = '''
import threading
from threading import RLock
EARLY = threading.Lock()
READY = threading.Event()

class Holder:
    lock = threading.Lock()
'''


def test_what_was_created_before_tracing_is_listed_with_the_remedy(tmp_path: Path) -> None:
    """A plugin loaded with -p is imported before the patch: its primitives, still alive, are
    counted by module at the end, with the name bound to threading's own RLock, and the
    remedy (nothing was said before)."""
    (tmp_path / "early_plugin.py").write_text(textwrap.dedent(EARLY_PLUGIN), encoding="utf-8")
    proc = inner_pytest(tmp_path, "-p", "early_plugin", "--tracedsync",
                        "--tracedsync-log-dir", "logs")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert "tracedsync: not traced: " in out
    assert "  early_plugin: 3 (1 Event, 2 Lock)" in out
    assert "  early_plugin: RLock" in out
    assert "tracedsync run -m pytest" in out


def test_the_log_dir_comes_from_tracedsync_log_dir_too(tmp_path: Path) -> None:
    """As for ``run``: --tracedsync-log-dir, else TRACEDSYNC_LOG_DIR, else a fresh directory."""
    proc = inner_pytest(tmp_path, "--tracedsync",
                        env=_env(EXPECT_LOCK="TracedLock", TRACEDSYNC_LOG_DIR="envlogs"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert list((tmp_path / "envlogs").glob("tracedsync-*.jsonl"))
    assert not (tmp_path / "tracedsync-logs").exists()


def test_an_unusable_log_dir_is_a_usage_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    proc = inner_pytest(tmp_path, "--tracedsync", "--tracedsync-log-dir", "file/logs")
    assert proc.returncode == 4, proc.stdout + proc.stderr
    assert "is not a directory" in proc.stderr


LONG_NAMED_TESTS = '''
import threading

def test_locks():
    first_lock_with_a_long_name = threading.Lock()
    for _ in range(3):
        with first_lock_with_a_long_name:
            pass
'''


def test_the_summary_does_not_cut_file_and_line_when_piped(tmp_path: Path) -> None:
    """pytest's output is a pipe here (80 columns for pytest): the report's tables keep their
    natural width, so a long file:line is whole on its line and no column is lost."""
    name = "test_a_module_with_a_rather_long_name_for_the_report_to_show.py"
    (tmp_path / name).write_text(textwrap.dedent(LONG_NAMED_TESTS), encoding="utf-8")
    proc = inner_pytest(tmp_path, "--tracedsync", "--tracedsync-log-dir", "logs", name,
                        env=_env(EXPECT_LOCK="TracedLock", COLUMNS=""))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"{name}:5" in proc.stdout and f"{name}:7" in proc.stdout
    header = next(line for line in proc.stdout.splitlines() if "created at" in line)
    assert "thr/proc" in header
