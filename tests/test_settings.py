"""Settings are checked one by one: a bad one is named with where it came from (an argument or
an environment variable), the good ones are kept, wrong types are a `TypeError`, and the log
directory is checked when it is set (``configure``, ``patch``, ``tracedsync run``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from helpers import clean_env

import tracedsync
from tracedsync._record.config import ConfigTypeError, log_dir_problem

TIMEOUT = 120


@pytest.fixture
def unchanged() -> Any:
    """The settings before the test; the test must leave them so."""
    before = tracedsync.settings()
    yield before
    assert tracedsync.settings() == before


@pytest.mark.parametrize(
    ("changes", "named"),
    [
        ({"flush_interval": "0.5"}, "flush_interval='0.5' (argument): flush_interval must be a "
                                    "number of seconds (int or float), not str '0.5'"),
        ({"buffer_limit": 1.5}, "buffer_limit=1.5 (argument): buffer_limit must be an int >= 1, "
                                "not float 1.5"),
        ({"buffer_limit": True}, "buffer_limit must be an int >= 1, not bool True"),
        ({"level": 3}, "level must be one of 'contention', 'full', 'off' (a str), not int 3"),
        ({"log_dir": 3}, "log_dir must be a path (str or os.PathLike), not int 3"),
        ({"lock_order": "yes"}, "lock_order must be True or False, not str 'yes'"),
        ({"long_wait": "1"}, "long_wait must be None or a number of seconds"),
        ({"processors": [print, 3]}, "processors must hold callables, not int 3"),
    ],
)
def test_a_wrong_type_is_a_type_error_naming_the_setting(
    unchanged: tracedsync.Settings, changes: dict[str, Any], named: str
) -> None:
    with pytest.raises(TypeError) as info:
        tracedsync.configure(**changes)
    assert named in str(info.value)
    assert isinstance(info.value, tracedsync.ConfigError)  # and a ValueError


@pytest.mark.parametrize(
    ("changes", "named"),
    [
        ({"level": "loud"}, "level='loud' (argument): level must be one of 'contention', 'full', "
                            "'off', not 'loud'"),
        ({"flush_interval": 0}, "flush_interval must be > 0 seconds"),
        ({"flush_interval": float("inf")}, "flush_interval must be > 0 seconds (and finite)"),
        ({"buffer_limit": 0}, "buffer_limit must be >= 1, not 0"),
        ({"overflow": "spill"}, "overflow must be one of 'drop', 'flush', not 'spill'"),
    ],
)
def test_a_wrong_value_is_a_value_error_naming_the_setting(
    unchanged: tracedsync.Settings, changes: dict[str, Any], named: str
) -> None:
    with pytest.raises(tracedsync.ConfigError) as info:
        tracedsync.configure(**changes)
    assert named in str(info.value)
    assert not isinstance(info.value, TypeError)


def test_every_bad_argument_is_named_and_none_is_applied(unchanged: tracedsync.Settings) -> None:
    """Two bad arguments and a good one: both bad ones are named, nothing changes."""
    with pytest.raises(ConfigTypeError) as info:
        tracedsync.configure(level="loud", buffer_limit=1.5, flush_interval=0.1)
    text = str(info.value)
    assert "level='loud' (argument)" in text and "buffer_limit=1.5 (argument)" in text
    assert "flush_interval" not in text


def test_a_bad_variable_is_ignored_and_the_others_kept() -> None:
    """From the environment: each bad variable is described (name, value, problem, the value
    used instead); the good ones are kept."""
    errors: list[str] = []
    s = tracedsync.Settings.from_env({
        "TRACEDSYNC_LEVEL": "verbose", "TRACEDSYNC_LOG_DIR": "envlogs",
        "TRACEDSYNC_FLUSH_INTERVAL": "soon", "TRACEDSYNC_BUFFER_LIMIT": "500",
        "TRACEDSYNC_OVERFLOW": "drop", "TRACEDSYNC_LONG_WAIT": "-1",
    }, errors)
    assert (s.log_dir, s.buffer_limit, s.overflow) == ("envlogs", 500, "drop")
    assert (s.level, s.flush_interval, s.long_wait) == ("full", 0.2, None)
    assert sorted(errors) == [
        "TRACEDSYNC_FLUSH_INTERVAL='soon' (environment variable): flush_interval must be a "
        "number of seconds, not 'soon'; ignored: flush_interval is 0.2",
        "TRACEDSYNC_LEVEL='verbose' (environment variable): level must be one of 'contention', "
        "'full', 'off', not 'verbose'; ignored: level is 'full'",
        "TRACEDSYNC_LONG_WAIT='-1' (environment variable): long_wait must be None or > 0 "
        "seconds, not -1.0; ignored: long_wait is None",
    ]


def test_the_issues_example_keeps_the_log_dir(tmp_path: Path) -> None:
    """TRACEDSYNC_LEVEL=verbose TRACEDSYNC_LOG_DIR=envlogs: the level is reported and ignored,
    and the logs go to envlogs (they went to ./tracedsync-logs with "using the defaults")."""
    code = "import tracedsync\nwith tracedsync.Lock():\n    pass\n"
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True,
        timeout=TIMEOUT, env=clean_env(TRACEDSYNC_LEVEL="verbose", TRACEDSYNC_LOG_DIR="envlogs"),
    )
    assert proc.returncode == 0, proc.stderr
    assert "TRACEDSYNC_LEVEL='verbose' (environment variable)" in proc.stderr
    assert "using the defaults" not in proc.stderr
    assert list((tmp_path / "envlogs").glob("tracedsync-*.jsonl"))
    assert not (tmp_path / "tracedsync-logs").exists()


# -- the log directory ---------------------------------------------------------------------------
def test_log_dir_problems(tmp_path: Path) -> None:
    """A directory that exists or can be created is fine (nothing is created by the check); a
    file, or a path through a file, is not."""
    a_file = tmp_path / "file"
    a_file.write_text("x")
    assert log_dir_problem(str(tmp_path)) is None
    assert log_dir_problem(str(tmp_path / "new" / "deeper")) is None
    assert not (tmp_path / "new").exists()
    assert log_dir_problem(str(a_file)) == f"{a_file} exists and is not a directory"
    assert log_dir_problem(str(a_file / "sub")) == (
        f"{a_file} is not a directory, so {a_file / 'sub'} cannot be created")


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0,
                    reason="permissions do not stop root (or this is not POSIX)")
def test_log_dir_without_write_permission(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    try:
        assert log_dir_problem(str(locked)) == f"{locked} is not writable"
        assert "is not writable" in (log_dir_problem(str(locked / "sub")) or "")
    finally:
        locked.chmod(0o700)


def test_configure_and_patch_check_the_log_dir(
    tmp_path: Path, unchanged: tracedsync.Settings
) -> None:
    """An unusable log_dir is refused at configure() and patch() with a clear message (it was
    noticed only at the first flush); patch() then patches nothing."""
    from tracedsync._patch import patcher

    bad = tmp_path / "file" / "logs"
    (tmp_path / "file").write_text("x")
    with pytest.raises(tracedsync.ConfigError, match=r"log_dir cannot be written: .* is not a "
                                                     r"directory"):
        tracedsync.configure(log_dir=str(bad))
    with pytest.raises(tracedsync.ConfigError, match=r"log_dir=.* \(argument\)"):
        tracedsync.patch(log_dir=bad)
    assert not patcher.is_patched()


# -- tracedsync run ------------------------------------------------------------------------------
def _run(cwd: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tracedsync", "run", *args], cwd=cwd, capture_output=True,
        text=True, timeout=TIMEOUT, env=clean_env("PYTHONPATH", **env),
    )


PROGRAM = """
import threading
lock = threading.Lock()
with lock:
    pass
"""


def test_run_honours_tracedsync_log_dir_and_the_flag_wins(tmp_path: Path) -> None:
    (tmp_path / "prog.py").write_text(PROGRAM, encoding="utf-8")
    proc = _run(tmp_path, "prog.py", TRACEDSYNC_LOG_DIR="envlogs")
    assert proc.returncode == 0, proc.stderr
    assert list((tmp_path / "envlogs").glob("tracedsync-*.jsonl"))
    assert "logs in envlogs;" in proc.stderr
    assert not (tmp_path / "tracedsync-logs").exists()
    proc = _run(tmp_path, "--log-dir", "flaglogs", "prog.py", TRACEDSYNC_LOG_DIR="envlogs2")
    assert proc.returncode == 0, proc.stderr
    assert list((tmp_path / "flaglogs").glob("tracedsync-*.jsonl"))
    assert not (tmp_path / "envlogs2").exists()


def test_run_refuses_an_unusable_log_dir_before_the_program_starts(tmp_path: Path) -> None:
    (tmp_path / "prog.py").write_text("print('ran')\n", encoding="utf-8")
    (tmp_path / "file").write_text("x")
    proc = _run(tmp_path, "--log-dir", "file/logs", "prog.py")
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert "tracedsync run: error: log_dir=" in proc.stderr
    assert "is not a directory" in proc.stderr


SELF_CONFIGURING = """
import multiprocessing, threading, tracedsync
tracedsync.patch(log_dir="own-logs")
lock = threading.Lock()
with lock:
    pass

def child():
    with threading.Lock():
        pass

if __name__ == "__main__":
    p = multiprocessing.get_context("spawn").Process(target=child)
    p.start()
    p.join(60)
"""


def test_run_finds_the_logs_of_a_program_that_moves_them(tmp_path: Path) -> None:
    """``patch(log_dir=...)`` in the program under ``run --log-dir X``: the summary reads both
    directories and says so (it said "no traced primitive recorded anything")."""
    (tmp_path / "prog.py").write_text(textwrap.dedent(SELF_CONFIGURING), encoding="utf-8")
    proc = _run(tmp_path, "--log-dir", "runlogs", "prog.py")
    assert proc.returncode == 0, proc.stderr
    own = tmp_path / "own-logs"
    assert len(list(own.glob("tracedsync-*.jsonl"))) == 2  # the program and its spawned child
    assert "no traced primitive recorded anything" not in proc.stderr
    assert "the program also logged to own-logs" in proc.stderr
    assert "logs in runlogs own-logs;" in proc.stderr
    assert "prog.py:4" in proc.stderr, proc.stderr  # its lock, in the summary


def test_run_says_when_nothing_was_recorded(tmp_path: Path) -> None:
    (tmp_path / "prog.py").write_text("print('nothing traced')\n", encoding="utf-8")
    proc = _run(tmp_path, "--log-dir", "logs", "prog.py")
    assert proc.returncode == 0, proc.stderr
    assert "no log was written in" in proc.stderr


def test_settings_header_shows_what_was_kept(tmp_path: Path) -> None:
    """The session header records the settings in force: the good variable, not the bad one."""
    code = "import tracedsync\nwith tracedsync.Lock():\n    pass\n"
    subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True,
        timeout=TIMEOUT, check=True,
        env=clean_env(TRACEDSYNC_BUFFER_LIMIT="1.5", TRACEDSYNC_OVERFLOW="drop",
                      TRACEDSYNC_LOG_DIR="logs"),
    )
    (log,) = (tmp_path / "logs").glob("tracedsync-*.jsonl")
    header = json.loads(log.read_text().splitlines()[0])
    assert header["settings"]["overflow"] == "drop"
    assert header["settings"]["buffer_limit"] == 100_000
