"""Stress: many threads on a mix of every traced primitive; the logs must account for everything.

    python stress/stress_mix.py [--threads 64] [--ops 1000000] [--level full|contention]
                                [--overflow flush|drop --buffer-limit N]

The workload runs in a child process (so its log is complete when it exits), then this script
reads the log back and checks, per primitive and per thread:

* every successful lock acquire is matched by a release, and depths go up and down by one;
* the `stats` counters at exit equal the numbers of events (at `full`), and equal the number
  of operations the workers counted (at every level);
* nothing is lost: no `dropped` event unless overflow="drop", and then events written plus the
  dropped count equal what was recorded, exactly.

Exit status 0 when every check holds; the failures are printed otherwise.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import subprocess
import sys
import tempfile
import time
from typing import Any

WORKER = r'''
import json, os, sys, threading
import tracedsync

threads, ops = int(sys.argv[1]), int(sys.argv[2])
lock = tracedsync.Lock(name="lock")
rlock = tracedsync.RLock(name="rlock")
cond = tracedsync.Condition(name="cond")
sem = tracedsync.BoundedSemaphore(4, name="sem")
event = tracedsync.Event(name="event")
barrier = tracedsync.Barrier(threads, name="barrier")
counts = collections = {"lock": 0, "rlock": 0, "rlock_nested": 0, "cond": 0, "sem": 0,
                        "event": 0, "barrier": 0}
count_lock = threading.Lock()      # untraced on purpose: the workers' own bookkeeping
per_thread = ops // threads
shared = [0]

def work(i):
    mine = dict.fromkeys(counts, 0)
    barrier.wait()
    mine["barrier"] += 1
    for k in range(per_thread):
        op = (k + i) % 6
        if op == 0:
            with lock:
                shared[0] += 1
            mine["lock"] += 1
        elif op == 1:
            with rlock:
                with rlock:
                    shared[0] += 1
            mine["rlock"] += 1
            mine["rlock_nested"] += 1
        elif op == 2:
            with cond:
                cond.notify()
            mine["cond"] += 1
        elif op == 3:
            with sem:
                pass
            mine["sem"] += 1
        elif op == 4:
            event.set() if k % 2 else event.clear()
            mine["event"] += 1
        else:
            if rlock.acquire(timeout=5):
                rlock.release()
                mine["rlock"] += 1
    with count_lock:
        for key, v in mine.items():
            counts[key] += v

ts = [threading.Thread(target=work, args=(i,), name=f"w{i}") for i in range(threads)]
for t in ts:
    t.start()
for t in ts:
    t.join()
print(json.dumps({"counts": counts, "prims": {
    "lock": lock.statistics().prim, "rlock": rlock.statistics().prim,
    "cond": cond.statistics().prim, "cond_lock": cond._lock.statistics().prim,
    "sem": sem.statistics().prim, "event": event.statistics().prim,
    "barrier": barrier.statistics().prim}}))
'''


def _read(log_dir: str) -> list[dict[str, Any]]:
    events = []
    for name in sorted(os.listdir(log_dir)):
        with open(os.path.join(log_dir, name), "rb") as fh:
            for line in fh:
                events.append(json.loads(line))
    return events


def check(result: dict[str, Any], events: list[dict[str, Any]], level: str,
          overflow: str) -> list[str]:
    problems: list[str] = []
    counts, prims = result["counts"], result["prims"]
    by_prim: dict[str, list[dict[str, Any]]] = collections.defaultdict(list)
    for ev in events:
        if "prim" in ev:
            by_prim[ev["prim"]].append(ev)
    stats = {ev["prim"]: ev for ev in events if ev["event"] == "stats"}
    dropped = sum(ev.get("count", 0) for ev in events if ev["event"] == "dropped")
    if dropped and overflow != "drop":
        problems.append(f"{dropped} events dropped with overflow={overflow}")

    # Lock and RLock: counters equal to the workers' own counts, at every level.
    expect = {"lock": counts["lock"],
              "rlock": counts["rlock"] + counts["rlock_nested"],
              "cond_lock": counts["cond"]}
    for key, n in expect.items():
        st = stats.get(prims[key])
        if st is None:
            problems.append(f"no stats for {key}")
        elif st["acquisitions"] != n:
            problems.append(f"{key}: stats say {st['acquisitions']} acquisitions, workers did {n}")
    sem_st = stats.get(prims["sem"])
    if sem_st is not None and sem_st.get("releases") != counts["sem"]:
        problems.append(f"sem: {sem_st.get('releases')} releases in stats, workers did "
                        f"{counts['sem']}")

    if level == "full" and not dropped:
        # Every acquire matched by a release; depths consistent per (thread, lock).
        for key in ("lock", "rlock", "cond_lock"):
            depth: dict[int, int] = collections.defaultdict(int)
            acquires = releases = 0
            for ev in by_prim[prims[key]]:
                if ev["event"] == "acquire" and ev["ok"]:
                    acquires += 1
                    if key != "lock" and ev["depth"] != depth[ev["tid"]] + 1:
                        problems.append(f"{key}: depth jumped to {ev['depth']} at ts {ev['ts']}")
                    depth[ev["tid"]] = ev["depth"]
                elif ev["event"] == "release":
                    releases += 1
                    if key != "lock":
                        if ev["depth"] != depth[ev["tid"]] - 1:
                            problems.append(f"{key}: release depth {ev['depth']} after "
                                            f"{depth[ev['tid']]} at ts {ev['ts']}")
                        depth[ev["tid"]] = ev["depth"]
            if acquires != releases:
                problems.append(f"{key}: {acquires} acquires but {releases} releases")
            if acquires != expect[key]:
                problems.append(f"{key}: {acquires} acquire events, workers did {expect[key]}")
        n_sem = sum(1 for ev in by_prim[prims["sem"]] if ev["event"] == "sem_acquire"
                    and ev["ok"])
        if n_sem != counts["sem"]:
            problems.append(f"sem: {n_sem} sem_acquire events, workers did {counts['sem']}")
        n_evt = sum(1 for ev in by_prim[prims["event"]]
                    if ev["event"] in ("event_set", "event_clear"))
        if n_evt != counts["event"]:
            problems.append(f"event: {n_evt} set/clear events, workers did {counts['event']}")
        n_bar = sum(1 for ev in by_prim[prims["barrier"]] if ev["event"] == "barrier_wait")
        if n_bar != counts["barrier"]:
            problems.append(f"barrier: {n_bar} waits logged, workers did {counts['barrier']}")
    if overflow == "drop":
        end = [ev for ev in events if ev["event"] == "session_end"]
        if not end:
            problems.append("no session_end")
        elif end[0]["dropped"] != dropped:
            problems.append(f"session_end says {end[0]['dropped']} dropped, dropped events "
                            f"say {dropped}")
    return problems


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=64)
    ap.add_argument("--ops", type=int, default=1_000_000)
    ap.add_argument("--level", default="full", choices=["full", "contention"])
    ap.add_argument("--overflow", default="flush", choices=["flush", "drop"])
    ap.add_argument("--buffer-limit", type=int, default=100_000)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="tracedsync-stress-") as log_dir:
        env = dict(os.environ, TRACEDSYNC_LOG_DIR=log_dir, TRACEDSYNC_LEVEL=args.level,
                   TRACEDSYNC_OVERFLOW=args.overflow,
                   TRACEDSYNC_BUFFER_LIMIT=str(args.buffer_limit),
                   TRACEDSYNC_MAX_LOG_BYTES="none")  # every event is counted: no rotation
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, "-c", WORKER, str(args.threads), str(args.ops)],
                              env=env, capture_output=True, text=True, timeout=1800)
        elapsed = time.perf_counter() - t0
        if proc.returncode != 0:
            print(proc.stdout, proc.stderr, sep="\n")
            return 1
        result = json.loads(proc.stdout)
        events = _read(log_dir)
        problems = check(result, events, args.level, args.overflow)
        dropped = sum(ev.get("count", 0) for ev in events if ev["event"] == "dropped")
        print(f"{args.threads} threads, {sum(result['counts'].values())} operations, "
              f"level={args.level}, overflow={args.overflow}: {len(events)} events written, "
              f"{dropped} dropped, {elapsed:.1f} s")
        for p in problems[:30]:
            print("  FAIL:", p)
        print("OK" if not problems else f"{len(problems)} problem(s)")
        return 0 if not problems else 1


if __name__ == "__main__":
    raise SystemExit(main())
