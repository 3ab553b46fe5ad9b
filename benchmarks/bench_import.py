"""What ``import tracedsync`` costs: ``python -X importtime``, best of several runs, minus the
same for ``import threading`` (the issue's target: at most 50 ms above it).

Each run is a fresh interpreter (``-X importtime -c "import <module>"``); the figure taken is the
cumulative time of the top-level module's line, and the best (smallest) of the runs, since a
loaded machine only ever adds time. ``--top N`` also lists the N modules with the largest self
time (each module's best over the runs), to see where the rest goes; ``--python`` measures
another interpreter (tracedsync must be importable by it, as in a virtualenv with it installed).

    python benchmarks/bench_import.py [--runs 15] [--top 15] [--python PATH] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys


def importtime(python: str, module: str) -> dict[str, tuple[int, int]]:
    """One fresh interpreter importing ``module``: {module name: (self µs, cumulative µs)}."""
    env = dict(os.environ)
    env.pop("PYTHONPROFILEIMPORTTIME", None)
    # As installed: modules load from their cached bytecode (the first, warm-up, run writes it
    # where it is missing, as for an editable install), not compiled from source every time.
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    proc = subprocess.run(
        [python, "-X", "importtime", "-c", f"import {module}"],
        capture_output=True, text=True, env=env, check=True,
    )
    out: dict[str, tuple[int, int]] = {}
    for line in proc.stderr.splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        try:
            self_us, cum_us, name = line[len("import time:"):].split("|", 2)
            out[name.strip()] = (int(self_us), int(cum_us))
        except ValueError:
            continue
    return out


def best(python: str, module: str, runs: int) -> tuple[int, dict[str, int]]:
    """The best cumulative µs of ``module`` over ``runs``, and each module's best self µs."""
    cumulative: list[int] = []
    selfs: dict[str, int] = {}
    importtime(python, module)  # warm-up: bytecode written, files in the page cache
    for _ in range(runs):
        table = importtime(python, module)
        if module not in table:
            raise SystemExit(f"{python} did not import {module} (already imported by site?)")
        cumulative.append(table[module][1])
        for name, (self_us, _cum) in table.items():
            selfs[name] = min(selfs.get(name, self_us), self_us)
    return min(cumulative), selfs


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("--runs", type=int, default=15, help="fresh interpreters per module")
    ap.add_argument("--top", type=int, default=0, help="list the N heaviest modules")
    ap.add_argument("--python", default=sys.executable, help="the interpreter to measure")
    ap.add_argument("--json", action="store_true", help="one JSON object on stdout")
    args = ap.parse_args(argv)
    threading_us, _ = best(args.python, "threading", args.runs)
    tracedsync_us, selfs = best(args.python, "tracedsync", args.runs)
    version = subprocess.run(
        [args.python, "-c", "import sys; print(sys.version.split()[0])"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()
    above = tracedsync_us - threading_us
    if args.json:
        print(json.dumps({"python": version, "runs": args.runs, "threading_us": threading_us,
                          "tracedsync_us": tracedsync_us, "above_threading_us": above}))
    else:
        print(f"Python {version}, best of {args.runs} runs of -X importtime:")
        print(f"  import threading   {threading_us / 1000:8.1f} ms")
        print(f"  import tracedsync  {tracedsync_us / 1000:8.1f} ms")
        print(f"  above threading    {above / 1000:8.1f} ms   (target: <= 50 ms)")
    if args.top:
        print(f"heaviest modules (best self time over {args.runs} runs):")
        for name, us in sorted(selfs.items(), key=lambda kv: -kv[1])[: args.top]:
            print(f"  {us / 1000:7.2f} ms  {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
