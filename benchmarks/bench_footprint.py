"""What a traced program pays when it is not busy locking: memory, idle CPU, start-up.

    python benchmarks/bench_footprint.py

* Memory: 4,000,000 lock operations (2,000,000 ``with lock``) at level full with the default
  settings, the log written to disk by the flusher as in real use: peak RSS of the process
  against the same program on ``threading.Lock``, and whether anything was dropped (the
  session_end's count and the log's ``dropped`` events). In one thread, and in four threads
  that do nothing but lock (on two cores the four produce records faster than one flusher can
  format and write them: past the budget, records are dropped and counted).
* Idle: after recording and a flush, a 2 s sleep: CPU time of the process during the sleep,
  traced against raw (the flusher must sleep until something is recorded).

Each figure comes from a fresh interpreter, best of a few runs.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import textwrap

MEMORY = """
import resource, sys, threading, time
traced = sys.argv[1] == "traced"
if traced:
    import tracedsync
    lock = tracedsync.Lock()
else:
    lock = threading.Lock()
def work(n):
    for _ in range(n):
        with lock:
            pass
nthreads = int(sys.argv[2])
threads = [threading.Thread(target=work, args=(2_000_000 // nthreads,)) for _ in range(nthreads)]
for t in threads: t.start()
for t in threads: t.join()
if traced:
    tracedsync.flush()
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""

IDLE = """
import resource, sys, threading, time
traced = sys.argv[1] == "traced"
if traced:
    import tracedsync
    lock = tracedsync.Lock()
else:
    lock = threading.Lock()
for _ in range(1000):
    with lock:
        pass
if traced:
    tracedsync.flush()
time.sleep(0.5)  # the flusher's last interval passes
r0 = resource.getrusage(resource.RUSAGE_SELF)
time.sleep(2.0)
r1 = resource.getrusage(resource.RUSAGE_SELF)
print((r1.ru_utime - r0.ru_utime + r1.ru_stime - r0.ru_stime) * 1e3)
"""


def _run(prog: str, mode: str, log_dir: str, *args: str) -> str:
    env = dict(os.environ, TRACEDSYNC_LOG_DIR=log_dir)
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(prog), mode, *args], env=env,
                         check=True, capture_output=True, text=True)
    return out.stdout.strip()


def _dropped(log_dir: str) -> int:
    n = 0
    for name in os.listdir(log_dir):
        with open(os.path.join(log_dir, name), encoding="utf-8") as f:
            for line in f:
                if '"dropped"' in line:
                    ev = json.loads(line)
                    if ev.get("event") == "dropped":
                        n += ev.get("count", 0)
                    elif ev.get("event") == "session_end":
                        n += ev.get("dropped", 0)
    return n


def main() -> None:
    with tempfile.TemporaryDirectory() as logs:
        for nthreads in ("1", "4"):
            raw = min(int(_run(MEMORY, "raw", logs, nthreads)) for _ in range(2))
            traced = []
            dropped = []
            for i in range(2):
                d = os.path.join(logs, f"m{nthreads}-{i}")
                traced.append(int(_run(MEMORY, "traced", d, nthreads)))
                dropped.append(_dropped(d))
            print(f"4M lock operations ({nthreads} thread(s)) at full: peak RSS raw "
                  f"{raw / 1024:.1f} MiB, traced {min(traced) / 1024:.1f} MiB "
                  f"(+{(min(traced) - raw) / 1024:.1f} MiB); records dropped {dropped}")
        raw_cpu = min(float(_run(IDLE, "raw", logs)) for _ in range(3))
        traced_cpu = min(float(_run(IDLE, "traced", os.path.join(logs, f"i{i}")))
                         for i in range(3))
        print(f"idle 2 s sleep after recording: CPU raw {raw_cpu:.2f} ms, traced "
              f"{traced_cpu:.2f} ms (+{traced_cpu - raw_cpu:.2f} ms)")
    print(f"Python {sys.version.split()[0]}")


if __name__ == "__main__":
    main()
