"""Throughput of ``tracedsync analyze``: events/s and peak memory on a synthetic log set.

    python benchmarks/bench_analyze.py --events 10000000 --jobs 2

The generator writes logs shaped like the recorder's (same keys, same order, realistic sites and
ids): several processes, several threads each, mostly acquire/release pairs (some nested, some
contended, a few failed), condition waits and notifies, and the usual headers and counters. The
set is cached in ``--dir`` and reused when it already holds the requested number of events.

It reports the wall time of the analysis (reading, aggregating, findings and the report; no
rendering), events/s overall and per job, events per CPU-second (user+system time of this
process and its workers: the per-core figure, less sensitive to other load), the peak RSS of
the main process and of the largest worker (RUSAGE_CHILDREN), and their sum bound
(main + jobs x worker) for the total.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import sys
import time

import orjson

from tracedsync.analysis.analyze import analyze
from tracedsync.analysis.report import build_report


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


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--events", type=int, default=2_000_000)
    ap.add_argument("--processes", type=int, default=8)
    ap.add_argument("--threads", type=int, default=8)
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--dir", default="bench-results/analyze-logs")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    events = generate(args.dir, args.events, args.processes, args.threads)
    gen = time.perf_counter() - t0
    size = sum(os.path.getsize(os.path.join(args.dir, n)) for n in os.listdir(args.dir))
    print(
        f"log set: {events:,} events, {size / 2**20:.0f} MiB in {args.processes} files "
        f"({gen:.1f} s to generate or reuse)"
    )
    c0 = os.times()
    t0 = time.perf_counter()
    agg = analyze([args.dir], jobs=args.jobs)
    t1 = time.perf_counter()
    report = build_report(agg)
    t2 = time.perf_counter()
    c1 = os.times()
    cpu = sum(c1[:4]) - sum(c0[:4])  # user+system, this process and its (joined) workers
    main_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    worker_rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    counted = report.totals["events"]
    rate = counted / (t2 - t0)
    print(
        f"python {sys.version.split()[0]}, jobs {args.jobs}: analysed {counted:,} events in "
        f"{t2 - t0:.2f} s (scan+merge {t1 - t0:.2f} s, report {t2 - t1:.2f} s)"
    )
    print(
        f"throughput: {rate / 1e6:.2f} M events/s overall, {rate / args.jobs / 1e6:.2f} M "
        f"events/s per job; {counted / cpu / 1e6:.2f} M events per CPU-second "
        f"({cpu:.1f} s of CPU)"
    )
    print(
        f"peak RSS: main {main_rss:.0f} MiB, largest worker {worker_rss:.0f} MiB, "
        f"bound for the total {main_rss + args.jobs * worker_rss:.0f} MiB"
    )
    print(f"findings: {len(report.findings)}, problems: {report.problem_count}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
