"""``tracedsync run``: the program runs as ``__main__`` with its own argv, exit status and
traceback; its Python children (fork, spawn, forkserver, subprocess) are traced into one log
directory; a summary goes to stderr."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from helpers import clean_env

from tracedsync._run.runner import exit_status, split_argv
from tracedsync.analysis.reader import Problem, read_all

TIMEOUT = 120


def _env(**extra: str) -> dict[str, str]:
    return clean_env("PYTHONPATH", **extra)


def run(
    cwd: Path, *args: str, env: dict[str, str] | None = None, timeout: float = TIMEOUT
) -> subprocess.CompletedProcess[str]:
    """``python -m tracedsync run ARGS`` in ``cwd``."""
    return subprocess.run(
        [sys.executable, "-m", "tracedsync", "run", *args],
        cwd=cwd, env=env if env is not None else _env(), capture_output=True, text=True,
        timeout=timeout,
    )


def write(path: Path, code: str) -> Path:
    """Write a dedented program."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(code).lstrip("\n"), encoding="utf-8")
    return path


def events(log_dir: Path) -> list[dict[str, Any]]:
    """Every event of every log in ``log_dir``."""
    problems: list[Problem] = []
    evs = list(read_all([str(log_dir)], problems))
    assert not problems, problems
    return evs


def created_by(evs: list[dict[str, Any]], pid: int) -> list[dict[str, Any]]:
    """The `created` events of process ``pid``."""
    return [e for e in evs if e["event"] == "created" and e["pid"] == pid]


def test_script_runs_as_main_with_its_arguments_and_path(tmp_path: Path) -> None:
    """The script is ``__main__``, sees its own arguments (ours and unknown options included) and
    its directory as sys.path[0]; its primitives are traced at its lines."""
    script = write(tmp_path / "app" / "prog.py", """
        import json, sys, threading
        lock = threading.Lock()
        with lock:
            pass
        print(json.dumps({"name": __name__, "argv": sys.argv, "path0": sys.path[0],
                          "file": __file__, "lock": type(lock).__name__}))
    """)
    logs = tmp_path / "logs"
    proc = run(tmp_path, "--log-dir", str(logs), "--no-summary", "app/prog.py", "a",
               "--level", "x", "--no-summary", "-m", "z")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["name"] == "__main__" and out["lock"] == "TracedLock"
    assert out["argv"][1:] == ["a", "--level", "x", "--no-summary", "-m", "z"]
    assert os.path.samefile(out["argv"][0], script) and os.path.samefile(out["file"], script)
    assert out["path0"] == str(script.parent.resolve())
    evs = events(logs)
    (created,) = [e for e in evs if e["event"] == "created"]
    assert created["site"] == f"{script.resolve()}:2" and created["kind"] == "Lock"


def test_a_directory_with_main_runs_like_python_runs_it(tmp_path: Path) -> None:
    """``tracedsync run appdir``: its ``__main__.py`` runs with the directory as sys.path[0]."""
    write(tmp_path / "appdir" / "helper.py", "VALUE = 42\n")
    write(tmp_path / "appdir" / "__main__.py", """
        import sys, threading, helper
        print(sys.path[0], helper.VALUE, type(threading.Lock()).__name__)
    """)
    proc = run(tmp_path, "--no-summary", "--log-dir", "logs", "appdir")
    assert proc.returncode == 0, proc.stderr
    path0, value, kind = proc.stdout.split()
    assert os.path.samefile(path0, tmp_path / "appdir") and (value, kind) == ("42", "TracedLock")


def test_module_runs_with_dash_m(tmp_path: Path) -> None:
    """``-m pkg.mod args``: run as ``__main__`` with sys.path[0] the current directory."""
    write(tmp_path / "pkg" / "__init__.py", "")
    mod = write(tmp_path / "pkg" / "mod.py", """
        import json, sys, threading
        ev = threading.Event()
        print(json.dumps({"name": __name__, "argv": sys.argv, "path0": sys.path[0],
                          "ev": type(ev).__name__}))
    """)
    proc = run(tmp_path, "--no-summary", "--log-dir", "logs", "-m", "pkg.mod", "1", "-x")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["name"] == "__main__" and out["ev"] == "TracedEvent"
    assert out["argv"][1:] == ["1", "-x"] and os.path.samefile(out["argv"][0], mod)
    assert os.path.samefile(out["path0"], tmp_path)
    assert (tmp_path / "logs").is_dir()


@pytest.mark.parametrize(
    ("body", "status", "stderr_has"),
    [
        ("raise SystemExit(3)", 3, None),
        ("raise SystemExit", 0, None),
        ("import sys; sys.exit(None)", 0, None),
        ("raise SystemExit('bye now')", 1, "bye now"),
        ("def f():\n    raise ValueError('boom')\nf()", 1, "ValueError: boom"),
        ("raise KeyboardInterrupt", 130, "KeyboardInterrupt"),
    ],
)
def test_exit_status_passes_through(
    tmp_path: Path, body: str, status: int, stderr_has: str | None
) -> None:
    """SystemExit codes pass through; an exception exits 1 with Python's traceback of the
    program's frames only."""
    write(tmp_path / "prog.py", body + "\n")
    proc = run(tmp_path, "--no-summary", "--log-dir", "logs", "prog.py")
    assert proc.returncode == status, proc.stderr
    if stderr_has:
        assert stderr_has in proc.stderr
    if "ValueError" in body:
        assert proc.stderr.startswith("Traceback (most recent call last):\n")
        assert 'prog.py", line 3, in <module>' in proc.stderr
        assert 'prog.py", line 2, in f' in proc.stderr
        assert "runpy" not in proc.stderr and "_runner" not in proc.stderr


def test_children_are_traced_under_every_start_method_and_subprocess(tmp_path: Path) -> None:
    """fork, spawn and forkserver children, and a subprocess of sys.executable, each log the
    primitives they create into the run's directory."""
    write(tmp_path / "child.py", """
        import threading
        with threading.RLock():
            pass
    """)
    write(tmp_path / "prog.py", """
        import json, multiprocessing as mp, subprocess, sys, threading

        def work():
            with threading.Lock():
                pass

        if __name__ == "__main__":
            pids = {}
            for method in ("fork", "spawn", "forkserver"):
                p = mp.get_context(method).Process(target=work)
                p.start()
                p.join(60)
                assert p.exitcode == 0, (method, p.exitcode)
                pids[method] = p.pid
            child = subprocess.Popen([sys.executable, "child.py"])
            assert child.wait(60) == 0
            pids["subprocess"] = child.pid
            print(json.dumps(pids))
    """)
    logs = tmp_path / "logs"
    proc = run(tmp_path, "--no-summary", "--log-dir", str(logs), "prog.py")
    assert proc.returncode == 0, proc.stderr
    pids = json.loads(proc.stdout)
    evs = events(logs)
    for method in ("fork", "spawn", "forkserver"):
        made = created_by(evs, pids[method])
        assert [(e["kind"], e["func"]) for e in made] == [("Lock", "work")], (method, made)
    (made,) = created_by(evs, pids["subprocess"])
    assert made["kind"] == "RLock" and made["site"].endswith("child.py:2")


def test_an_existing_sitecustomize_still_runs(tmp_path: Path) -> None:
    """A sitecustomize already on PYTHONPATH runs in the children as well as ours."""
    write(tmp_path / "site" / "sitecustomize.py", """
        import os
        os.environ["THEIR_SITECUSTOMIZE"] = "ran"
    """)
    write(tmp_path / "prog.py", """
        import subprocess, sys
        code = ("import os, sitecustomize, threading; "
                "print(os.environ.get('THEIR_SITECUSTOMIZE'), type(threading.Lock()).__name__, "
                "sitecustomize.__file__)")
        print(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             check=True, timeout=60).stdout.strip())
    """)
    proc = run(tmp_path, "--no-summary", "--log-dir", "logs", "prog.py",
               env=_env(PYTHONPATH=str(tmp_path / "site")))
    assert proc.returncode == 0, proc.stderr
    marker, kind, module_file = proc.stdout.split()
    assert (marker, kind) == ("ran", "TracedLock")
    assert os.path.samefile(module_file, tmp_path / "site" / "sitecustomize.py")


def test_summary_goes_to_stderr_and_logs_to_a_fresh_directory(tmp_path: Path) -> None:
    """Without --log-dir the logs go to a new ./tracedsync-logs/<timestamp>/; the summary, on
    stderr, says where and shows the busiest lock."""
    write(tmp_path / "prog.py", """
        import threading
        accounts = threading.Lock()
        for _ in range(3):
            with accounts:
                pass
        print("program output")
    """)
    proc = run(tmp_path, "prog.py")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "program output\n"
    (log_dir,) = (tmp_path / "tracedsync-logs").iterdir()
    assert list(log_dir.glob("tracedsync-*.jsonl"))
    assert f"tracedsync: logs in {log_dir.relative_to(tmp_path)};" in proc.stderr
    assert "prog.py:2" in proc.stderr and "No findings." in proc.stderr
    # one screen: the findings, the locks and the call sites; the rest is analyze's
    assert "Locks (" in proc.stderr and "Call sites" in proc.stderr
    assert "Creation sites" not in proc.stderr and "Other events" not in proc.stderr
    again = run(tmp_path, "--no-summary", "prog.py")
    assert again.stderr == ""
    assert len(list((tmp_path / "tracedsync-logs").iterdir())) == 2


def test_summary_reports_findings_of_all_processes(tmp_path: Path) -> None:
    """A lock-order inversion split between parent and a child shows in the summary."""
    write(tmp_path / "prog.py", """
        import threading
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
            t.join()
    """)
    proc = run(tmp_path, "--log-dir", "logs", "prog.py")
    assert proc.returncode == 0, proc.stderr
    assert "lock_order" in proc.stderr


def test_include_exclude_and_level_reach_the_children(tmp_path: Path) -> None:
    """--include/--exclude/--level apply in this process and in spawned children."""
    write(tmp_path / "prog.py", """
        import multiprocessing as mp, queue, threading

        def report(tag):
            print(tag, type(queue.Queue().mutex).__name__, type(threading.Lock()).__name__,
                  flush=True)

        if __name__ == "__main__":
            report("parent")
            p = mp.get_context("spawn").Process(target=report, args=("child",))
            p.start()
            p.join(60)
    """)
    proc = run(tmp_path, "--no-summary", "--log-dir", "logs", "--include", "queue",
               "--exclude", "__main__,__mp_main__", "--level", "contention", "prog.py")
    assert proc.returncode == 0, proc.stderr
    assert sorted(proc.stdout.splitlines()) == ["child TracedLock lock", "parent TracedLock lock"]
    sessions = [e for e in events(tmp_path / "logs") if e["event"] == "session"]
    assert len(sessions) >= 2
    assert {s["settings"]["level"] for s in sessions} == {"contention"}


def test_daemon_thread_at_exit(tmp_path: Path) -> None:
    """A daemon thread still taking a traced lock at exit: exit 0, the summary, no traceback."""
    write(tmp_path / "prog.py", """
        import threading
        lock = threading.Lock()
        started = threading.Event()
        def spin():
            while True:
                with lock:
                    started.set()
        threading.Thread(target=spin, daemon=True).start()
        assert started.wait(30)
    """)
    proc = run(tmp_path, "--log-dir", "logs", "prog.py")
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr and "tracedsync: logs in" in proc.stderr


@pytest.mark.parametrize(
    ("args", "status", "message"),
    [
        ([], 2, "a script or -m module is required"),
        (["missing.py"], 2, "can't open file"),
        (["--level", "loud", "x.py"], 2, "invalid choice"),
        (["-m", "no_such_module_here"], 1, "No module named no_such_module_here"),
        (["--help"], 0, "usage: tracedsync run"),
    ],
)
def test_usage(tmp_path: Path, args: list[str], status: int, message: str) -> None:
    """Usage errors exit 2 with a message; a missing module 1, as Python; --help 0."""
    proc = run(tmp_path, "--no-summary", "--log-dir", "logs", *args)
    assert proc.returncode == status
    assert message in proc.stdout + proc.stderr


def test_the_console_script_runs_programs_too(tmp_path: Path) -> None:
    """``tracedsync run`` through the installed console script."""
    exe = shutil.which("tracedsync", path=os.path.dirname(sys.executable))
    if exe is None:
        pytest.skip("the tracedsync console script is not installed next to this Python")
    write(tmp_path / "prog.py", "import sys, threading; sys.exit(type(threading.RLock()).__name__)")
    proc = subprocess.run([exe, "run", "--no-summary", "--log-dir", "logs", "prog.py"],
                          cwd=tmp_path, env=_env(), capture_output=True, text=True,
                          timeout=TIMEOUT)
    assert proc.returncode == 1 and proc.stderr.strip() == "TracedRLock"


def test_split_argv() -> None:
    """Our options end at the script or at -m; everything after belongs to the program."""
    assert split_argv(["--level", "full", "s.py", "--level", "x"]) == (
        ["--level", "full"], "s.py", None, ["--level", "x"])
    assert split_argv(["--no-summary", "-m", "a.b", "-m", "c"]) == (
        ["--no-summary"], None, "a.b", ["-m", "c"])
    assert split_argv(["-ma.b", "x"]) == ([], None, "a.b", ["x"])
    assert split_argv(["--log-dir=d", "--", "-weird.py", "y"]) == (
        ["--log-dir=d"], "-weird.py", None, ["y"])
    assert split_argv(["--include", "q"]) == (["--include", "q"], None, None, [])


def test_exit_status_rules(capsys: pytest.CaptureFixture[str]) -> None:
    """None is 0, an int itself, anything else printed and 1 (as Python does)."""
    assert exit_status(None) == 0 and exit_status(7) == 7 and exit_status(False) == 0
    assert exit_status("no") == 1
    assert capsys.readouterr().err == "no\n"


def test_multiprocessing_value_races_are_found_in_spawned_children(tmp_path: Path) -> None:
    """Plain ``multiprocessing`` code, unchanged: ``v.value += 1`` in two spawned children is
    reported as an unsynchronised read-modify-write (the children meet at a barrier halfway,
    so their updates overlap in time, whatever the scheduling)."""
    pytest.importorskip("tracedsync._multiprocessing.factories")
    write(tmp_path / "prog.py", """
        import multiprocessing

        def bump(v, halfway):
            for i in range(50):
                if i == 25: halfway.wait(60)
                v.value += 1

        if __name__ == "__main__":
            ctx = multiprocessing.get_context("spawn")
            counter = ctx.Value("i", 0)
            halfway = ctx.Barrier(2)
            workers = [ctx.Process(target=bump, args=(counter, halfway)) for _ in range(2)]
            for w in workers:
                w.start()
            for w in workers:
                w.join(60)
            print(type(counter).__qualname__)  # (its __name__ is multiprocessing's)
    """)
    proc = run(tmp_path, "--log-dir", "logs", "prog.py")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().startswith("Traced")
    assert "rmw" in proc.stderr and "prog.py:6" in proc.stderr
