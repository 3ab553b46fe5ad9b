"""pytest plugin: ``pytest --tracedsync`` traces the test session.

Enabled by ``--tracedsync``, the ini option ``tracedsync = true``, ``TRACEDSYNC_PYTEST=1`` in the
environment, or ``--tracedsync-fail-on``. Otherwise it registers its options and does nothing
else. When enabled: `tracedsync.patch()` at session start (so the test modules collected and the
tests run create traced primitives; pytest's own are out of scope), `unpatch()` at session end,
then the analyze report of the session's logs in the terminal summary.
``--tracedsync-fail-on=deadlock,order,rmw`` makes the run fail (exit status 1) when the logs
show findings of those kinds (``order`` = ``lock_order`` and ``lock_order_class``; ``error`` or
``warning`` select by severity); findings of severity ``info`` never fail a run.
"""

from __future__ import annotations

import io
import os
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from .analysis.report import Report

ENV_ENABLE = "TRACEDSYNC_PYTEST"
_PLUGIN_NAME = "tracedsync-session"


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
        "--tracedsync-log-dir",
        metavar="DIR",
        default=None,
        help="where the logs go (default: a new directory under ./tracedsync-logs/)",
    )
    parser.addini(
        "tracedsync", type="bool", default=False, help="trace the session as with --tracedsync"
    )


def enabled(config: pytest.Config) -> bool:
    """Whether the session is traced."""
    return bool(
        config.getoption("tracedsync")
        or config.getoption("tracedsync_fail_on")
        or os.environ.get(ENV_ENABLE, "").strip().lower() in ("1", "true", "yes")
        or config.getini("tracedsync")
    )


def pytest_configure(config: pytest.Config) -> None:
    """Register the session tracer, only when enabled."""
    if not enabled(config):
        return
    from ._run.summary import parse_kinds

    try:
        kinds = parse_kinds(config.getoption("tracedsync_fail_on") or "")
    except ValueError as exc:
        raise pytest.UsageError(f"--tracedsync-fail-on: {exc}") from None
    config.pluginmanager.register(
        TracedSession(config.getoption("tracedsync_log_dir"), kinds), _PLUGIN_NAME
    )


class TracedSession:
    """The hooks of an enabled session."""

    def __init__(self, log_dir: str | None, fail_on: frozenset[str]) -> None:
        self.log_dir = os.path.abspath(log_dir) if log_dir else None
        self.fail_on = fail_on
        self.report: Report | None = None
        self.failing: list[str] = []

    @pytest.hookimpl(tryfirst=True)
    def pytest_sessionstart(self, session: pytest.Session) -> None:
        """Patch before collection imports the test modules."""
        from . import patch
        from ._run import summary as _runsummary

        if self.log_dir is None:
            self.log_dir = _runsummary.fresh_log_dir()
        else:
            os.makedirs(self.log_dir, exist_ok=True)
        patch(log_dir=self.log_dir)

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        """Unpatch, read the logs, and fail the run if asked to and findings say so."""
        from . import flush, unpatch
        from ._run import summary as _runsummary

        unpatch()
        flush()
        assert self.log_dir is not None
        self.report = report = _runsummary.load_report(self.log_dir)
        found = _runsummary.failing(report, self.fail_on)
        self.failing = [f"{f.severity} {f.kind}: {f.message}" for f in found]
        if found and session.exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def pytest_terminal_summary(self, terminalreporter: pytest.TerminalReporter) -> None:
        """The report, and why the run fails if it does."""
        from ._run import summary as _runsummary

        tw = terminalreporter.config.get_terminal_writer()
        out = io.StringIO()
        assert self.log_dir is not None
        _runsummary.render(self.report, self.log_dir, out, width=tw.fullwidth, color=tw.hasmarkup)
        terminalreporter.write_sep("=", "tracedsync")
        terminalreporter.write(out.getvalue())
        if self.failing:
            terminalreporter.write_line(
                f"tracedsync: failing the run: {len(self.failing)} finding(s) selected by "
                f"--tracedsync-fail-on",
                red=True,
                bold=True,
            )
            for line in self.failing:
                terminalreporter.write_line(f"  {line}", red=True)
