"""``tracedsync analyze`` on the command line: formats, output files, exit statuses, shards."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_analyze_util import Log

from tracedsync import SCHEMA_VERSION
from tracedsync.cli import main


def _clean(tmp_path: Path) -> Path:
    log = Log()
    lock = log.created(1, name="only")
    log.acquire(7, lock, "app.py:10")
    log.release(7, lock)
    log.end()
    d = tmp_path / "clean"
    d.mkdir()
    log.write(d)
    return d


def _misuse(tmp_path: Path) -> Path:
    log = Log(pid=300)
    lock = log.created(1)
    log.ev("misuse", 7, prim=lock, what="release_unlocked", error="x", site="app.py:1")
    d = tmp_path / "bad"
    d.mkdir()
    log.write(d)
    return d


def test_exit_0_when_nothing_found(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A clean log: status 0 and the text tables on stdout."""
    assert main(["analyze", "--no-progress", str(_clean(tmp_path))]) == 0
    out = capsys.readouterr().out
    assert "No findings." in out and "only (Lock 100.1)" in out


def test_exit_1_on_findings_at_fail_on(tmp_path: Path) -> None:
    """An error finding fails by default; --fail-on never does not; info fails on warnings."""
    bad = str(_misuse(tmp_path))
    assert main(["analyze", bad, "-o", str(tmp_path / "r.txt")]) == 1
    assert main(["analyze", bad, "--fail-on", "never", "-o", str(tmp_path / "r.txt")]) == 0
    log = Log(pid=400)
    lock = log.created(1)
    log.acquire(7, lock, "app.py:1")
    log.release(7, lock, hold=10**9)
    d = tmp_path / "slow"
    d.mkdir()
    log.write(d)
    assert main(["analyze", str(d), "-o", str(tmp_path / "r.txt")]) == 0
    # A 1 s hold over the default threshold is an info; over one the user chose, a warning.
    assert main(["analyze", str(d), "--fail-on", "warning", "-o", str(tmp_path / "r.txt")]) == 0
    assert main(["analyze", str(d), "--fail-on", "info", "-o", str(tmp_path / "r.txt")]) == 1
    assert main(["analyze", str(d), "--long-hold", "500", "--fail-on", "warning",
                 "-o", str(tmp_path / "r.txt")]) == 1


def test_exit_2_on_unusable_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Missing path, empty directory, newer schema, unreadable garbage, bad arguments: 2, with
    a one-line message and no traceback."""
    empty = tmp_path / "empty"
    empty.mkdir()
    newer = tmp_path / "newer"
    newer.mkdir()
    (newer / "tracedsync-1.jsonl").write_text(
        f'{{"event":"session","ts":1,"pid":1,"schema":{SCHEMA_VERSION + 1}}}\n')
    assert main(["analyze", str(tmp_path / "nope")]) == 2
    assert main(["analyze", str(empty)]) == 2
    assert main(["analyze", str(newer)]) == 2
    garbage = tmp_path / "garbage"
    garbage.mkdir()
    (garbage / "tracedsync-2.jsonl").write_bytes(b"\xff\xfe garbage\n{broken\n")
    assert main(["analyze", str(garbage)]) == 2
    assert main(["analyze", "--format", "pdf", str(empty)]) == 2
    assert main(["analyze", "--long-hold", "-1", str(empty)]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert f"schema {SCHEMA_VERSION}" in err and "Upgrade tracedsync" in err
    assert "no such file or directory" in err
    assert "no events could be read from the log files (2 unusable line(s); first:" in err


def test_corrupt_lines_are_listed_and_the_rest_analysed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Skipped lines go to stderr with file:line; the good events are still analysed."""
    d = _clean(tmp_path)
    path = next(d.iterdir())
    with open(path, "ab") as fh:
        fh.write(b"\x00\xffnot json\n{\"event\":\"acquire\"")
    assert main(["analyze", str(d), "--format", "json"]) == 0
    captured = capsys.readouterr()
    assert f"skipped {path}:6: not valid JSON" in captured.err
    assert f"skipped {path}:7: truncated last line" in captured.err
    report = json.loads(captured.out)
    assert report["problem_count"] == 2
    assert report["primitives"][0]["acquisitions"] == 1


@pytest.mark.parametrize("fmt", ["text", "json", "perfetto", "html"])
def test_every_format_writes_its_output_file(tmp_path: Path, fmt: str) -> None:
    """-o writes each format to a file."""
    out = tmp_path / f"out.{fmt}"
    assert main(["analyze", str(_misuse(tmp_path)), "-f", fmt, "-o", str(out),
                 "--fail-on", "never"]) == 0
    text = out.read_text(encoding="utf-8")
    assert text
    if fmt in ("json", "perfetto"):
        json.loads(text)


def test_shards_saved_on_two_machines_combine(tmp_path: Path) -> None:
    """--save-aggregate per shard, then analysing the saved aggregates together."""
    a = tmp_path / "a.json"
    b = tmp_path / "b.json"
    assert main(["analyze", str(_clean(tmp_path)), "--save-aggregate", str(a),
                 "-o", str(tmp_path / "x")]) == 0
    assert main(["analyze", str(_misuse(tmp_path)), "--save-aggregate", str(b),
                 "-o", str(tmp_path / "x"), "--fail-on", "never"]) == 0
    out = tmp_path / "both.json"
    assert main(["analyze", str(a), str(b), "-f", "json", "-o", str(out)]) == 1
    report = json.loads(out.read_text())
    assert report["totals"]["processes"] == 2
    assert [f["kind"] for f in report["findings"]] == ["misuse"]


def test_jobs_option_gives_the_same_report(tmp_path: Path) -> None:
    """--jobs 2 over two files prints the same JSON as --jobs 1."""
    d = _clean(tmp_path)
    log = Log(pid=500)
    lock = log.created(1)
    log.acquire(3, lock, "b.py:1", wait=5, blocked_by=4)
    log.release(3, lock)
    log.write(d)
    one, two = tmp_path / "1.json", tmp_path / "2.json"
    assert main(["analyze", str(d), "-j", "1", "-f", "json", "-o", str(one)]) == 0
    assert main(["analyze", str(d), "-j", "2", "-f", "json", "-o", str(two)]) == 0
    assert one.read_text() == two.read_text()


def test_progress_on_stderr_only_when_asked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--progress draws on stderr, ending with the totals; without it a non-terminal gets none."""
    d = str(_clean(tmp_path))
    assert main(["analyze", d, "--progress", "-o", str(tmp_path / "r")]) == 0
    err = capsys.readouterr().err
    assert "tracedsync: 1/1 files, 100.0 %" in err and err.endswith("\n")
    assert main(["analyze", d, "-o", str(tmp_path / "r")]) == 0
    assert capsys.readouterr().err == ""


def test_summary_still_works(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The older ``summary`` subcommand is untouched by ``analyze``."""
    assert main(["summary", str(_clean(tmp_path))]) == 0
    assert "only" in capsys.readouterr().out


def test_the_command_exits_fast_with_its_status_output_and_exit_handlers(tmp_path: Path) -> None:
    """``python -m tracedsync analyze`` ends without freeing the analysis (`console_main`):
    its status, its whole output on stdout and in -o files, and the exit handlers still run."""
    import subprocess
    import sys
    import textwrap

    script = tmp_path / "cmd.py"
    script.write_text(textwrap.dedent("""
        import atexit, sys
        atexit.register(lambda: print("atexit ran", file=sys.stderr))
        sys.argv[0] = "tracedsync"
        from tracedsync.cli import console_main
        console_main()
    """))

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, str(script), "analyze", "--no-progress", *args],
                              capture_output=True, text=True, timeout=120, check=False)

    clean = run("-f", "json", str(_clean(tmp_path)))
    assert clean.returncode == 0, clean.stderr
    assert json.loads(clean.stdout)["totals"]["primitives"] == 1
    assert "atexit ran" in clean.stderr
    out = tmp_path / "r.json"
    bad = run("-f", "json", "-o", str(out), str(_misuse(tmp_path)))
    assert bad.returncode == 1 and "atexit ran" in bad.stderr
    assert json.loads(out.read_text())["findings"]
    missing = run(str(tmp_path / "nowhere"))
    assert missing.returncode == 2 and "atexit ran" in missing.stderr
    usage = run("--no-such-option")
    assert usage.returncode == 2
