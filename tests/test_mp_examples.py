"""The seed's two Value examples, run traced under every start method and analysed: the racy one
is reported at its ``+=`` line, the get_lock() one is not."""

from __future__ import annotations

import json
import multiprocessing
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
METHODS = multiprocessing.get_all_start_methods()

# The example under a chosen start method, with fewer iterations (the rule does not need a race
# to happen, only the pattern). It sets N at import, so spawned children see it too.
DRIVER = """\
import multiprocessing
import sys

sys.path.insert(0, {examples!r})
import {module} as example

example.N = 200
if __name__ == "__main__":
    multiprocessing.set_start_method({method!r})
    example.main()
"""


def _run_traced(module: str, method: str, tmp: Path) -> dict[str, Any]:
    """Run examples/<module>.py traced into tmp/logs, then `tracedsync analyze -f json` it."""
    driver = tmp / f"run_{module}.py"
    driver.write_text(DRIVER.format(examples=str(EXAMPLES), module=module, method=method))
    logs = tmp / "logs"
    env = {**os.environ, "TRACEDSYNC_LOG_DIR": str(logs), "TRACEDSYNC_LEVEL": "full"}
    run = subprocess.run([sys.executable, str(driver)], env=env, cwd=tmp, capture_output=True,
                         text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert "expected: 600" in run.stdout
    assert len(list(logs.glob("tracedsync-*.jsonl"))) == 3  # the parent and its two workers
    analyzed = subprocess.run([sys.executable, "-m", "tracedsync", "analyze", "-f", "json",
                               "--no-progress", str(logs)],
                              capture_output=True, text=True, timeout=120)
    assert analyzed.returncode in (0, 1), analyzed.stderr
    report: dict[str, Any] = json.loads(analyzed.stdout)
    report["exit"] = analyzed.returncode
    return report


def _plus_equals_line(module: str) -> int:
    lines = (EXAMPLES / f"{module}.py").read_text(encoding="utf-8").splitlines()
    (line,) = [i for i, text in enumerate(lines, 1) if "v.value += step" in text]
    return line


@pytest.mark.parametrize("method", METHODS)
def test_racy_example_is_reported_at_its_plus_equals_line(method: str, tmp_path: Path) -> None:
    """value_racy.py: analyze finds an rmw (an error) at the `v.value += step` line."""
    report = _run_traced("value_racy", method, tmp_path)
    rmw = [f for f in report["findings"] if f["kind"] == "rmw"]
    assert len(rmw) == 1, report["findings"]
    site = f"{EXAMPLES / 'value_racy.py'}:{_plus_equals_line('value_racy')}"
    assert rmw[0]["call_sites"][0] == site
    assert rmw[0]["severity"] == "error"
    assert len(rmw[0]["processes"]) == 2  # both workers did it
    assert report["exit"] == 1


@pytest.mark.parametrize("method", METHODS)
def test_get_lock_example_reports_no_rmw(method: str, tmp_path: Path) -> None:
    """value_get_lock.py: the same increments under get_lock() are not reported."""
    report = _run_traced("value_get_lock", method, tmp_path)
    assert [f for f in report["findings"] if f["kind"] == "rmw"] == []
    assert [f for f in report["findings"] if f["severity"] == "error"] == []


def test_deadlock_across_processes_example(tmp_path: Path) -> None:
    """examples/deadlock_processes.py under `tracedsync run`: the two processes' AB-BA is
    reported at run time by both (one finding, both threads' stacks), and the program still
    finishes as it does untraced (one side times out, backs off, retries in order: no second
    cycle)."""
    logs = tmp_path / "logs"
    env = {**os.environ, "TRACEDSYNC_FLUSH_INTERVAL": "0.05"}
    run = subprocess.run([sys.executable, "-m", "tracedsync", "run", "--no-summary",
                          "--log-dir", str(logs), str(EXAMPLES / "deadlock_processes.py")],
                         env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout.count("moved the money") == 2
    analyzed = subprocess.run([sys.executable, "-m", "tracedsync", "analyze", "-f", "json",
                               "--no-progress", str(logs)],
                              capture_output=True, text=True, timeout=120)
    report = json.loads(analyzed.stdout)
    (dead,) = [f for f in report["findings"] if f["kind"] == "deadlock"]
    assert dead["severity"] == "error" and dead["count"] == 1
    assert dead["details"]["source"] == "runtime" and len(dead["processes"]) == 2
    # Both threads are "MainThread": the report names them by their process too.
    assert sorted(t["name"] for t in dead["threads"]) == ["Process-1/MainThread",
                                                          "Process-2/MainThread"]
    cycle = dead["details"]["cycle"]
    assert len(cycle) == 2 and all(c["stack"] for c in cycle)
    lines = (EXAMPLES / "deadlock_processes.py").read_text(encoding="utf-8").splitlines()
    (line,) = [i for i, text in enumerate(lines, 1) if "dst.acquire(timeout=" in text]
    assert all(c["site"].endswith(f"deadlock_processes.py:{line}") for c in cycle)
