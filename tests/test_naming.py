"""Primitives named by what the user can find in their code: the name the creating line
assigns (read from the source once per line by the flusher: ``created``'s ``var``), the
creation site, the kind and id; threads by name and native id."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from test_analyze_util import Log

import tracedsync
from tracedsync._core.assigned import assigned_name
from tracedsync.analysis.findings import find_all
from tracedsync.analysis.labels import Labels
from tracedsync.testing import capture


@pytest.mark.parametrize(("line", "qualname", "name"), [
    ("lock_a = Lock()", "<module>", "lock_a"),
    ("    self._lock = threading.Lock()", "Account.__init__", "Account._lock"),
    ("    self._lock = threading.Lock()", "__init__", "self._lock"),  # 3.10: no class
    ("        self.cond: Condition = Condition(self._lock)", "f.<locals>.Box.__init__",
     "Box.cond"),
    ("    cls.registry_lock = RLock()", "Registry.setup", "Registry.registry_lock"),
    ("locks = [Lock() for _ in range(4)]", "<module>", "locks[...]"),
    ("LOCKS[name] = RLock()", "<module>", "LOCKS[...]"),
    ("a = b = Lock()", "<module>", "a"),
    ("mod.lock = Lock()", "<module>", "mod.lock"),
    ("x = Lock(\n", "<module>", "x"),  # a statement longer than its line
    ("return Lock()", "make", None),
    ("a, b = Lock(), Lock()", "<module>", None),
    ("run(Lock())", "<module>", None),
    ("if x == Lock(): pass", "<module>", None),
])
def test_assigned_name(tmp_path: Path, line: str, qualname: str, name: str | None) -> None:
    """The target of a plain assignment, as the user writes it (``self`` turned into the
    class); nothing for any other statement."""
    src = tmp_path / "m.py"
    src.write_text(line if line.endswith("\n") else line + "\n", encoding="utf-8")
    assert assigned_name(str(src), 1, qualname) == name


def test_the_class_of_self_is_read_from_the_source_without_a_qualified_name(
    tmp_path: Path,
) -> None:
    """On 3.10 a code object has its function's name only (``__init__``): the class that
    ``self`` stands for is then found in the source around the line (nested classes and
    functions included)."""
    src = tmp_path / "m.py"
    src.write_text(textwrap.dedent("""\
        class Account:
            def __init__(self):
                self._lock = Lock()

        def make():
            class Box:
                def setup(self):
                    self.cond = Condition()
            return Box
    """), encoding="utf-8")
    assert assigned_name(str(src), 3, "__init__") == "Account._lock"
    assert assigned_name(str(src), 8, "setup") == "Box.cond"
    assert assigned_name(str(src), 3, None) == "Account._lock"


def test_no_source_names_nothing() -> None:
    """A line that cannot be read (``python -c``, a missing file) names nothing."""
    assert assigned_name("<string>", 1, "f") is None
    assert assigned_name("/no/such/file.py", 3, "f") is None


class Account:
    def __init__(self) -> None:
        self._lock = tracedsync.Lock()


def test_created_events_carry_the_assigned_name() -> None:
    """The flusher reads the creating line: ``var`` on the ``created`` event."""
    with capture() as events:
        lock_a = tracedsync.RLock()
        acct = Account()
        anonymous = [tracedsync.Lock()][0]
    by_prim = {e["prim"]: e for e in events.where(event="created")}
    assert by_prim[lock_a.statistics().prim]["var"] == "lock_a"
    assert by_prim[acct._lock.statistics().prim]["var"] == "Account._lock"  # (3.10 too)
    assert by_prim[anonymous.statistics().prim]["var"] == "anonymous"


def test_labels_name_primitives_by_name_var_and_site(tmp_path: Path) -> None:
    """``name=`` first, then the assigned name, then kind and id, and where it was created; the
    lock a Condition made for itself on its line is ``<condition>.lock``; tables leave the
    site to their own column."""
    log = Log()
    named = log.created(1, "RLock", name="accounts", site="bank.py:3")
    log.lines[-1]["var"] = "self._lock"
    plain = log.created(2, "Lock", site="bank.py:4")
    log.lines[-1]["var"] = "Account._lock"
    own = log.created(3, "RLock", site="bank.py:5")
    log.lines[-1]["var"] = "cv"
    cond = log.created(4, "Condition", site="bank.py:5", lock=own)
    log.lines[-1]["var"] = "cv"
    bare = log.created(5, "Lock", site="bank.py:6")
    labels = Labels(log.scan(tmp_path))
    assert labels.prim(named) == "accounts (RLock 100.1, created at bank.py:3)"
    assert labels.prim(plain) == "Account._lock (Lock 100.2, created at bank.py:4)"
    assert labels.prim(own) == "cv.lock (RLock 100.3, created at bank.py:5)"
    assert labels.prim(cond) == "cv (Condition 100.4, created at bank.py:5)"
    assert labels.prim(bare) == "Lock 100.5 (created at bank.py:6)"
    assert labels.short(plain) == "Account._lock (Lock 100.2)"
    assert labels.describe(plain)["var"] == "Account._lock"


def test_findings_name_their_primitives_and_threads(tmp_path: Path) -> None:
    """A finding's sentence names its primitive by assigned name and creation site, its
    threads by name and native id; its JSON lists each primitive described."""
    log = Log()
    lock = log.created(1, site="app.py:3")
    log.lines[-1]["var"] = "lock_a"
    log.thread(7, "worker")
    log.ev("misuse", 7, prim=lock, what="release_unlocked", error="release unlocked lock",
           site="app.py:9")
    (f,) = find_all(log.scan(tmp_path))
    assert "lock_a (Lock 100.1, created at app.py:3)" in f.message
    assert f.threads == [{"pid": 100, "tid": 7, "name": "worker"}]
    assert f.primitives == [{"prim": lock, "kind": "Lock", "name": None, "var": "lock_a",
                             "created_at": "app.py:3", "func": "f",
                             "label": "lock_a (Lock 100.1, created at app.py:3)"}]
