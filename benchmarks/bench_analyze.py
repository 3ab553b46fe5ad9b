"""Throughput of ``tracedsync analyze``: events per CPU-second, wall time and peak memory.

    python benchmarks/bench_analyze.py                      # 2 M events, both log sets
    python benchmarks/bench_analyze.py --events 10000000 --sets synthetic --jobs 2

Two log sets, each made once and cached in ``--dir``:

* *synthetic*: logs shaped like the recorder's (same keys, same order, realistic sites and
  ids), several processes of several threads: mostly acquire/release pairs (some nested in a
  fixed order, some contended, recursive RLocks), condition waits and notifies, the usual
  headers and counters;
* *real*: one log recorded by tracedsync itself from a program of 8 threads hammering a few
  locks (a little nesting, a condition), in one process.

Every figure is measured in a fresh process started for it, ``--runs`` times: the run with the
least CPU is shown (for ``-j JOBS``, the least wall time of the runs too). *Analysis alone*:
the CPU seconds of ``analyze()`` and ``build_report()`` in that process (no interpreter start,
imports or rendering). The command line (``python -m tracedsync analyze``, interpreter start and
imports included, writing its output to a file): its wall time, user+system CPU seconds and the
peak RSS of the largest process (the command, or one of its workers), from
``getrusage(RUSAGE_CHILDREN)`` of a process that does nothing else. ``-j1`` with the native
scanner and with the pure-Python one (``TRACEDSYNC_PURE_PYTHON=1``), ``-f perfetto`` against
``-f json``, and ``-j JOBS``. The package is byte-compiled first (as an installed one is: with
``PYTHONDONTWRITEBYTECODE`` set, every run would compile its sources again), and the load
average is printed at the start and the end of each log set (other work on the machine slows
wall times most, CPU times a little).
"""

from __future__ import annotations

import argparse
import compileall
import importlib.util
import json
import os
import random
import subprocess
import sys
import textwrap
import time

import orjson


def _write_process(path: str, pid: int, events: int, threads: int, seed: int) -> int:
    rnd = random.Random(seed)
    ts = 10**12 + seed * 10**9
    out: list[bytes] = []
    n = 0

    def emit(ev: dict[str, object]) -> None:
        nonlocal n
        out.append(orjson.dumps(ev))
        n += 1

    emit(
        {
            "event": "session",
            "ts": ts,
            "pid": pid,
            "tid": pid,
            "schema": 1,
            "version": "0.1.0",
            "ppid": 1,
            "argv": ["bench.py"],
            "python": "3.11.7",
            "implementation": "cpython",
            "executable": "python",
            "hostname": "bench",
            "wall_ns": 0,
            "mono_ns": ts,
            "settings": {"level": "full"},
        }
    )
    tids = [pid + i for i in range(threads)]
    for tid in tids:
        emit(
            {
                "event": "thread",
                "ts": ts,
                "pid": pid,
                "tid": tid,
                "ident": tid * 7,
                "name": f"worker-{tid - pid}",
                "daemon": False,
            }
        )
    prims = [f"{pid}.{i}" for i in range(1, 41)]
    for i, prim in enumerate(prims):
        emit(
            {
                "event": "created",
                "ts": ts,
                "pid": pid,
                "tid": pid,
                "prim": prim,
                "kind": "RLock" if i % 3 == 0 else "Lock",
                "name": None,
                "site": f"/srv/app/models/module{i % 7}.py:{10 + i}",
                "func": "__init__",
            }
        )
    cond = f"{pid}.99"
    emit(
        {
            "event": "created",
            "ts": ts,
            "pid": pid,
            "tid": pid,
            "prim": cond,
            "kind": "Condition",
            "name": "jobs",
            "site": "/srv/app/queue.py:12",
            "func": "__init__",
            "lock": prims[0],
        }
    )
    sites = [f"/srv/app/service/handlers{i % 9}.py:{100 + 3 * i}" for i in range(60)]
    funcs = [f"Handler{i % 9}.handle" for i in range(60)]

    def acquire(tid: int, prim: str, depth: int, contended: bool, site: int) -> None:
        wait = rnd.randrange(1000, 3_000_000) if contended else 0
        emit(
            {
                "event": "acquire",
                "ts": ts,
                "pid": pid,
                "tid": tid,
                "prim": prim,
                "depth": depth,
                "ok": True,
                "contended": contended,
                "wait_ns": wait,
                "blocked_by": rnd.choice(tids) if contended else None,
                "blocking": True,
                "timeout": None,
                "site": sites[site],
                "func": funcs[site],
            }
        )

    def release(tid: int, prim: str, depth: int) -> None:
        ev: dict[str, object] = {
            "event": "release",
            "ts": ts,
            "pid": pid,
            "tid": tid,
            "prim": prim,
            "depth": depth,
        }
        if depth == 0:
            ev["hold_ns"] = rnd.randrange(300, 400_000)
        emit(ev)

    with open(path, "wb") as fh:
        while n < events:
            ts += rnd.randrange(200, 5000)
            tid = rnd.choice(tids)
            r = rnd.random()
            p = rnd.randrange(len(prims))
            s = rnd.randrange(len(sites))
            if r < 0.70:  # a plain acquire/release pair, 10 % contended
                acquire(tid, prims[p], 1, rnd.random() < 0.10, s)
                release(tid, prims[p], 0)
            elif r < 0.85:  # nested: outer, inner (fixed order by index: no inversion)
                p = min(p, len(prims) - 2)  # the inner lock is always another one: q > p
                q = min(len(prims) - 1, p + 1 + rnd.randrange(3))
                acquire(tid, prims[p], 1, False, s)
                acquire(tid, prims[q], 1, rnd.random() < 0.05, (s + 1) % len(sites))
                release(tid, prims[q], 0)
                release(tid, prims[p], 0)
            elif r < 0.93:  # recursive RLock
                rl = prims[3 * rnd.randrange(len(prims) // 3)]
                acquire(tid, rl, 1, False, s)
                acquire(tid, rl, 2, False, s)
                release(tid, rl, 1)
                release(tid, rl, 0)
            else:  # condition: notify, or wait/wake with the lock's release/re-acquire
                acquire(tid, prims[0], 1, False, 0)
                if rnd.random() < 0.5:
                    emit(
                        {
                            "event": "notify",
                            "ts": ts,
                            "pid": pid,
                            "tid": tid,
                            "prim": cond,
                            "n": 1,
                            "waiters": rnd.randrange(0, 2),
                            "woken": [],
                            "site": sites[1],
                            "func": funcs[1],
                        }
                    )
                    release(tid, prims[0], 0)
                else:
                    emit(
                        {
                            "event": "cond_wait",
                            "ts": ts,
                            "pid": pid,
                            "tid": tid,
                            "prim": cond,
                            "lock": prims[0],
                            "saved_depth": 1,
                            "timeout": None,
                            "site": sites[2],
                            "func": funcs[2],
                        }
                    )
                    release(tid, prims[0], 0)
                    ts += 1000
                    emit(
                        {
                            "event": "acquire",
                            "ts": ts,
                            "pid": pid,
                            "tid": tid,
                            "prim": prims[0],
                            "depth": 1,
                            "ok": True,
                            "contended": False,
                            "wait_ns": 0,
                            "blocked_by": None,
                            "blocking": True,
                            "timeout": None,
                            "restored": True,
                            "site": sites[2],
                            "func": funcs[2],
                        }
                    )
                    emit(
                        {
                            "event": "cond_wake",
                            "ts": ts,
                            "pid": pid,
                            "tid": tid,
                            "prim": cond,
                            "waited_ns": 1000,
                            "notified": True,
                            "reacquire_ns": 0,
                            "site": sites[2],
                            "func": funcs[2],
                        }
                    )
                    release(tid, prims[0], 0)
            if len(out) >= 100_000:
                fh.write(b"\n".join(out) + b"\n")
                out.clear()
        emit(
            {
                "event": "session_end",
                "ts": ts,
                "pid": pid,
                "tid": pid,
                "dropped": 0,
                "written": n + 1,
            }
        )
        fh.write(b"\n".join(out) + b"\n")
    return n


def generate(directory: str, events: int, processes: int, threads: int) -> int:
    """Write (or reuse) the log set; returns its number of events."""
    os.makedirs(directory, exist_ok=True)
    stamp = os.path.join(directory, "bench.json")
    want = {"events": events, "processes": processes, "threads": threads}
    if os.path.exists(stamp):
        with open(stamp) as fh:
            have = json.load(fh)
        if {k: have.get(k) for k in want} == want:
            return int(have["written"])
    for name in os.listdir(directory):
        if name.startswith("tracedsync-"):
            os.remove(os.path.join(directory, name))
    written = 0
    for i in range(processes):
        pid = 10_000 + i * 1000
        path = os.path.join(directory, f"tracedsync-{pid}.jsonl")
        written += _write_process(path, pid, events // processes, threads, seed=i)
    with open(stamp, "w") as fh:
        json.dump({**want, "written": written}, fh)
    return written


RECORD = textwrap.dedent(
    """
    import sys, threading, random
    import tracedsync
    tracedsync.configure(log_dir=sys.argv[1])
    per_thread = int(sys.argv[2])
    locks = [tracedsync.Lock(name=f"hot-{i}") for i in range(4)]
    outer = tracedsync.RLock(name="outer")
    cond = tracedsync.Condition(name="ready")
    start = threading.Barrier(8)

    def work(k):
        rnd = random.Random(k)
        start.wait()
        n = 0
        while n < per_thread:
            lock = locks[rnd.randrange(4)]
            if n % 16 == 0:
                with outer:  # a little nesting, always in the same order
                    with lock:
                        n += 2
                n += 2
            elif n % 250 == 1:
                with cond:
                    cond.notify_all()
                n += 3
            else:
                with lock:
                    pass
                n += 2

    threads = [threading.Thread(target=work, args=(k,), name=f"worker-{k}") for k in range(8)]
    for t in threads: t.start()
    for t in threads: t.join()
    """
)


def record(directory: str, events: int) -> int:
    """Record (or reuse) the real log: 8 threads hammering a few locks, in one process."""
    os.makedirs(directory, exist_ok=True)
    stamp = os.path.join(directory, "bench.json")
    if os.path.exists(stamp):
        with open(stamp) as fh:
            have = json.load(fh)
        if have.get("events") == events:
            return int(have["written"])
    for name in os.listdir(directory):
        if name.startswith("tracedsync-"):
            os.remove(os.path.join(directory, name))
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRACEDSYNC_")}
    subprocess.run([sys.executable, "-c", RECORD, directory, str(events // 8)], check=True,
                   env=env)
    written = 0
    for name in os.listdir(directory):
        if name.startswith("tracedsync-"):
            with open(os.path.join(directory, name), "rb") as fh:
                written += sum(1 for _ in fh)
    with open(stamp, "w") as fh:
        json.dump({"events": events, "written": written}, fh)
    return written


MEASURE = textwrap.dedent(
    """
    import json, resource, subprocess, sys, time
    t0 = time.perf_counter()
    proc = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    wall = time.perf_counter() - t0
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    print(json.dumps({"wall": wall, "cpu": ru.ru_utime + ru.ru_stime,
                      "rss_mib": ru.ru_maxrss / 1024, "status": proc.returncode,
                      "stderr": proc.stderr.decode()[-500:]}))
    """
)


ALONE = textwrap.dedent(
    """
    import json, os, resource, sys
    from tracedsync.analysis.analyze import analyze
    from tracedsync.analysis.report import build_report
    c0 = os.times()
    report = build_report(analyze(sys.argv[1:], jobs=1))
    c1 = os.times()
    print(json.dumps({"cpu": sum(c1[:2]) - sum(c0[:2]), "events": report.totals["events"]}))
    """
)


def _env(pure: bool) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRACEDSYNC_")}
    if pure:
        env["TRACEDSYNC_PURE_PYTHON"] = "1"
    return env


def measure(paths: list[str], out: str, *args: str, pure: bool = False) -> dict[str, float]:
    """Run ``tracedsync analyze`` in a fresh process, writing ``out``; its wall, CPU and
    largest RSS."""
    cmd = [sys.executable, "-m", "tracedsync", "analyze", *paths, "--no-progress",
           "--fail-on", "never", "-o", out, *args]
    proc = subprocess.run([sys.executable, "-c", MEASURE, *cmd], capture_output=True,
                          check=True, env=_env(pure))
    res: dict[str, float] = json.loads(proc.stdout)
    if res["status"] not in (0, 1):
        raise SystemExit(f"analyze failed: {res['stderr']}")
    os.remove(out)
    return res


def alone(paths: list[str], pure: bool = False, runs: int = 2) -> float:
    """CPU seconds of analyze() and build_report() alone (no start, imports or rendering)."""
    return min(
        json.loads(subprocess.run([sys.executable, "-c", ALONE, *paths], capture_output=True,
                                  check=True, env=_env(pure)).stdout)["cpu"]
        for _ in range(runs)
    )


def best(
    paths: list[str], out: str, *args: str, pure: bool = False, runs: int = 2
) -> dict[str, float]:
    """The run with the least CPU of ``runs`` (``best_wall``: the least wall time of all)."""
    results = [measure(paths, out, *args, pure=pure) for _ in range(runs)]
    res = dict(min(results, key=lambda r: r["cpu"]))
    res["best_wall"] = min(r["wall"] for r in results)
    return res


def load() -> str:
    """The load averages (1, 5, 15 minutes), if the system gives them."""
    try:
        return "load average " + ", ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:  # pragma: no cover - not on every system
        return "load average unknown"


def line(what: str, events: int, r: dict[str, float]) -> str:
    return (
        f"  {what:<34} {r['wall']:6.2f} s wall {r['cpu']:6.2f} CPU-s "
        f"{events / r['cpu'] / 1e6:5.2f} M events/CPU-s  {r['rss_mib']:5.0f} MiB"
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--events", type=int, default=2_000_000)
    ap.add_argument("--sets", default="synthetic,real", help="synthetic, real or both")
    ap.add_argument("--processes", type=int, default=8, help="of the synthetic set")
    ap.add_argument("--threads", type=int, default=8, help="per process, synthetic set")
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--runs", type=int, default=2, help="best of (by CPU)")
    ap.add_argument("--dir", default="bench-results/analyze-logs")
    args = ap.parse_args(argv)
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs; best of {args.runs}")
    spec = importlib.util.find_spec("tracedsync")  # (not imported here: it wires a recorder)
    if spec is not None and spec.submodule_search_locations:
        compileall.compile_dir(next(iter(spec.submodule_search_locations)), quiet=1)
    for name in args.sets.split(","):
        print(f"{name}: {load()}")
        t0 = time.perf_counter()
        d = os.path.join(args.dir, f"{name}-{args.events}")
        if name == "synthetic":
            events = generate(d, args.events, args.processes, args.threads)
        else:
            events = record(d, args.events)
        files = [n for n in os.listdir(d) if n.startswith("tracedsync-")]
        size = sum(os.path.getsize(os.path.join(d, n)) for n in files)
        print(
            f"{name}: {events:,} events, {size / 2**20:.0f} MiB in {len(files)} file(s) "
            f"({time.perf_counter() - t0:.1f} s to make or reuse)"
        )
        out = os.path.join(args.dir, "out.tmp")  # a real file: writing the output counts
        cpu = alone([d], runs=args.runs)
        print(f"  {'analysis alone (native)':<34} {'':>13} {cpu:6.2f} CPU-s "
              f"{events / cpu / 1e6:5.2f} M events/CPU-s")
        if name == "real" or args.events <= 2_000_000:
            cpu = alone([d], pure=True, runs=args.runs)
            print(f"  {'analysis alone (pure Python)':<34} {'':>13} {cpu:6.2f} CPU-s "
                  f"{events / cpu / 1e6:5.2f} M events/CPU-s")
        json1 = best([d], out, "-j1", "-f", "json", runs=args.runs)
        print(line("-j1 -f json (native)", events, json1))
        if name == "real" or args.events <= 2_000_000:
            pure = best([d], out, "-j1", "-f", "json", pure=True, runs=args.runs)
            print(line("-j1 -f json (pure Python)", events, pure))
        perf = best([d], out, "-j1", "-f", "perfetto", runs=args.runs)
        print(line("-j1 -f perfetto", events, perf)
              + f"  ({perf['wall'] / json1['wall']:.2f}x json wall, "
              f"{perf['cpu'] / json1['cpu']:.2f}x CPU)")
        jn = best([d], out, f"-j{args.jobs}", "-f", "json", runs=args.runs)
        print(line(f"-j{args.jobs} -f json", events, jn)
              + f"  (least wall of {args.runs}: {jn['best_wall']:.2f} s)")
        print(f"  {load()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
