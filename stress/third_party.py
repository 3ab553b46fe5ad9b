"""Stress on real code: the test suites of five libraries, traced, and the findings collected.

    python stress/third_party.py [--work DIR] [--only NAME ...] [--no-install] [--mode MODE]

For each library (pinned below): its source distribution is downloaded (for its tests), the
library and its test dependencies are installed into a scratch virtualenv (``DIR/venv``, made
once, with this checkout of tracedsync installed in it), and its suite is run traced:
``python -m tracedsync run --log-dir DIR/logs/NAME -m pytest ...`` (``--mode pytest`` runs
``pytest --tracedsync`` instead, which traces less: what pytest's plugins import first is
not). The logs are then analysed (``DIR/NAME.json``, the report) and every finding at warning
or above is printed, with its sites, for checking against the library's code. The verdicts
are recorded in docs/analysis.md ("Findings on real test suites").

Not part of CI: it needs the network (PyPI) and takes minutes. A failing test of a library is
printed and does not stop the run (tracing must not change a suite's outcome: compare with an
untraced run, ``--untraced``). Exit status 0 when every suite ran.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PYTEST = ("pytest==8.3.5", "pytest-timeout==2.3.1")
ASYNCIO = "pytest-asyncio==0.25.3"


@dataclass(frozen=True)
class Suite:
    """One library: its pinned version, what its tests need, and how to run them."""

    name: str
    dist: str  # the name on PyPI
    version: str
    tests: str  # the tests' directory in its sdist
    deps: tuple[str, ...] = ()
    args: tuple[str, ...] = ()
    ignore: tuple[str, ...] = field(default=())  # test files that need what is not installed


SUITES = (
    Suite("cachetools", "cachetools", "8.0.2", "tests"),
    Suite("tqdm", "tqdm", "4.70.1", "tests", (ASYNCIO,), (),
          ("tests_perf.py", "tests_keras.py", "tests_dask.py", "tests_pandas.py",
           "tests_notebook.py", "tests_tk.py", "tests_gui.py", "tests_rich.py")),
    Suite("pebble", "pebble", "5.2.3", "test"),
    Suite("apscheduler", "apscheduler", "3.11.3", "tests",
          ("anyio==4.9.0", "pytz", "tornado==6.5.2", "sqlalchemy==2.0.41")),
    Suite("janus", "janus", "2.0.0", "tests", (ASYNCIO,), (), ("test_benchmarks.py",)),
)


def _run(cmd: list[str], **kw: Any) -> subprocess.CompletedProcess[str]:
    print("+", " ".join(cmd), flush=True)
    return subprocess.run(cmd, text=True, **kw)


def venv(work: Path, install: bool) -> Path:
    """The scratch virtualenv's python (made, with this checkout of tracedsync, if missing)."""
    env_dir = work / "venv"
    python = env_dir / "bin" / "python"
    if not python.exists():
        _run([sys.executable, "-m", "venv", str(env_dir)], check=True)
        install = True
    if install:
        _run([str(python), "-m", "pip", "install", "-q", "--upgrade", "pip"], check=True)
        _run([str(python), "-m", "pip", "install", "-q", "-e", str(ROOT), *PYTEST], check=True)
    return python


def sources(python: Path, work: Path, suite: Suite, install: bool) -> Path:
    """The suite's unpacked sdist (its tests); the library and its test deps installed."""
    where = work / "src"
    where.mkdir(parents=True, exist_ok=True)
    found = [p for p in where.iterdir() if p.is_dir()
             and p.name.lower() == f"{suite.dist}-{suite.version}".lower()]
    if not found:
        _run([str(python), "-m", "pip", "download", "-q", "--no-deps", "--no-binary", ":all:",
              "-d", str(where), f"{suite.dist}=={suite.version}"], check=True)
        (archive,) = [p for p in where.glob("*.tar.gz")
                      if p.name.lower().startswith(f"{suite.dist}-{suite.version}".lower())]
        with tarfile.open(archive) as tar:
            tar.extractall(where, filter="data")
        found = [where / archive.name[: -len(".tar.gz")]]
    if install:
        _run([str(python), "-m", "pip", "install", "-q", f"{suite.dist}=={suite.version}",
              *suite.deps], check=True)
    return found[0]


def run_suite(python: Path, work: Path, suite: Suite, src: Path, mode: str,
              timeout: int) -> dict[str, Any]:
    """Run the suite (traced unless ``mode`` is "untraced"); its outcome and its report."""
    logs = work / "logs" / suite.name
    if mode != "untraced":
        shutil.rmtree(logs, ignore_errors=True)
        logs.mkdir(parents=True)
    pytest_args = ["-q", "-p", "no:cacheprovider", "-o", "addopts=", "--timeout=120",
                   "-W", "ignore::DeprecationWarning", *suite.args, suite.tests,
                   *(f"--ignore={suite.tests}/{f}" for f in suite.ignore)]
    if mode == "run":
        cmd = [str(python), "-m", "tracedsync", "run", "--log-dir", str(logs), "--no-summary",
               "-m", "pytest", *pytest_args]
    elif mode == "pytest":
        cmd = [str(python), "-m", "pytest", "--tracedsync", "--tracedsync-log-dir", str(logs),
               *pytest_args]
    else:
        cmd = [str(python), "-m", "pytest", *pytest_args]
    start = time.monotonic()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRACEDSYNC_")}
    proc = _run(cmd, cwd=src, env=env, capture_output=True, timeout=timeout)
    took = time.monotonic() - start
    (work / f"{suite.name}.{mode}.out").write_text(proc.stdout + proc.stderr, encoding="utf-8")
    lines = proc.stdout.strip().splitlines()
    out: dict[str, Any] = {"suite": suite.name, "version": suite.version, "status":
                           proc.returncode, "seconds": round(took, 1),
                           "summary": (lines or [""])[-1],
                           "failed": [x for x in lines if x.startswith(("FAILED", "ERROR"))]}
    if proc.returncode not in (0, 1):
        out["output"] = (proc.stdout + proc.stderr)[-3000:]
    if mode == "untraced" or not glob.glob(str(logs / "**" / "*.jsonl"), recursive=True):
        return out
    report = work / f"{suite.name}.json"
    analyzed = _run([str(python), "-m", "tracedsync", "analyze", "--no-progress", "-f", "json",
                     "-o", str(report), "--fail-on", "never", str(logs)], capture_output=True)
    if analyzed.returncode != 0:
        out["analyze"] = analyzed.stderr[-2000:]
        return out
    data = json.loads(report.read_text(encoding="utf-8"))
    out["events"] = data["totals"]["events"]
    out["findings"] = [
        {k: f[k] for k in ("severity", "kind", "message", "call_sites", "count")}
        for f in data["findings"]
    ]
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", default="stress-work", help="scratch directory")
    parser.add_argument("--only", nargs="*", help="suites to run (default: all)")
    parser.add_argument("--no-install", action="store_true", help="reuse what is installed")
    parser.add_argument("--mode", choices=("run", "pytest", "untraced"), default="run")
    parser.add_argument("--timeout", type=int, default=3600, help="seconds per suite")
    args = parser.parse_args(argv)
    work = Path(args.work).resolve()
    work.mkdir(parents=True, exist_ok=True)
    python = venv(work, not args.no_install)
    results = []
    ok = True
    for suite in SUITES:
        if args.only and suite.name not in args.only:
            continue
        src = sources(python, work, suite, not args.no_install)
        try:
            res = run_suite(python, work, suite, src, args.mode, args.timeout)
        except subprocess.TimeoutExpired:
            res = {"suite": suite.name, "status": "timeout"}
            ok = False
        results.append(res)
        print(f"== {suite.name} {suite.version}: exit {res['status']}, {res.get('summary')}, "
              f"{res.get('seconds')} s, {res.get('events', 0):,} events", flush=True)
        for line in res.get("failed", []):
            print(f"  {line}")
        for f in res.get("findings", []):
            if f["severity"] == "info":
                continue
            print(f"  {f['severity']:8} {f['kind']:14} {f['message']}")
            for site in f["call_sites"][:6]:
                print(f"  {'':24} at {site}")
    (work / "findings.json").write_text(json.dumps(results, indent=2), encoding="utf-8")
    print(f"all results: {work / 'findings.json'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
