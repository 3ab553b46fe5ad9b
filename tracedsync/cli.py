"""The ``tracedsync`` command line: one small function per subcommand."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any, NoReturn, TextIO

if TYPE_CHECKING:
    from .analysis.reader import Event

SHOWN_PROBLEMS = 20


def _cmd_summary(args: argparse.Namespace) -> int:
    """The short table; exit 0, or 2 on unusable input (as ``analyze``: no logs, nothing
    readable, a newer schema)."""
    from .analysis.reader import Problem, SchemaError, log_files, read_all
    from .analysis.summary import render_text, summarise

    problems: list[Problem] = []
    read = 0

    def counted(events: Iterator[Event]) -> Iterator[Event]:
        nonlocal read
        for ev in events:
            read += 1
            yield ev

    try:
        if not log_files(args.paths):
            print("tracedsync: no tracedsync logs found (expected tracedsync-<pid>.jsonl files)",
                  file=sys.stderr)
            return 2
        summary = summarise(counted(read_all(args.paths, problems)))
    except FileNotFoundError as exc:
        print(f"tracedsync: no such file or directory: {exc}", file=sys.stderr)
        return 2
    except SchemaError as exc:
        print(f"tracedsync: {exc}", file=sys.stderr)
        return 2
    _print_problems([(p.path, p.line, p.reason) for p in problems], len(problems))
    if not read:
        print(f"tracedsync: no events could be read from the log files ({len(problems)} "
              "unusable line(s))", file=sys.stderr)
        return 2
    if not summary:
        print("no traced primitives in these logs")
        return 0
    print(render_text(summary, _racing_rmw(args.paths) if _has_rmw(summary) else set()))
    return 0


def _has_rmw(summary: dict[str, Any]) -> bool:
    return any(s.rmw_sites for s in summary.values())


def _racing_rmw(paths: Sequence[str]) -> set[tuple[str, str]]:
    """(prim, site) of the read-modify-writes that another writer overlapped: analyze's rule
    (findings/rmw.py), so that the summary claims a lost update only where one could be."""
    from .analysis.analyze import analyze
    from .analysis.findings import find_all

    agg = analyze(list(paths), jobs=1)
    return {(f.prims[0].split("@", 1)[0], f.call_sites[0])
            for f in find_all(agg) if f.kind == "rmw" and f.prims and f.call_sites}


def _print_problems(shown: list[tuple[str, int, str]], count: int) -> None:
    """The first `SHOWN_PROBLEMS` unusable lines, then how many more there were."""
    for path, line, reason in shown[:SHOWN_PROBLEMS]:
        print(f"tracedsync: skipped {path}:{line}: {reason}", file=sys.stderr)
    if count > SHOWN_PROBLEMS:
        print(f"tracedsync: ... {count - SHOWN_PROBLEMS} more unusable line(s)", file=sys.stderr)


def _cmd_analyze(args: argparse.Namespace) -> int:
    """Statistics, findings and timelines; exit 0 (clean), 1 (findings), 2 (unusable input)."""
    try:
        return _analyze(args)
    except KeyboardInterrupt:
        print("tracedsync: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # no traceback for any input: say what happened, briefly
        print(f"tracedsync: analysis failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2


def _analyze(args: argparse.Namespace) -> int:
    if (args.long_hold is not None and args.long_hold <= 0) or (
        args.long_wait is not None and args.long_wait <= 0
    ):
        print("tracedsync: --long-hold and --long-wait must be > 0 ms", file=sys.stderr)
        return 2
    progress = args.progress if args.progress is not None else sys.stderr.isatty()
    with contextlib.ExitStack() as stack:
        trace_dir = trace_file = None
        if args.format == "perfetto":  # drawn while scanning: the logs are read once
            import tempfile

            trace_file = _streamed_trace(args)
            if trace_file is not None:
                stack.callback(_remove, trace_file)  # (renamed to the output when done)
            else:  # parts drawn in parallel, copied into the output at the end
                trace_dir = stack.enter_context(
                    tempfile.TemporaryDirectory(prefix="tracedsync-"))
        return _analyze_into(args, progress, trace_dir, trace_file)


def _streamed_trace(args: argparse.Namespace) -> str | None:
    """A serial scan draws the trace straight into the output (render_perfetto): a new file
    beside it, renamed to it at the end, holding the header; None when the output is not a
    plain local file or the scan may run in parallel."""
    import tempfile

    out = args.output
    if args.jobs not in (0, 1) or args.scheduler or out in (None, "-") or "://" in out:
        return None
    if args.jobs == 0 and not _small(args.paths):  # (as analyze decides: serial if small)
        return None
    if os.path.lexists(out) and (os.path.islink(out) or not os.path.isfile(out)):
        return None
    from .analysis.render_perfetto import HEADER

    where = os.path.dirname(os.path.abspath(out))
    try:
        fd, path = tempfile.mkstemp(dir=where, prefix=f".{os.path.basename(out)}.", suffix=".tmp")
    except OSError:
        return None  # (the output's own open says why, later)
    with os.fdopen(fd, "wb") as fh:
        fh.write(HEADER)
    mask = os.umask(0)
    os.umask(mask)
    os.chmod(path, 0o666 & ~mask)  # as the output opened for writing would be
    return path


def _small(paths: list[str]) -> bool:
    """Whether ``analyze(paths, jobs=0)`` scans serially (too little input for workers)."""
    from .analysis.analyze import AUTO_SERIAL_BYTES, is_aggregate_file
    from .analysis.inputs import log_files, size

    try:
        logs = log_files([p for p in paths if not is_aggregate_file(p)])
        return sum(size(p) for p in logs) < AUTO_SERIAL_BYTES
    except Exception:  # (analyze says what is wrong with the input)
        return False


def _remove(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.remove(path)


def _analyze_into(
    args: argparse.Namespace, progress: bool, trace_dir: str | None, trace_file: str | None
) -> int:
    import gc

    # Millions of objects, no reference cycles, and the process ends right after: the cyclic
    # collector would only walk them again and again (a fifth of the time).
    gc.disable()
    from .analysis.analyze import NoInputError, analyze, save_aggregate
    from .analysis.findings import Options, severity_rank
    from .analysis.reader import SchemaError
    from .analysis.renderers import get_renderer
    from .analysis.report import build_report
    from .analysis.suppress import read_baseline, write_baseline

    try:
        with _scheduler(args.scheduler, args.jobs) as executor:
            agg = analyze(
                args.paths,
                jobs=args.jobs,
                progress=progress,
                executor=executor,
                trace_dir=trace_dir,
                trace_file=trace_file,
            )
    except _NoDaskError as exc:
        print(f"tracedsync: {exc}", file=sys.stderr)
        return 2
    except FileNotFoundError as exc:
        print(f"tracedsync: no such file or directory: {exc}", file=sys.stderr)
        return 2
    except (SchemaError, NoInputError) as exc:
        print(f"tracedsync: {exc}", file=sys.stderr)
        return 2
    for path, line, reason in agg.problems[:SHOWN_PROBLEMS]:
        print(f"tracedsync: skipped {path}:{line}: {reason}", file=sys.stderr)
    if agg.problem_count > SHOWN_PROBLEMS:
        print(
            f"tracedsync: ... {agg.problem_count - SHOWN_PROBLEMS} more unusable line(s)",
            file=sys.stderr,
        )
    if args.save_aggregate:
        save_aggregate(agg, args.save_aggregate)
    chosen = args.long_hold is not None or args.long_wait is not None
    keys: frozenset[str] = frozenset()
    if args.baseline:
        try:
            keys = read_baseline(args.baseline)
        except (OSError, ValueError) as exc:
            print(f"tracedsync: --baseline: {exc}", file=sys.stderr)
            return 2
    options = Options(
        long_hold_ns=int((args.long_hold or DEFAULT_LONG_MS) * 1e6),
        long_wait_ns=int((args.long_wait or DEFAULT_LONG_MS) * 1e6),
        long_severity="warning" if chosen else "info",
        baseline=keys,
    )
    report = build_report(agg, options)
    if args.write_baseline:
        known = [*report.findings,
                 *(f for f in report.suppressed if f.details.get("suppressed") == "baseline")]
        n = write_baseline(args.write_baseline, known)
        print(f"tracedsync: wrote {n} finding(s) to {args.write_baseline}", file=sys.stderr)
    extra: dict[str, Any] = {}
    if trace_dir is not None:
        extra["parts"] = sorted(
            os.path.join(trace_dir, n) for n in os.listdir(trace_dir) if n.endswith(".part")
        )
    if trace_file is not None:
        from .analysis.render_perfetto import first_comma

        extra["streamed"] = True
        extra["events"] = first_comma(trace_file)
    renderer = get_renderer(args.format, top=args.top, **extra)
    if trace_file is not None:
        with open(trace_file, "a", encoding="utf-8") as out:
            renderer.render(report, out)
        os.replace(trace_file, args.output)
    else:
        with _output(args.output) as out:
            renderer.render(report, out)
    worst = report.worst()
    if _KEEP is not None:
        _KEEP.append((agg, report))
    failed = worst is not None and args.fail_on != "never"
    if failed and severity_rank(worst) >= severity_rank(args.fail_on):  # type: ignore[arg-type]
        return 1
    return 0


class _NoDaskError(Exception):
    """--scheduler without dask.distributed installed."""


@contextlib.contextmanager
def _scheduler(address: str | None, jobs: int) -> Iterator[Any]:
    """A Dask client for ``--scheduler`` (``local``: a LocalCluster of this machine), or None."""
    if not address:
        yield None
        return
    try:
        import logging

        from distributed import Client, LocalCluster
    except ImportError as exc:
        raise _NoDaskError(
            "--scheduler needs dask.distributed: pip install 'tracedsync[dask]'"
        ) from exc
    if address == "local":
        workers = jobs if jobs > 0 else (os.cpu_count() or 1)
        with LocalCluster(  # type: ignore[no-untyped-call]
            n_workers=workers,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            silence_logs=logging.ERROR,
        ) as cluster, Client(cluster) as client:  # type: ignore[no-untyped-call]
            yield client
        return
    with Client(address) as client:  # type: ignore[no-untyped-call]
        yield client


@contextlib.contextmanager
def _output(path: str | None) -> Iterator[TextIO]:
    if path is None or path == "-":
        yield sys.stdout
        sys.stdout.flush()
        return
    with open(path, "w", encoding="utf-8") as fh:
        yield fh


DEFAULT_LONG_MS = 100.0
"""--long-hold and --long-wait when not given (their findings are then info)."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tracedsync",
        description="Instrumented synchronization primitives: read and analyse their logs.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("summary", help="per-primitive totals read back from logs")
    p.add_argument("paths", nargs="+", help="log files or directories of them")
    p.set_defaults(func=_cmd_summary)
    _analyze_parser(sub)
    _run_parser(sub)
    return parser


def _run_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    # Listed for --help only: main() hands "run ..." to the runner before argparse sees it,
    # since the program's own arguments must not be parsed as ours.
    p = sub.add_parser(
        "run",
        help="run a Python program (script.py or -m module) with tracing on, then summarise "
        "(tracedsync run --help)",
        add_help=False,
    )
    p.add_argument("argv", nargs=argparse.REMAINDER)
    p.set_defaults(func=_cmd_run)


def _cmd_run(args: argparse.Namespace) -> int:
    from ._run.runner import main as run_main

    return run_main(args.argv)


def _analyze_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "analyze",
        help="statistics, findings (deadlocks, lock-order inversions, lost wake-ups...) and "
        "timelines from logs",
        description="Analyse tracedsync logs. Exit status: 0 nothing found at or above "
        "--fail-on, 1 findings at or above it, 2 unusable input.",
    )
    p.add_argument(
        "paths",
        nargs="+",
        help="log files, directories of them, or aggregates saved with --save-aggregate",
    )
    p.add_argument(
        "-f",
        "--format",
        choices=("text", "json", "perfetto", "html"),
        default="text",
        help="output format (default: text)",
    )
    p.add_argument("-o", "--output", metavar="FILE", help="write to FILE instead of stdout")
    p.add_argument(
        "-j",
        "--jobs",
        type=int,
        default=0,
        metavar="N",
        help="worker processes (default 0: one per CPU when the input is large); a large file "
        "is cut into byte ranges scanned in parallel",
    )
    p.add_argument(
        "--fail-on",
        choices=("info", "warning", "error", "never"),
        default="error",
        help="exit 1 if a finding is at least this severe (default: error)",
    )
    p.add_argument(
        "--long-hold",
        type=float,
        default=None,
        metavar="MS",
        help="report holds longer than MS milliseconds as warnings (default: over 100, as "
        "info)",
    )
    p.add_argument(
        "--long-wait",
        type=float,
        default=None,
        metavar="MS",
        help="report lock waits longer than MS milliseconds as warnings (default: over 100, "
        "as info)",
    )
    p.add_argument(
        "--baseline",
        metavar="FILE",
        help="leave out the findings listed in FILE (written by --write-baseline): they are "
        "listed as suppressed and never fail the run",
    )
    p.add_argument(
        "--write-baseline",
        metavar="FILE",
        help="write the findings of this run to FILE, to be given to --baseline later",
    )
    p.add_argument(
        "--top",
        type=int,
        default=15,
        metavar="N",
        help="rows per table in the text format (default 15)",
    )
    p.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="progress on stderr (default: only when stderr is a terminal)",
    )
    p.add_argument(
        "--save-aggregate",
        metavar="FILE",
        help="also save the merged aggregate, to combine with other shards later (a compact "
        "binary file; JSON if FILE ends with .json)",
    )
    p.add_argument(
        "--scheduler",
        metavar="ADDRESS",
        help="run the scans on a Dask distributed scheduler (tcp://host:8786), or 'local' to "
        "start a LocalCluster of --jobs workers here (needs: pip install 'tracedsync[dask]')",
    )
    p.set_defaults(func=_cmd_analyze)


_KEEP: list[Any] | None = None
"""A list while `console_main` runs: ``analyze`` leaves what it built there (see there)."""


def console_main() -> NoReturn:
    """The ``tracedsync`` command (and ``python -m tracedsync``): `main`, then exit.

    After ``analyze`` the process ends without freeing what the analysis built (millions of
    objects: a tenth of the command's CPU time went to freeing them at exit): the exit
    handlers run and the standard streams are flushed, then ``os._exit``. Called in-process,
    `main` keeps nothing.
    """
    global _KEEP
    _KEEP = []
    status = main()
    if _KEEP:
        import atexit

        atexit._run_exitfuncs()
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):  # closed, or a broken pipe: as at a normal exit
                pass
        os._exit(status)
    sys.exit(status)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["run"]:
        from ._run.runner import main as run_main

        return run_main(argv[1:])
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # bad arguments (2) or --help (0): a status, not an exception
        return exc.code if isinstance(exc.code, int) else 2
    return int(args.func(args))
