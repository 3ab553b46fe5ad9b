"""``tracedsync run [options] (script.py | -m module) [args...]``: run a program traced.

Like ``coverage run``: in this process, `patch()` first, then the program as ``__main__``
(``runpy``, with the program's ``sys.argv`` and ``sys.path[0]``), then its exit status.

Child processes. A forked child inherits the patch. Every other Python child (multiprocessing's
spawn and forkserver, ``subprocess`` runs of ``sys.executable``) starts with the environment set
here: ``TRACEDSYNC_PATCH=1``, the settings (``TRACEDSYNC_LOG_DIR``...) and a ``PYTHONPATH`` that
begins with ``_boot/``, whose ``sitecustomize`` patches at start-up and then runs the
``sitecustomize`` it hides, if any. All processes log to one directory.

The end. An ``atexit`` handler registered before the program starts (so it runs after the
program's own handlers, multiprocessing's joining of its children among them) writes this
process's counters, and prints to stderr the report of the whole directory.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import os
import runpy
import sys
from collections.abc import Mapping, Sequence
from types import TracebackType

from .._patch.scope import ENV_EXCLUDE, ENV_INCLUDE
from . import summary as _runsummary

BOOT_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "boot")
ENV_PATCH = "TRACEDSYNC_PATCH"
ENV_LOG_DIR = "TRACEDSYNC_LOG_DIR"
_VALUED = ("--log-dir", "--level", "--include", "--exclude")
_PKG_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep


def build_parser() -> argparse.ArgumentParser:
    """The options that come before the program."""
    p = argparse.ArgumentParser(
        prog="tracedsync run",
        usage="tracedsync run [options] (script.py | -m module) [args ...]",
        description="Run a Python program with threading (and multiprocessing) primitives "
        "traced, in this process and in its Python child processes; then print a summary.",
    )
    p.add_argument(
        "--log-dir",
        metavar="DIR",
        help="where the logs go (default: a new directory under ./tracedsync-logs/)",
    )
    p.add_argument(
        "--level",
        choices=("full", "contention", "off"),
        help="what is recorded (default: TRACEDSYNC_LEVEL, else full)",
    )
    p.add_argument(
        "--include",
        action="append",
        default=[],
        metavar="PATTERNS",
        help="also trace primitives created by these modules (comma-separated "
        "fnmatch patterns, e.g. 'queue,concurrent.futures.*')",
    )
    p.add_argument(
        "--exclude",
        action="append",
        default=[],
        metavar="PATTERNS",
        help="do not trace primitives created by these modules",
    )
    p.add_argument("--no-summary", action="store_true", help="print no summary at exit")
    return p


def split_argv(argv: Sequence[str]) -> tuple[list[str], str | None, str | None, list[str]]:
    """``(our options, script, module, program args)``: our options end at the program."""
    ours: list[str] = []
    i = 0
    while i < len(argv):
        a = argv[i]
        if a == "--":
            rest = list(argv[i + 1 :])
            return ours, (rest[0] if rest else None), None, rest[1:]
        if a == "-m":
            if i + 1 >= len(argv):
                return [*ours, a], None, None, []
            return ours, None, argv[i + 1], list(argv[i + 2 :])
        if a.startswith("-m") and not a.startswith("--"):
            return ours, None, a[2:], list(argv[i + 1 :])
        if a == "-" or not a.startswith("-"):
            return ours, a, None, list(argv[i + 1 :])
        ours.append(a)
        if a in _VALUED and i + 1 < len(argv):
            ours.append(argv[i + 1])
            i += 1
        i += 1
    return ours, None, None, []


def main(argv: Sequence[str]) -> int:
    """``tracedsync run``; returns the program's exit status."""
    parser = build_parser()
    ours, script, module, args = split_argv(argv)
    try:
        opts = parser.parse_args(ours)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 2
    if script is None and module is None:
        parser.print_usage(sys.stderr)
        print("tracedsync run: error: a script or -m module is required", file=sys.stderr)
        return 2
    if script is not None and not os.path.exists(script):
        print(
            f"tracedsync run: can't open file {os.path.abspath(script)!r}: "
            "[Errno 2] No such file or directory",
            file=sys.stderr,
        )
        return 2
    try:
        log_dir = choose_log_dir(opts.log_dir)
    except OSError as exc:
        print(f"tracedsync run: error: cannot write logs: {exc}", file=sys.stderr)
        return 2
    include = [p.strip() for v in opts.include for p in v.split(",") if p.strip()]
    exclude = [p.strip() for v in opts.exclude for p in v.split(",") if p.strip()]
    import tracedsync

    from .._record.recorder import RECORDER

    try:
        tracedsync.patch(
            include=include,
            exclude=exclude,
            log_dir=log_dir,
            **({"level": opts.level} if opts.level else {}),
        )
    except tracedsync.ConfigError as exc:
        print(f"tracedsync run: error: {exc}", file=sys.stderr)
        return 2
    prepare_environment(include, exclude)
    if not opts.no_summary:
        # Every directory this process logs to: the program may configure its own.
        log_dirs = [log_dir]
        RECORDER.config_hooks.append(lambda s: _note_dir(log_dirs, s.log_dir))
        atexit.register(_at_exit, os.getpid(), log_dirs)
        _runsummary.preload()
    return run_program(script, module, args)


def choose_log_dir(option: str | None, environ: Mapping[str, str] = os.environ) -> str:
    """Where the logs go: ``--log-dir``, else ``TRACEDSYNC_LOG_DIR``, else a new directory
    under ``./tracedsync-logs/`` (created here; OSError if it cannot be)."""
    if option:
        return os.path.abspath(option)
    from_env = environ.get(ENV_LOG_DIR, "")
    if from_env:
        return os.path.abspath(from_env)
    return _runsummary.fresh_log_dir()


def _note_dir(log_dirs: list[str], path: str) -> None:
    path = os.path.abspath(path)
    if path not in log_dirs:
        log_dirs.append(path)


CHILD_ENVIRONMENT = (ENV_PATCH, ENV_INCLUDE, ENV_EXCLUDE, "PYTHONPATH")
"""The variables `prepare_environment` sets (the settings are exported by `configure()`)."""


def prepare_environment(include: list[str], exclude: list[str]) -> None:
    """What Python children need to be traced too (settings travel with `configure()`); the
    pytest plugin prepares its session's children the same way."""
    env = os.environ
    env[ENV_PATCH] = "1"
    env[ENV_INCLUDE] = ",".join(include)
    env[ENV_EXCLUDE] = ",".join(exclude)
    path = env.get("PYTHONPATH")
    env["PYTHONPATH"] = BOOT_DIR if not path else BOOT_DIR + os.pathsep + path


def run_program(script: str | None, module: str | None, args: list[str]) -> int:
    """Run the program as ``__main__``; its exit status, with Python's rules."""
    safe_path = getattr(sys.flags, "safe_path", False)
    try:
        if module is not None:
            if not safe_path:
                sys.path[0] = os.getcwd()
            sys.argv = [module, *args]  # runpy replaces argv[0] by the module's file
            missing = _missing_module(module)
            if missing is not None:
                print(f"{sys.executable}: No module named {missing}", file=sys.stderr)
                return 1
            runpy.run_module(module, run_name="__main__", alter_sys=True)
        else:
            assert script is not None
            if not safe_path:
                sys.path[0] = _script_path0(script)
            sys.argv = [script, *args]
            # Absolute, as Python makes a script's __file__ and code file names (3.9+), so that
            # sites read the same in every process; runpy also sets sys.argv[0] to it.
            runpy.run_path(os.path.abspath(script), run_name="__main__")
    except SystemExit as exc:
        return exit_status(exc.code)
    except KeyboardInterrupt as exc:
        _print_exception(exc)
        return 130
    except BaseException as exc:
        _print_exception(exc)
        return 1
    return 0


def _script_path0(script: str) -> str:
    """What Python puts first on sys.path for ``python script``: the script's directory (links
    resolved), or the directory or zip file itself when it holds a ``__main__.py``."""
    import zipfile

    if os.path.isdir(script) or zipfile.is_zipfile(script):
        return os.path.abspath(script)
    return os.path.dirname(os.path.realpath(script))


def _missing_module(name: str) -> str | None:
    """The name Python would report as missing for ``-m name``, or None when it can be found
    (an error while importing its parent package is left for runpy to raise, with traceback)."""
    import importlib.util

    try:
        return name if importlib.util.find_spec(name) is None else None
    except ModuleNotFoundError as exc:
        if exc.name and (name == exc.name or name.startswith(exc.name + ".")):
            return exc.name
        return None
    except Exception:
        return None


def exit_status(code: object) -> int:
    """What Python exits with for ``SystemExit(code)``: None is 0, an int is itself, anything
    else is printed to stderr and is 1."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)
    return 1


def _print_exception(exc: BaseException) -> None:
    """Python's own report of an uncaught exception, without the runner's frames."""
    tb = exc.__traceback__
    while tb is not None and _is_ours(tb):
        tb = tb.tb_next
    exc.__traceback__ = tb
    sys.excepthook(type(exc), exc, tb)


def _is_ours(tb: TracebackType) -> bool:
    filename = tb.tb_frame.f_code.co_filename
    return filename.startswith(_PKG_DIR) or filename in (runpy.__file__, "<frozen runpy>")


def _at_exit(pid: int, log_dirs: list[str]) -> None:
    if os.getpid() != pid:  # a forked child leaving through sys.exit
        return
    _join_children()
    from .._core import runtime as rt
    from .._patch import patcher as _patch
    from .._record.recorder import RECORDER

    _patch.unpatch()
    # Daemon threads may still be running, as fast as they can: from here on record only
    # contention, then nothing after session_end, so that the logs stop growing while read.
    rt.set_level(min(rt.level, rt.CONTENTION))
    RECORDER.shutdown()  # counters and session_end now; the recorder's own handler runs later
    rt.set_level(rt.OFF)
    with contextlib.suppress(Exception):  # a closed stdout must not stop the summary
        sys.stdout.flush()
    try:
        _runsummary.render(_runsummary.load_report(log_dirs), log_dirs, sys.stderr)
    except Exception as exc:  # a summary that fails must not change the program's exit
        print(
            f"tracedsync: no summary: {type(exc).__name__}: {exc} "
            f"(logs: {', '.join(log_dirs)})",
            file=sys.stderr,
        )


def _join_children() -> None:
    """Let multiprocessing finish its children first (its exit handler is idempotent), in case
    it registered that handler before ours and so would run after us."""
    util = sys.modules.get("multiprocessing.util")
    finish = getattr(util, "_exit_function", None)
    if finish is not None:
        with contextlib.suppress(Exception):  # multiprocessing reports its own problems
            finish()
