"""pytest plugin: ``pytest --tracedsync`` traces the test session as ``tracedsync run`` would.

Enabled by ``--tracedsync``, the ini option ``tracedsync = true``, ``TRACEDSYNC_PYTEST=1`` in the
environment, or ``--tracedsync-fail-on``. Otherwise it registers its options and does nothing
else.

When enabled, in pytest's order:

1. ``pytest_load_initial_conftests`` (first among the plugins that implement it, before pytest
   imports the root ``conftest.py`` and the conftests of the initial paths): `tracedsync.patch()`
   into the log directory (``--tracedsync-log-dir``, else ``TRACEDSYNC_LOG_DIR``, else a new
   ``./tracedsync-logs/<timestamp>/``, checked first), and the environment that makes Python
   child processes (multiprocessing's spawn and forkserver, ``subprocess`` runs of Python) trace
   themselves, as under ``tracedsync run``. So the conftests, the modules they import and the
   test modules create traced primitives. What was imported earlier (pytest itself, plugins
   loaded by entry point or ``-p``) is not traced. If the plugin is registered too late for that
   hook (``pytest.main(plugins=[...])``), it patches at ``pytest_configure`` instead.
2. ``pytest_sessionfinish``: `unpatch()`, flush, the environment put back; the analyze report of
   the session's logs (every process); and, found by looking through module globals once, the
   primitives created before tracing began that are still alive, by module, with the remedy.
3. ``pytest_terminal_summary``: all of that, after pytest's own summary.

``--tracedsync-fail-on=deadlock,lock_order,rmw`` makes the run fail (exit status 1) when the
logs show findings of those kinds (``error`` or ``warning`` select by severity; ``order`` is an
alias of ``lock_order``); findings of severity ``info`` never fail a run, nor suppressed ones
(``# tracedsync: ignore[kind]`` on the line, or ``--tracedsync-baseline FILE``).

Tests. Whenever the session is traced (``--tracedsync``, or the whole run under ``tracedsync
run -m pytest``), each test writes a ``test`` event into the log as it starts and ends (its node
id, and its outcome), so that `tracedsync analyze` ties every finding to the tests that were
running when its events were recorded. A misuse that raised in the thread running a test that
passed was provoked on purpose (``pytest.raises``, ``assertRaises``): an info, never a failure
on its own (docs/analysis.md, "Under pytest").
"""

from __future__ import annotations

import io
import os
import sys
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from .analysis.report import Report

ENV_ENABLE = "TRACEDSYNC_PYTEST"
ENV_LOG_DIR = "TRACEDSYNC_LOG_DIR"
_PLUGIN_NAME = "tracedsync-session"
_TESTS_NAME = "tracedsync-tests"
REMEDY = (
    "remedy: these were created before tracing began. The plugin patches threading and "
    "multiprocessing when pytest loads the initial conftests (before the root conftest.py), so "
    "these modules were imported earlier: by a plugin (an entry point, -p, PYTEST_PLUGINS) or "
    "by pytest itself. Create them later (in a conftest, a fixture or the tests), or run the "
    "session as `tracedsync run -m pytest ...`, which patches before anything is imported."
)


def pytest_addoption(parser: pytest.Parser) -> None:
    """``--tracedsync``, ``--tracedsync-fail-on``, ``--tracedsync-log-dir``; ini ``tracedsync``."""
    group = parser.getgroup("tracedsync", "tracedsync: trace threading primitives")
    group.addoption(
        "--tracedsync",
        action="store_true",
        default=False,
        help="trace the primitives created by the tests and print a summary",
    )
    group.addoption(
        "--tracedsync-fail-on",
        metavar="KINDS",
        default=None,
        help="fail the run on these findings, e.g. deadlock,order,rmw (implies --tracedsync)",
    )
    group.addoption(
        "--tracedsync-baseline",
        metavar="FILE",
        default=None,
        help="findings listed in FILE (tracedsync analyze --write-baseline) do not fail the run",
    )
    group.addoption(
        "--tracedsync-log-dir",
        metavar="DIR",
        default=None,
        help="where the logs go (default: TRACEDSYNC_LOG_DIR, else a new directory under "
        "./tracedsync-logs/)",
    )
    parser.addini(
        "tracedsync", type="bool", default=False, help="trace the session as with --tracedsync"
    )


def _enabled(options: Any, config: pytest.Config) -> bool:
    return bool(
        getattr(options, "tracedsync", False)
        or getattr(options, "tracedsync_fail_on", None)
        or os.environ.get(ENV_ENABLE, "").strip().lower() in ("1", "true", "yes")
        or config.getini("tracedsync")
    )


def enabled(config: pytest.Config) -> bool:
    """Whether the session is traced."""
    return _enabled(config.option, config)


@pytest.hookimpl(tryfirst=True)
def pytest_load_initial_conftests(early_config: pytest.Config) -> None:
    """Patch before the initial conftests are imported (see the module docstring)."""
    options = early_config.known_args_namespace
    if not _enabled(options, early_config):
        return
    session = TracedSession.start(
        getattr(options, "tracedsync_log_dir", None), getattr(options, "tracedsync_fail_on", None)
    )
    early_config.pluginmanager.register(session, _PLUGIN_NAME)


def pytest_configure(config: pytest.Config) -> None:
    """Register the session tracer if the early hook could not (the plugin came late); record
    the tests when the session is traced (by the plugin, or by ``tracedsync run``)."""
    if enabled(config) and not config.pluginmanager.has_plugin(_PLUGIN_NAME):
        session = TracedSession.start(
            config.getoption("tracedsync_log_dir"), config.getoption("tracedsync_fail_on")
        )
        config.pluginmanager.register(session, _PLUGIN_NAME)
    plugin = config.pluginmanager.get_plugin(_PLUGIN_NAME)
    if isinstance(plugin, TracedSession):
        plugin.baseline = config.getoption("tracedsync_baseline")
    patcher = sys.modules.get("tracedsync._patch.patcher")
    traced = plugin is not None or (patcher is not None and patcher.is_patched())
    if traced and not config.pluginmanager.has_plugin(_TESTS_NAME):
        config.pluginmanager.register(TestRecorder(), _TESTS_NAME)


class TestRecorder:
    """Writes a ``test`` event as each test starts and ends (the main thread, in order)."""

    __test__ = False  # not a test class, whatever its name

    def __init__(self) -> None:
        self._outcome: dict[str, str] = {}

    def pytest_runtest_logstart(self, nodeid: str, location: Any) -> None:
        self._outcome[nodeid] = "passed"
        _record_test(nodeid, "start", None)

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.failed:
            self._outcome[report.nodeid] = "failed"
        elif report.skipped and self._outcome.get(report.nodeid) != "failed":
            self._outcome[report.nodeid] = "skipped"

    def pytest_runtest_logfinish(self, nodeid: str, location: Any) -> None:
        _record_test(nodeid, "end", self._outcome.pop(nodeid, "passed"))


def _record_test(nodeid: str, phase: str, outcome: str | None) -> None:
    from ._core import runtime as rt
    from ._core.ops import OP_GENERIC

    if not rt.level:
        return
    fields: dict[str, Any] = {"nodeid": nodeid, "phase": phase}
    if outcome is not None:
        fields["outcome"] = outcome
    rt.emit((OP_GENERIC, rt.now(), rt.ident(), "test", fields, None, 0))


class TracedSession:
    """The hooks of an enabled session (patched from `start` on)."""

    def __init__(self, log_dir: str, fail_on: frozenset[str]) -> None:
        self.log_dir = log_dir
        self.fail_on = fail_on
        self.report: Report | None = None
        self.baseline: str | None = None
        self.failing: list[str] = []
        self.untraced: list[str] = []
        self._saved_env: dict[str, str | None] = {}
        self._ended = False

    @classmethod
    def start(cls, log_dir: str | None, fail_on: str | None) -> TracedSession:
        """Check the options, then patch and prepare the children's environment."""
        from . import ConfigError, patch
        from ._run import runner
        from ._run.summary import parse_kinds

        try:
            kinds = parse_kinds(fail_on or "")
        except ValueError as exc:
            raise pytest.UsageError(f"--tracedsync-fail-on: {exc}") from None
        try:
            chosen = runner.choose_log_dir(log_dir)
        except OSError as exc:
            raise pytest.UsageError(f"tracedsync: cannot write logs: {exc}") from None
        session = cls(chosen, kinds)
        session._saved_env = {k: os.environ.get(k) for k in runner.CHILD_ENVIRONMENT}
        session._saved_env.update(
            {k: v for k, v in os.environ.items() if k.startswith("TRACEDSYNC_")})
        try:
            patch(log_dir=chosen)
        except ConfigError as exc:
            raise pytest.UsageError(f"tracedsync: {exc}") from None
        runner.prepare_environment(include=[], exclude=[])
        return session

    def _end(self) -> None:
        """Unpatch and put the environment back (once)."""
        if self._ended:
            return
        self._ended = True
        from . import flush, unpatch

        unpatch()
        flush()
        for key in [k for k in os.environ if k.startswith("TRACEDSYNC_")]:
            if key not in self._saved_env:
                del os.environ[key]
        for key, value in self._saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        """Unpatch, read the logs, say what could not be traced, and fail the run if asked to
        and findings say so."""
        from ._patch.survey import describe, untraced
        from ._run import summary as _runsummary

        self._end()
        self.untraced = describe(untraced(), REMEDY)
        try:
            self.report = report = _runsummary.load_report(self.log_dir, self.baseline)
        except ValueError as exc:  # an unreadable baseline
            raise pytest.UsageError(f"--tracedsync-baseline: {exc}") from None
        found = _runsummary.failing(report, self.fail_on)
        self.failing = [
            f"{f.severity} {f.kind}: {f.message}"
            + (f" [tests: {', '.join(f.tests)}]" if f.tests else "")
            for f in found
        ]
        if found and session.exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def pytest_unconfigure(self, config: pytest.Config) -> None:
        """A session that never finished (``--help``, a usage error) still ends unpatched."""
        self._end()

    def pytest_terminal_summary(self, terminalreporter: pytest.TerminalReporter) -> None:
        """The report, what was not traced, and why the run fails if it does."""
        from ._run import summary as _runsummary

        tw = terminalreporter.config.get_terminal_writer()
        out = io.StringIO()
        # A terminal's width is fitted (tables split by columns, never cut); written to a file
        # or a pipe, the tables keep their natural width (or COLUMNS), not pytest's 80.
        width = tw.fullwidth if terminalreporter.isatty else None
        _runsummary.render(self.report, self.log_dir, out, width=width, color=tw.hasmarkup)
        terminalreporter.write_sep("=", "tracedsync")
        terminalreporter.write(out.getvalue())
        for line in self.untraced:
            terminalreporter.write_line(line, yellow=True)
        if self.failing:
            terminalreporter.write_line(
                f"tracedsync: failing the run: {len(self.failing)} finding(s) selected by "
                f"--tracedsync-fail-on",
                red=True,
                bold=True,
            )
            for line in self.failing:
                terminalreporter.write_line(f"  {line}", red=True)
