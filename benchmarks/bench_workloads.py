"""Whole workloads, raw vs traced at each level, measured in one pyperf run (issue: overhead).

    python benchmarks/bench_workloads.py [--only threads|seeds|value] [--fast] [pyperf options]
    python benchmarks/bench_workloads.py --paired N [--only threads|seeds|value]

* Condition ping-pong: two threads hand a token back and forth through one Condition.
* Producer/consumer: 4 producers and 4 consumers move 200,000 items through a list guarded by a
  Condition, with the background flusher writing the log to disk as in real use (throughput is
  the figure; ratios < 1 mean slower).
* The seed programs (examples/, the Value one being "Value increments under get_lock() in 2
  processes"), run as subprocesses: wall time at each level against the same program given
  threading's and multiprocessing's own primitives.

Raw runs use ``threading``'s primitives; traced runs use tracedsync's at ``off``,
``contention`` and ``full``. ``--only`` runs one group: the two thread workloads, the seed
programs, or the Value seed program alone (``value_get_lock.py``). The seed programs run as
installed code does: from cached bytecode (``PYTHONDONTWRITEBYTECODE`` is dropped from their
environment; the first run writes it).

``--paired N`` does without pyperf, for the issue's "median of paired runs": each of N rounds
runs producer/consumer (in a fresh process per level: the level is a process-wide setting) and
the seed programs raw, then at each level, one after the other, and the table gives the median
of each round's ratio to that round's raw run (throughput for producer/consumer, wall time for
the seeds). Neighbouring runs share the machine's state, so their ratio is steadier than the
ratio of two means taken minutes apart.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any

import pyperf
from _bench_util import discard_log

import tracedsync

LOG_DIR = os.path.join(tempfile.gettempdir(), "tracedsync-bench-workloads")


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LEVELS = ["raw", "off", "contention", "full"]


def _condition(level: str) -> Any:
    if level == "raw":
        return threading.Condition()
    tracedsync.configure(level=level, log_dir=LOG_DIR, flush_interval=0.2)
    return tracedsync.Condition()


def ping_pong(loops: int, level: str) -> float:
    cond = _condition(level)
    turn = [0]
    n = 2000

    def player(me: int) -> None:
        for _ in range(n):
            with cond:
                while turn[0] != me:
                    cond.wait()
                turn[0] = 1 - me
                cond.notify()

    total = 0.0
    for _ in range(loops):
        turn[0] = 0
        threads = [threading.Thread(target=player, args=(i,)) for i in (0, 1)]
        t0 = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        total += time.perf_counter() - t0
    discard_log()
    return total


def _producer_consumer_once(level: str) -> float:
    items, producers, consumers = 200_000, 4, 4
    cond = _condition(level)
    queue: list[int] = []
    per_producer = items // producers
    done = [0]

    def produce() -> None:
        for i in range(per_producer):
            with cond:
                queue.append(i)
                cond.notify()

    def consume() -> None:
        while True:
            with cond:
                while not queue:
                    if done[0] >= items:
                        return
                    cond.wait(0.05)
                queue.pop()
                done[0] += 1
                if done[0] >= items:
                    cond.notify_all()

    threads = [threading.Thread(target=produce) for _ in range(producers)]
    threads += [threading.Thread(target=consume) for _ in range(consumers)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - t0
    discard_log()
    return elapsed


def producer_consumer(loops: int, level: str) -> float:
    return sum(_producer_consumer_once(level) for _ in range(loops))


_RAW_RUNNER = """
import runpy, sys, threading, multiprocessing, tracedsync
# The untraced baseline: the seed programs use tracedsync's factories; hand them the originals
# (without the name= that only tracedsync takes).
def untraced(factory):
    return lambda *args, name=None, **kwargs: factory(*args, **kwargs)
for n, f in [("Condition", threading.Condition), ("RLock", threading.RLock),
             ("Lock", threading.Lock), ("Value", multiprocessing.Value),
             ("Array", multiprocessing.Array)]:
    setattr(tracedsync, n, untraced(f))
sys.argv = [sys.argv[1]]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def seed_program(loops: int, script: str, level: str) -> float:
    path = os.path.join(ROOT, "examples", script)
    cmd = ([sys.executable, "-c", _RAW_RUNNER, path] if level == "raw"
           else [sys.executable, path])
    base = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    total = 0.0
    for _ in range(loops):
        with tempfile.TemporaryDirectory(prefix="tracedsync-bench-seed-") as logs:
            env = dict(base, TRACEDSYNC_LEVEL="off" if level == "raw" else level,
                       TRACEDSYNC_LOG_DIR=logs, DEMO_SPEED="0.05")
            t0 = time.perf_counter()
            subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL)
            total += time.perf_counter() - t0
    return total


GROUPS = ("threads", "seeds", "value")
WORKLOADS = ("Condition ping-pong (2 x 2000)", "producer/consumer 4x4, 200k items")


def _pass_only(cmd: list[str], args: Any) -> None:
    if args.only:
        cmd.extend(("--only", args.only))


def _pc_in_fresh_process(level: str) -> float:
    out = subprocess.run([sys.executable, __file__, "--pc-once", level], check=True,
                         capture_output=True, text=True).stdout
    return float(out.split()[-1])


def paired(rounds: int, only: str | None) -> None:
    """``rounds`` rounds of raw and every level in turn; median ratios (see the docstring)."""
    import statistics

    jobs: list[tuple[str, Any, bool]] = []  # (title, level -> seconds, throughput?)
    if only in (None, "threads"):
        jobs.append((WORKLOADS[1], _pc_in_fresh_process, True))
    scripts = {None: ("condition_producer_consumer.py", "rlock_recursion.py",
                      "value_get_lock.py"), "seeds": ("condition_producer_consumer.py",
                      "rlock_recursion.py", "value_get_lock.py"), "value": ("value_get_lock.py",),
               "threads": ()}[only]
    for script in scripts:
        jobs.append((script, lambda level, s=script: seed_program(1, s, level), False))
    times: dict[tuple[str, str], list[float]] = {}
    ratios: dict[tuple[str, str], list[float]] = {}
    for _ in range(rounds):
        for title, run, throughput in jobs:
            row = {level: run(level) for level in LEVELS}
            for level in LEVELS:
                times.setdefault((title, level), []).append(row[level])
                r = row["raw"] / row[level] if throughput else row[level] / row["raw"]
                ratios.setdefault((title, level), []).append(r)
    print(f"\n| workload (median of {rounds} paired rounds) | raw | off | contention | full |")
    print("|---|---|---|---|---|")
    for title, _, throughput in jobs:
        what = "x throughput" if throughput else "x wall"
        cells = [f"{statistics.median(times[(title, 'raw')]) * 1e3:.0f} ms"]
        for level in LEVELS[1:]:
            rs = ratios[(title, level)]
            cells.append(f"{statistics.median(times[(title, level)]) * 1e3:.0f} ms "
                         f"({statistics.median(rs):.3f}{what}; {min(rs):.2f}..{max(rs):.2f})")
        print(f"| {title} | " + " | ".join(cells) + " |")
    print(f"\nPython {sys.version.split()[0]}, tracedsync {tracedsync.__version__}")


def main() -> None:
    if "--pc-once" in sys.argv:
        print(_producer_consumer_once(sys.argv[sys.argv.index("--pc-once") + 1]))
        return
    if "--paired" in sys.argv:
        at = sys.argv.index("--paired")
        only = sys.argv[sys.argv.index("--only") + 1] if "--only" in sys.argv else None
        paired(int(sys.argv[at + 1]), only)
        return
    runner = pyperf.Runner(add_cmdline_args=_pass_only)
    runner.argparser.add_argument("--only", choices=GROUPS, default=None,
                                  help="run one group of benchmarks")
    only = runner.parse_args().only
    res: dict[tuple[str, str], float] = {}
    workloads = (zip(WORKLOADS, (ping_pong, producer_consumer), strict=True)
                 if only in (None, "threads") else ())
    for title, func in workloads:
        for level in LEVELS:
            b = runner.bench_time_func(f"{title} [{level}]", func, level)
            if b is not None and not runner.args.worker:
                res[(title, level)] = b.mean()
    seeds: tuple[str, ...] = ()
    if only in (None, "seeds"):
        seeds = ("condition_producer_consumer.py", "rlock_recursion.py", "value_get_lock.py")
    elif only == "value":
        seeds = ("value_get_lock.py",)
    for script in seeds:
        for level in LEVELS:
            b = runner.bench_time_func(f"seed {script} [{level}]", seed_program, script, level)
            if b is not None and not runner.args.worker:
                res[(script, level)] = b.mean()
    if runner.args.worker or not res:
        return
    print("\n| workload | raw | off | contention | full |\n|---|---|---|---|---|")
    for title in WORKLOADS if workloads else ():
        raw = res[(title, "raw")]
        cells = [f"{raw * 1e3:.0f} ms"] + [
            f"{res[(title, lv)] * 1e3:.0f} ms ({raw / res[(title, lv)]:.2f}x throughput)"
            for lv in LEVELS[1:]]
        print(f"| {title} | " + " | ".join(cells) + " |")
    print("\n| seed program (wall time) | raw | off | contention | full |\n|---|---|---|---|---|")
    for script in seeds:
        raw = res[(script, "raw")]
        cells = [f"{raw * 1e3:.0f} ms"] + [
            f"{res[(script, lv)] * 1e3:.0f} ms ({res[(script, lv)] / raw:.3f}x)"
            for lv in LEVELS[1:]]
        print(f"| {script} | " + " | ".join(cells) + " |")
    print(f"\nPython {sys.version.split()[0]}, tracedsync {tracedsync.__version__}")


if __name__ == "__main__":
    main()
