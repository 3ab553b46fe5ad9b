"""Run the lock-test contract matrix: tests/test_lock_tests.py once per hot path and cell.

    python tests/lock_matrix.py [--paths C,pure] [--cells all|core|NAME,...] [-j N]

The hot path (C or pure Python) is fixed when tracedsync is imported, and each cell (a level
with lock-order checking off or on) is a set of classes in that file; so each (path, cell) is
one pytest process, ``-j`` of them at a time (CPython's lock tests mostly sleep, waiting for
timeouts, so they overlap well even on two cores). Prints a table of passed/skipped/failed per
path and cell, the output of any process that failed, and exits 1 if one did.

Cells: ``all`` (the six), ``core`` (``full``, ``contention``, ``off``, ``full_order``: every
level, and lock-order checking at the level that records everything), or names. The C path is
run only where it was built (``tracedsync._threading.locks.SPEEDUPS``); where it was not, that
is said, and ``--require-c`` makes it a failure.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from concurrent.futures import ThreadPoolExecutor

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
TEST_FILE = os.path.join("tests", "test_lock_tests.py")
ALL_CELLS = ("full", "contention", "off", "full_order", "contention_order", "off_order")
CORE_CELLS = ("full", "contention", "off", "full_order")
PATHS = ("C", "pure")
TIMEOUT = 900  # seconds for one cell's process: far more than it takes (about 20 s)


def _cells(text: str) -> list[str]:
    if text == "all":
        return list(ALL_CELLS)
    if text == "core":
        return list(CORE_CELLS)
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in ALL_CELLS]
    if unknown:
        raise SystemExit(f"lock_matrix: unknown cell(s) {', '.join(unknown)}")
    return names


def _paths(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in PATHS]
    if unknown:
        raise SystemExit(f"lock_matrix: unknown path(s) {', '.join(unknown)} (C, pure)")
    return names


def c_path_built() -> bool:
    """Whether this Python's tracedsync loads its C hot path."""
    env = {k: v for k, v in os.environ.items() if k != "TRACEDSYNC_PURE_PYTHON"}
    out = subprocess.run(
        [sys.executable, "-c",
         "from tracedsync._threading.locks import SPEEDUPS; print(SPEEDUPS)"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=True,
    )
    return out.stdout.strip() == "True"


def run_cell(path: str, cell: str, workdir: str) -> dict[str, object]:
    """One pytest process; its counts from the JUnit XML it writes."""
    xml = os.path.join(workdir, f"{path}-{cell}.xml")
    env = {k: v for k, v in os.environ.items() if k != "TRACEDSYNC_PURE_PYTHON"}
    env["TRACEDSYNC_LOCK_TESTS_CELLS"] = cell
    if path == "pure":
        env["TRACEDSYNC_PURE_PYTHON"] = "1"
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-o", "addopts=",
           f"--junitxml={xml}", TEST_FILE]
    t0 = time.monotonic()
    try:
        proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True,
                              timeout=TIMEOUT)
        status, output = proc.returncode, proc.stdout + proc.stderr
    except subprocess.TimeoutExpired as exc:
        status = -1
        output = f"timed out after {TIMEOUT} s\n{exc.stdout or ''}{exc.stderr or ''}"
    counts = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    try:
        suite = ET.parse(xml).getroot()
        if suite.tag == "testsuites":
            suite = suite[0]
        for key in counts:
            counts[key] = int(suite.get(key, "0"))
    except (OSError, ET.ParseError, IndexError):
        pass
    return {"path": path, "cell": cell, "status": status, "output": output,
            "seconds": time.monotonic() - t0, **counts}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="lock_matrix", description=__doc__.split("\n\n")[0])
    parser.add_argument("--paths", default="C,pure", help="C, pure or both (default)")
    parser.add_argument("--cells", default="all", help="all (default), core, or names")
    parser.add_argument("-j", "--jobs", type=int, default=6, help="processes at once (6)")
    parser.add_argument("--require-c", action="store_true",
                        help="fail when the C hot path is not built")
    args = parser.parse_args(argv)
    paths, cells = _paths(args.paths), _cells(args.cells)
    status = 0
    if "C" in paths and not c_path_built():
        print("lock_matrix: the C hot path is not built for this Python: its cells are not run"
              + (" (--require-c: a failure)" if args.require_c else ""))
        paths.remove("C")
        status = 1 if args.require_c else 0
    version = sys.version.split()[0]
    print(f"lock_matrix: Python {version}, paths {', '.join(paths) or 'none'}, cells "
          f"{', '.join(cells)}, {args.jobs} at a time", flush=True)
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="lock-matrix-") as workdir, \
            ThreadPoolExecutor(max(1, args.jobs)) as pool:
        futures = [pool.submit(run_cell, p, c, workdir) for p in paths for c in cells]
        results = [f.result() for f in futures]
    width = max(10, *(len(c) for c in cells)) + 2
    print(f"{'path':<6}" + "".join(f"{c:>{width}}" for c in cells))
    totals = {"passed": 0, "skipped": 0, "failed": 0}
    failed = []
    missing = [r for r in results if (r["status"] == 5 and not r["tests"]) or (
        r["status"] in (0, 5) and r["tests"] and r["tests"] == r["skipped"])]
    if missing and os.environ.get("TRACEDSYNC_REQUIRE_LOCK_TESTS") != "1":
        # CPython's test package is absent (the file skipped itself): say so, do not fail.
        print("lock_matrix: SKIPPED: CPython's test package is not installed, so the lock-test "
              "contract was NOT checked (TRACEDSYNC_REQUIRE_LOCK_TESTS=1 makes this a failure)")
        return status
    for path in paths:
        row = f"{path:<6}"
        for cell in cells:
            r = next(r for r in results if r["path"] == path and r["cell"] == cell)
            bad = int(r["failures"]) + int(r["errors"])  # type: ignore[call-overload]
            skipped = int(r["skipped"])  # type: ignore[call-overload]
            passed = int(r["tests"]) - bad - skipped  # type: ignore[call-overload]
            totals["passed"] += passed
            totals["skipped"] += skipped
            totals["failed"] += bad
            if r["status"] != 0 or bad or passed == 0:
                failed.append(r)
            row += f"{f'{passed}/{skipped}/{bad}':>{width}}"
        print(row)
    print(f"lock_matrix: {totals['passed']} passed, {totals['skipped']} skipped, "
          f"{totals['failed']} failed (passed/skipped/failed per cell) in "
          f"{time.monotonic() - t0:.0f} s")
    for r in failed:
        print(f"\n===== {r['path']} path, cell {r['cell']}: exit status {r['status']} =====")
        print(str(r["output"])[-20000:])
    return 1 if failed else status


if __name__ == "__main__":
    sys.exit(main())
