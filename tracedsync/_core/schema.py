"""The event schema, declared once: every event a log holds, its fields, and the op tuples.

Three tables, pure data:

* ``OP_*``, the op codes: the first item of every tuple the hot path records. The primitives
  import them (through `tracedsync._core.ops`) as plain module-level ints.
* `OPS`: for each op code, the tuple's layout after the common ``(op, ts, ident)`` prefix and the
  `Rule` list that turns it into event fields. `tracedsync._record.decode` builds its decoder
  from it: nothing about a layout is written twice.
* `EVENTS`: every event kind a log can contain (those decoded from op tuples, those that the
  detection and multiprocessing modules record through ``OP_GENERIC`` as a name and a dict, and
  those the recorder writes itself), with the JSON type, presence and meaning of each field.
  docs/events.md (its field tables) and docs/events.schema.json are generated from it
  (``make docs``; ``make docs-check`` fails on drift), and `problems` checks an event against it.

This module imports nothing from tracedsync but ``_version``: the analysis package, the tools
and the tests may all use it. Kept consistent by tests/test_event_schema.py, which decodes
sample tuples, records real programs, and checks every event against these tables.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, Final, Literal, get_args

from .._version import SCHEMA_VERSION

# -- op codes ----------------------------------------------------------------------------------
# The first item of each hot-path tuple, a plain int (the C hot path is handed OP_ACQUIRE and
# OP_RELEASE when it is installed); `OPS` below gives each one's layout. They never reach a log.
OP_THREAD: Final = 0
OP_CREATED: Final = 1
OP_ACQUIRE: Final = 2
OP_RELEASE: Final = 3
OP_SAVE: Final = 4  # the release before a condition wait
OP_RESTORE: Final = 5  # the re-acquire after it
OP_MISUSE: Final = 6
OP_COND_WAIT: Final = 7
OP_COND_WAKE: Final = 8
OP_NOTIFY: Final = 9
OP_STATS: Final = 10
# 11 was OP_DROPPED, never emitted: `dropped` events are written by the recorder itself.
OP_SESSION_END: Final = 12
OP_GENERIC: Final = 13  # rare events of other primitives and of detection: a name, a dict
OP_SEM_ACQUIRE: Final = 14
OP_SEM_RELEASE: Final = 15
OP_EVENT_SET: Final = 16  # set() and clear()
OP_EVENT_WAIT: Final = 17
OP_BARRIER_WAIT: Final = 18
OP_BARRIER_BROKEN: Final = 19
OP_MP_ACQUIRE: Final = 20  # multiprocessing locks: a holder is (pid, native tid), never an ident
OP_VALUE: Final = 21
OP_RMW: Final = 22

# -- the types ---------------------------------------------------------------------------------
JsonType = Literal["int", "number", "bool", "str", "null", "list", "object"]
"""A JSON type as the docs name it: ``number`` is an int or a float; ``int`` never a bool."""
_JSON_TYPES: Final = frozenset(get_args(JsonType))


@dataclasses.dataclass(frozen=True)
class Field:
    """One field of an event (or of an object nested in one)."""

    name: str
    types: tuple[JsonType, ...]
    """Its JSON types: one, or several (``("int", "null")``)."""
    doc: str
    """One line: what it means (docs/events.md and the JSON Schema's ``description``)."""
    optional: bool = False
    """True if some events of the kind lack it (the doc says when)."""
    items: JsonType | tuple[Field, ...] | None = None
    """For a list: the JSON type of its items, or the fields of its items (objects)."""
    fields: tuple[Field, ...] = ()
    """For an object: its fields (none listed: any)."""


def _f(name: str, types: str, doc: str, *, optional: bool = False,
       items: str | tuple[Field, ...] | None = None, fields: tuple[Field, ...] = ()) -> Field:
    """A `Field`, its types written ``"int|null"``; a misspelt type fails at import."""
    parsed = tuple(types.split("|"))
    for t in (*parsed, *([items] if isinstance(items, str) else [])):
        if t not in _JSON_TYPES:
            raise ValueError(f"field {name!r}: unknown JSON type {t!r}")
    return Field(name, parsed, doc, optional, items, fields)  # type: ignore[arg-type]


@dataclasses.dataclass(frozen=True)
class EventKind:
    """One kind of event: the value of its ``event`` field."""

    name: str
    doc: str
    """One line: when it is written (the JSON Schema's ``description``)."""
    fields: tuple[Field, ...]
    """Its own fields, after the `COMMON` ones, in the order they are written."""
    ops: tuple[int, ...] = ()
    """The op codes whose tuples decode to it; empty for what the recorder writes itself."""


# -- fields that many events share ------------------------------------------------------------
COMMON: Final = (
    _f("event", "str", "the kind of event: `session`, `acquire`, ..."),
    _f("ts", "int", "`time.monotonic_ns()` when it happened; comparable across processes of one "
       "host (CLOCK_MONOTONIC)"),
    _f("pid", "int", "process id"),
    _f("tid", "int|null", "native thread id (`threading.get_native_id()`) of the thread that "
       "did it"),
)
"""The fields of every event."""

_PRIM = _f("prim", "str", "the primitive")
_NAME = _f("name", "str|null", "its `name=`, or null")
_KIND = _f("kind", "str", "its kind: `Lock`, `RLock`, `Condition`, `Semaphore`, ...")


def _site(where: str) -> tuple[Field, Field]:
    """``site`` and ``func``: where in user code ``where`` happened (absent when unknown)."""
    return (
        _f("site", "str", f"{where}, as `\"file.py:123\"`", optional=True),
        _f("func", "str", "the function there (its qualified name on 3.11+)", optional=True),
    )


_CALL = _site("where the call was made")
_TIMEOUT = _f("timeout", "number|null", "the caller's `timeout` argument in seconds (null for "
              "none)")
# The `created` event's own extra fields (also repeated by `attached`).
_EXTRA = (
    _f("lock", "str|null", "Condition, Value, Array: the `prim` of its lock (null when that lock "
       "is not traced)", optional=True),
    _f("value", "int", "Semaphore, BoundedSemaphore: the initial value", optional=True),
    _f("parties", "int", "Barrier: threads needed to pass", optional=True),
    _f("timeout", "number|null", "Barrier: its default timeout (null for none)", optional=True),
    _f("start_method", "str|null", "multiprocessing primitives: the start method of their "
       "context (null when unknown)", optional=True),
    _f("typecode", "str", "Value, Array: the typecode, or the name of the ctypes type",
       optional=True),
    _f("length", "int", "Array: its length", optional=True),
)
_KEY = (
    _f("index", "int|str", "for an Array item: its index, normalised (`-1` is `len - 1`); for a "
       "slice: `\"start:stop\"` or `\"start:stop:step\"`, normalised to the array's length. "
       "Absent for a Value's `.value`", optional=True),
    _f("field", "str", "for a Structure field, or a char Array's `value` or `raw`: its name",
       optional=True),
)
_WHAT = _f("what", "str", "how it waits: `acquire`, `restore` (re-acquiring a condition's lock "
           "at the end of a wait), `cond_wait`, `sem_acquire`, `event_wait`, `barrier_wait`")

_CYCLE_ENTRY = (
    _f("pid", "int", "the thread's process"),
    _f("tid", "int|null", "the thread"),
    _f("ident", "int", "its `threading.get_ident()` (threads of this process only)",
       optional=True),
    _f("thread", "str", "its name (threads of this process only)", optional=True),
    _f("prim", "str", "what it waits for"),
    _f("name", "str|null", "that primitive's name"),
    _f("kind", "str|null", "that primitive's kind"),
    _f("what", "str", "`acquire`; `restore` (re-acquiring a condition's lock at the end of a "
       "wait); `cond_wait` (waiting on a Condition: only a holder of the condition's `lock` can "
       "notify it, and `held_by` holds it); `sem_acquire`"),
    _f("lock", "str", "for `cond_wait`: the `prim` of the condition's lock", optional=True),
    _f("site", "str|null", "where it waits"),
    _f("func", "str|null", "the function there"),
    _f("waited_ns", "int|null", "how long it had been waiting when the cycle closed"),
    _f("timeout", "number|null", "its timeout in seconds, or null"),
    _f("held_by", "int|null", "`tid` of the thread that holds it: the next entry's"),
    _f("held_by_pid", "int|null", "the process of `held_by`, when not this one",
       optional=True),
    _f("stack", "list|null", "the thread's stack at that moment; null for a thread of another "
       "process (that process writes its own `deadlock` event for the same cycle)",
       items="str"),
)
_REVERSE_EDGE = (
    _f("from", "str", "the lock held"),
    _f("from_name", "str|null", "its name"),
    _f("to", "str", "the lock taken while `from` was held"),
    _f("to_name", "str|null", "its name"),
    _f("held_site", "str|null", "where `from` was taken"),
    _f("site", "str|null", "where `to` was taken"),
    _f("tid", "int|null", "the thread that did it first"),
)
_HELD = (
    _f("prim", "str", "the primitive held"),
    _f("name", "str|null", "its name"),
    _f("kind", "str", "its kind"),
    _f("depth", "int", "recursion depth (locks), or permits held (semaphores)"),
    _f("held_ns", "int|null", "time since the thread took it (locks; null for semaphores)"),
    _f("site", "str|null", "where it was taken (known with `lock_order` on, else null)"),
)
_WAITING = (
    _f("prim", "str", "what it waits for"),
    _f("name", "str|null", "its name"),
    _f("kind", "str", "its kind"),
    _WHAT,
    _f("waited_ns", "int", "how long it has waited"),
    _f("timeout", "number|null", "its timeout in seconds, or null"),
    _f("site", "str|null", "`\"file:line\"` where it waits"),
    _f("held_by", "list", "`tid`s of the threads that could end the wait", items="int"),
    _f("held_by_pid", "list", "the process of each of `held_by` (a multiprocessing lock's holder "
       "may be in another)", items="int"),
)
_THREAD_SNAPSHOT = (
    _f("ident", "int", "the thread's `threading.get_ident()`"),
    _f("tid", "int|null", "its native id"),
    _f("name", "str", "its name"),
    _f("alive", "bool", "false for a thread that exited while holding something"),
    _f("holds", "list", "what it holds: locks, and semaphores it holds permits of", items=_HELD),
    _f("waiting", "object|null", "what it waits for, or null", fields=_WAITING),
    _f("stack", "list", "its stack", items="str"),
)
_OTHER_WAIT = (
    _f("pid", "int", "the waiting thread's process"),
    _f("tid", "int", "the waiting thread"),
    _f("prim", "str", "the multiprocessing lock it waits for"),
    _f("kind", "str|null", "its kind"),
    _WHAT,
    _f("waited_ns", "int|null", "how long it has waited"),
    _f("timeout", "number|null", "its timeout in seconds, or null"),
    _f("site", "str|null", "`\"file:line function\"` where it waits"),
    _f("held_by", "list|null", "`[pid, tid]` of the holder as last read (refreshed every "
       "`flush_interval`)", items="int"),
)
_SETTINGS = (
    _f("log_dir", "str", "the log directory (absolute)"),
    _f("level", "str", "`off`, `contention` or `full`"),
    _f("flush_interval", "number", "seconds between two flushes"),
    _f("buffer_limit", "int", "events of the Python channel buffered before the flusher is woken "
       "(or, with `overflow=\"drop\"`, before dropping)"),
    _f("buffer_bytes", "int", "memory for the native recorder's records; past it, records are "
       "dropped and counted", optional=True),
    _f("overflow", "str", "`flush` or `drop`"),
    _f("max_log_bytes", "int|null", "the cap on the process's log files together (null: none); "
       "past a quarter of it the file rotates", optional=True),
    _f("processors", "list", "the structlog processors, by qualified name", items="str"),
    _f("logger", "str|null", "the structlog logger's qualified name, or null"),
    _f("on_deadlock", "str", "`report` or `raise`"),
    _f("lock_order", "bool", "whether lock-order checking is on"),
    _f("long_wait", "number|null", "seconds, or null"),
    _f("long_hold", "number|null", "seconds, or null"),
    _f("snapshot_signal", "str", "the signal that writes a `snapshot` (`\"\"` or `\"none\"`: "
       "none)"),
)

STATS_RENAMES: Final[Mapping[str, str]] = {"contended": "contended_count"}
"""`Statistics` attributes whose name differs in the ``stats`` event (schema 2; schema 1 wrote
``contended``, which other events use for a boolean)."""

# -- the events --------------------------------------------------------------------------------
EVENTS: Final[tuple[EventKind, ...]] = (
    EventKind("session", "First line of a file (and of every later session appended to it, "
              "and of each file a rotation starts).", (
        _f("schema", "int", f"the version of this schema, {SCHEMA_VERSION}"),
        _f("version", "str", "tracedsync's version"),
        _f("ppid", "int|null", "the parent process (for a multiprocessing child, the process "
           "that started it)"),
        _f("process", "str|null", "multiprocessing's name for the process, `\"MainProcess\"` or "
           "`\"Process-1\"`; null if the program does not use multiprocessing"),
        _f("argv", "list", "`sys.argv`", items="str"),
        _f("orig_argv", "list", "`sys.orig_argv` (the interpreter's own arguments too; "
           "`sys.argv` before 3.10)", items="str"),
        _f("python", "str", "the Python version, `\"3.11.7\"`"),
        _f("implementation", "str", "`sys.implementation.name`"),
        _f("executable", "str", "`sys.executable`"),
        _f("hostname", "str", "the host's name"),
        _f("boot_id", "str|null", "this boot of the machine (Linux's "
           "`/proc/sys/kernel/random/boot_id`; null where there is none): with `hostname` it "
           "names the host, since pids and the monotonic clock mean something only within one "
           "boot of one machine. Absent in older logs, which `analyze` takes for one host",
           optional=True),
        _f("wall_ns", "int", "`time.time_ns()`"),
        _f("mono_ns", "int", "the monotonic clock at the same instant: "
           "`wall = wall_ns + (ts - mono_ns)`"),
        _f("part", "int", "the headers this process wrote before this one: 0 in its first file; "
           "more continues the same process's stream (the next file of a rotation, "
           "`tracedsync-<pid>.1.jsonl` becoming older; or the file reopened by `configure()`)",
           optional=True),
        _f("settings", "object", "the settings in force", fields=_SETTINGS),
    )),
    EventKind("thread", "A thread records something for the first time in this process.", (
        _f("ident", "int", "`threading.get_ident()`"),
        _f("name", "str", "the thread's name"),
        _f("daemon", "bool", "whether it is a daemon thread"),
    ), (OP_THREAD,)),
    EventKind("created", "A traced primitive was made.", (
        _PRIM,
        _f("kind", "str", "`Lock`, `RLock`, `Condition`, `Semaphore`, `BoundedSemaphore`, "
           "`Event`, `Barrier`, `Value`, `Array`"),
        _f("name", "str|null", "the `name=` given, or null"),
        *_site("where it was created"),
        _f("var", "str", "the name its creating line assigns it to, read from the source by the "
           "flusher: `lock_a` for `lock_a = Lock()`, `Account._lock` for `self._lock = "
           "threading.Lock()` in `Account.__init__` (3.11+; `self._lock` before); absent when "
           "the line is no plain assignment or its source cannot be read", optional=True),
        *_EXTRA,
    ), (OP_CREATED,)),
    EventKind("acquire", "An attempt to acquire a Lock or RLock.", (
        _PRIM,
        _f("depth", "int", "the caller's recursion depth after the attempt (1 for a first "
           "acquire; unchanged on failure)"),
        _f("ok", "bool", "true if the caller got the lock; false for a failed non-blocking try "
           "or a timeout"),
        _f("contended", "bool", "the lock was held by someone else when the caller arrived"),
        _f("wait_ns", "int", "time spent blocked (0 when uncontended)"),
        _f("blocked_by", "int|null", "`tid` of the thread that held it when the caller arrived "
           "(a snapshot; null if unknown)"),
        _f("blocked_by_pid", "int|null", "multiprocessing locks: the pid of `blocked_by` (null "
           "with it)", optional=True),
        _f("blocking", "bool", "the caller's `blocking` argument"),
        _TIMEOUT,
        _f("restored", "bool", "present and true for the re-acquire at the end of a condition "
           "wait; `depth` is then the saved depth", optional=True),
        *_CALL,
    ), (OP_ACQUIRE, OP_RESTORE, OP_MP_ACQUIRE)),
    EventKind("release", "A release of a Lock or RLock.", (
        _PRIM,
        _f("depth", "int", "the caller's recursion depth after the release"),
        _f("saved_depth", "int", "present on the full release before a condition wait (`depth` "
           "is then 0): the depth it saved", optional=True),
        _f("hold_ns", "int", "present when `depth` reached 0: time since the acquire that took "
           "it from 0 to 1", optional=True),
        *_site("with `saved_depth` only: where the call was made"),
    ), (OP_RELEASE, OP_SAVE)),
    EventKind("misuse", "A primitive was used in a way its original refuses.", (
        _PRIM,
        _f("what", "str", "`release_unowned`, `release_unlocked`, `wait_unowned`, "
           "`notify_unowned`, `over_release`"),
        _f("error", "str", "the exception's message"),
        *_CALL,
    ), (OP_MISUSE,)),
    EventKind("cond_wait", "A thread starts waiting on a Condition.", (
        _PRIM,
        _f("lock", "str|null", "the `prim` of the condition's lock (null when it is not traced)"),
        _f("saved_depth", "int", "the recursion depth released for the wait"),
        _TIMEOUT,
        *_CALL,
    ), (OP_COND_WAIT,)),
    EventKind("cond_wake", "A wait on a Condition ended.", (
        _PRIM,
        _f("waited_ns", "int", "from `cond_wait` until woken, excluding the re-acquire"),
        _f("notified", "bool", "true if woken by a notify, false if it timed out"),
        _f("reacquire_ns", "int", "time to get the lock back"),
        *_CALL,
    ), (OP_COND_WAKE,)),
    *(EventKind(name, f"`{name}()` on a Condition.", (
        _PRIM,
        _f("n", "int", "the argument; the number of waiters for `notify_all`"),
        _f("waiters", "int|null", "how many threads were waiting when it was called (0: nobody "
           "received it; null where a multiprocessing Condition cannot tell)"),
        _f("woken", "list", "the `tid`s it woke, in order (absent for a multiprocessing "
           "Condition: its waiters may be in any process)", optional=True, items="int"),
        *_CALL,
    ), (OP_NOTIFY, OP_GENERIC)) for name in ("notify", "notify_all")),
    EventKind("sem_acquire", "An attempt to acquire a Semaphore or BoundedSemaphore.", (
        _PRIM,
        _f("ok", "bool", "true if the caller got a permit; false for a failed non-blocking try "
           "or a timeout"),
        _f("contended", "bool", "no permit was free when the caller arrived"),
        _f("wait_ns", "int", "time spent blocked (0 when uncontended)"),
        _f("permits", "int|null", "the semaphore's value just after the attempt (a snapshot; "
           "null where the platform cannot read it)"),
        _f("held", "int", "permits the caller holds after the attempt"),
        _f("blocking", "bool", "the caller's `blocking` argument"),
        _TIMEOUT,
        *_CALL,
    ), (OP_SEM_ACQUIRE,)),
    EventKind("sem_release", "A release of a Semaphore or BoundedSemaphore.", (
        _PRIM,
        _f("n", "int", "the argument: permits released"),
        _f("permits", "int|null", "the semaphore's value just after the release (a snapshot)"),
        _f("held", "int", "permits the caller still holds"),
        _f("for_others", "int", "how many of the `n` permits were held by other threads (0 "
           "normally)"),
        *_CALL,
    ), (OP_SEM_RELEASE,)),
    *(EventKind(name, f"`{name[6:]}()` on an Event.", (
        _PRIM,
        _f("was_set", "bool", "the flag just before the call (a snapshot)"),
        *_CALL,
    ), (OP_EVENT_SET,)) for name in ("event_set", "event_clear")),
    EventKind("event_wait", "A wait on an Event ended.", (
        _PRIM,
        _f("result", "bool", "what `wait()` returned: true if the flag was set, false if it "
           "timed out"),
        _f("already_set", "bool", "the flag was set when the wait began (the wait did not "
           "block)"),
        _f("waited_ns", "int", "time spent in `wait()`; 0 for a wait without a timeout that "
           "found the flag set, when the native recorder wrote it"),
        _TIMEOUT,
        *_CALL,
    ), (OP_EVENT_WAIT,)),
    EventKind("barrier_wait", "A thread passed a Barrier.", (
        _PRIM,
        _f("index", "int", "what `wait()` returned: the order of arrival, `parties - 1` for the "
           "last"),
        _f("waited_ns", "int", "time spent in `wait()`"),
        _f("parties", "int", "threads needed to pass"),
        _f("n_waiting", "int", "threads already waiting when this one arrived (a snapshot)"),
        _f("timeout", "number|null", "the timeout in force: the caller's, or the barrier's "
           "default (null for none)"),
        *_CALL,
    ), (OP_BARRIER_WAIT,)),
    EventKind("barrier_broken", "A thread saw a Barrier break.", (
        _PRIM,
        _f("broken_by", "int|null", "`tid` of the thread that broke it (equal to `tid` for the "
           "thread that did)"),
        _f("broken_by_pid", "int|null", "multiprocessing barriers: the pid of `broken_by`",
           optional=True),
        _f("why", "str|null", "`timeout` (`broken_by`'s wait timed out), `abort`, `action` (the "
           "action raised) or `reset` (`reset()` while threads waited)"),
        _f("error", "str", "for `why: action`: repr of the action's exception", optional=True),
        _f("waited_ns", "int", "the wait's time; absent for the aborting thread, which did not "
           "wait", optional=True),
        _f("timeout", "number|null", "the wait's timeout; absent with `waited_ns`",
           optional=True),
        _f("n_waiting", "int", "threads waiting when this thread arrived (or called `abort()`), "
           "a snapshot"),
        *_CALL,
    ), (OP_BARRIER_BROKEN, OP_GENERIC)),
    *(EventKind(name, f"`{name[8:]}()` was called on a Barrier.", (
        _PRIM,
        _f("n_waiting", "int", "threads waiting just before, a snapshot"),
        _f("was_broken", "bool", "the barrier was already broken"),
        *_CALL,
    ), (OP_GENERIC,)) for name in ("barrier_abort", "barrier_reset")),
    EventKind("interrupted", "An exception escaped a blocked acquire or wait.", (
        _PRIM,
        _f("error", "str", "repr of the exception"),
        *_CALL,
    ), (OP_GENERIC,)),
    EventKind("reinit", "`_at_fork_reinit()` was called on a primitive.", (
        _PRIM,
        *_CALL,
    ), (OP_GENERIC,)),
    EventKind("stats", "The counters of one primitive, at exit or when it is collected.", (
        _PRIM,
        _KIND,
        _NAME,
        _f("acquisitions", "int", "successful acquisitions, nested ones included"),
        _f("contended_count", "int", "acquisitions that found the primitive held by someone "
           "else (schema 1: `contended`)"),
        _f("failed", "int", "non-blocking or timed-out acquisitions that did not get it"),
        _f("max_depth", "int", "the deepest recursion seen"),
        _f("wait_ns", "int", "total time spent blocked in contended acquisitions (and in "
           "waits, for semaphores, events and barriers)"),
        _f("hold_ns", "int", "total time held, from the first acquire to the release that "
           "returned depth to 0"),
        _f("misuse", "int", "releases by a thread that did not hold it, and other misuse"),
        _f("owner", "int|null", "ident of the holder at that moment, or null"),
        _f("owner_stack", "list", "the holder's stack at that moment, when it is alive (a lock "
           "still held at exit: where its holder is)", optional=True, items="str"),
        _f("depth", "int", "the holder's depth at that moment"),
        _f("waits", "int", "Condition, Event and Barrier waits (Barrier: ended, passed or "
           "broken)"),
        _f("wait_timeouts", "int", "waits that timed out (Barrier: the waits whose timeout "
           "broke it)"),
        _f("notifies", "int", "`notify`/`notify_all` calls (conditions)"),
        _f("unheard_notifies", "int", "notifies that found no waiter (conditions)"),
        _f("permits", "int|null", "semaphores: the value now", optional=True),
        _f("max_permits", "int|null", "BoundedSemaphore: the bound, its initial value",
           optional=True),
        _f("releases", "int", "semaphores: successful `release()` calls", optional=True),
        _f("held_by", "list", "semaphores: the threads holding permits at that moment, oldest "
           "first (at exit: permits never given back)", optional=True, items=(
               _f("tid", "int|null", "the thread"),
               _f("ident", "int", "its ident"),
               _f("permits", "int", "permits it holds"),
           )),
        _f("sets", "int", "Event: `set()` calls", optional=True),
        _f("clears", "int", "Event: `clear()` calls", optional=True),
        _f("flag", "bool|null", "Event: set now", optional=True),
        _f("parties", "int|null", "Barrier: threads needed to pass", optional=True),
        _f("broken", "bool|null", "Barrier: broken now", optional=True),
        _f("breaks", "int", "Barrier: times it went from working to broken", optional=True),
        _f("broken_waits", "int", "Barrier: waits that ended broken", optional=True),
        _f("aborts", "int", "Barrier: `abort()` calls", optional=True),
        _f("resets", "int", "Barrier: `reset()` calls", optional=True),
        _f("reads", "int", "Value, Array: gets of `.value` or of items, in this process",
           optional=True),
        _f("writes", "int", "Value, Array: sets of `.value` or of items, in this process",
           optional=True),
        _f("unlocked", "int", "Value, Array: reads and writes made without the caller holding "
           "the value's lock", optional=True),
        _f("rmws", "int", "Value, Array: every unsynchronised read-modify-write seen, not only "
           "the first of each site", optional=True),
    ), (OP_STATS,)),
    EventKind("dropped", "Events were lost.", (
        _f("count", "int", "how many"),
        _f("reason", "str", "`overflow` (the Python channel past its limit), `buffer_full` (the "
           "native recorder's records past `buffer_bytes`: one event per thread, whose `tid` it "
           "carries), `write_failed` (the sink could not write) or `rotated` (`max_log_bytes`: "
           "the oldest file was deleted; written after the header of the file that replaced it, "
           "`count` is the events the deleted file held)", optional=True),
    ), ()),
    EventKind("session_end", "Last line of a process that exited normally.", (
        _f("dropped", "int", "events dropped by overflow"),
        _f("written", "int", "events written by this process, this line included"),
    ), (OP_SESSION_END,)),
    # -- runtime detection --
    EventKind("deadlock", "A blocking acquire closed a cycle in the wait-for graph.", (
        _f("detected_by", "str", "`acquire` (the closing thread's own check) or `watchdog` "
           "(found by the periodic scan, for a cycle no check saw)"),
        _f("action", "str", "`raise` (the closing thread raised `DeadlockError` instead of "
           "blocking) or `report`"),
        _f("certain", "bool", "false when something outside the cycle could still end it: a "
           "plain `Lock` or a semaphore, which any thread may release"),
        _f("cycle", "list", "one entry per thread, the closing thread first", items=_CYCLE_ENTRY),
        *_site("where the closing thread waits"),
    ), (OP_GENERIC,)),
    EventKind("deadlock_end", "A thread whose wait was part of a reported deadlock stopped "
              "waiting.", (
        _PRIM,
        _f("what", "str", "how it waited: `acquire`, `restore`, `cond_wait`, `sem_acquire`"),
        _f("ok", "bool|null", "true: it got what it waited for (a thread outside the cycle "
           "released it, or the cycle was broken elsewhere); false: it gave up (its timeout "
           "expired); null: an exception ended the wait, or how it ended is not known"),
        _f("waited_ns", "int", "how long it waited in all"),
        _f("timeout", "number|null", "its timeout in seconds, or null"),
        *_site("where it waited"),
    ), (OP_GENERIC,)),
    EventKind("nested_monitor", "A thread blocked on a lock whose holder waits on a Condition "
              "(over another lock).", (
        _f("prim", "str", "the lock the thread (`tid`) waits for"),
        _f("name", "str|null", "its name"),
        _f("kind", "str", "its kind: `Lock` or `RLock`"),
        _f("thread", "str", "the waiting thread's name"),
        _f("cond", "str", "the Condition its holder waits on"),
        _f("cond_name", "str|null", "its name"),
        _f("cond_lock", "str|null", "the condition's own lock (released by the wait; `prim` is "
           "not)"),
        _f("holder", "int|null", "`tid` of the holder of `prim`, waiting on `cond`"),
        _f("holder_thread", "str", "its name"),
        _f("holder_site", "str|null", "where the holder waits on `cond`"),
        _f("holder_func", "str|null", "the function there"),
        _f("held_site", "str|null", "where the holder took `prim` (known with `lock_order` on, "
           "else null)"),
        _f("timeout", "number|null", "the holder's wait timeout in seconds, or null"),
        _f("stack", "list", "the waiting thread's stack", items="str"),
        _f("holder_stack", "list", "the holder's stack", items="str"),
        *_site("where the thread waits for `prim`"),
    ), (OP_GENERIC,)),
    EventKind("lock_order", "A lock was taken against the order seen before.", (
        _f("prim", "str", "the lock just taken"),
        _f("name", "str|null", "its name"),
        _f("held", "str", "the lock held"),
        _f("held_name", "str|null", "its name"),
        _f("held_site", "str|null", "where it was taken"),
        _f("reverse", "list", "the earlier path from `prim` back to `held`, one edge per entry",
           items=_REVERSE_EDGE),
        _f("stack", "list", "the caller's stack", items="str"),
        *_site("where `prim` was taken"),
    ), (OP_GENERIC,)),
    EventKind("long_wait", "A thread has been blocked longer than `long_wait` and still is.", (
        _PRIM,
        _NAME,
        _KIND,
        _WHAT,
        _f("wait_ns", "int", "how long it had waited so far"),
        _f("timeout", "number|null", "its timeout in seconds, or null"),
        _f("blocked_by", "int|null", "`tid` of the holder, when there is exactly one in this "
           "process (a lock)"),
        _f("owners", "list", "`tid`s of the threads that could end the wait; empty when unknown "
           "(Event, Barrier)", items="int"),
        _f("ongoing", "bool", "true: the wait had not ended"),
        _f("stack", "list", "the waiting thread's stack", items="str"),
        _f("lock", "str", "for `cond_wait`: the condition's lock", optional=True),
        *_site("where it waits"),
    ), (OP_GENERIC,)),
    EventKind("long_hold", "A lock has been held longer than `long_hold` and still is.", (
        _PRIM,
        _NAME,
        _KIND,
        _f("hold_ns", "int", "how long it had been held so far"),
        _f("depth", "int", "the holder's recursion depth"),
        _f("ongoing", "bool", "true: still held"),
        _f("alive", "bool", "false if the holder has exited (it died holding the lock)"),
        _f("stack", "list", "the holder's stack (empty if it has exited)", items="str"),
        _f("site", "str", "where it was taken, as `\"file.py:123\"`: present only when "
           "`lock_order` is on (otherwise `stack` shows where the holder is)", optional=True),
    ), (OP_GENERIC,)),
    EventKind("snapshot", "Who holds and who waits for what, with every thread's stack.", (
        _f("threads", "list", "one entry per Python thread of the process, the main thread "
           "first", items=_THREAD_SNAPSHOT),
        _f("deadlocks", "list", "one list of `tid`s per cycle of the wait-for graph at that "
           "moment", items="list"),
        _f("other_processes", "list", "threads of other processes blocked on multiprocessing "
           "locks this process shares", items=_OTHER_WAIT),
        _f("reason", "str", "`\"signal SIGUSR1\"` or `\"api\"`"),
    ), (OP_GENERIC,)),
    # -- pytest --
    EventKind("test", "A test started or ended (written by the pytest plugin).", (
        _f("nodeid", "str", "the test's node id, as pytest names it"),
        _f("phase", "str", "`start` or `end`"),
        _f("outcome", "str", "at `end`: `passed`, `failed` or `skipped` (any of its setup, "
           "call and teardown failed: `failed`)", optional=True),
    ), (OP_GENERIC,)),
    # -- multiprocessing --
    EventKind("attached", "A primitive created in another process arrived by pickling.", (
        _f("prim", "str", "the id given where it was created"),
        _KIND,
        _NAME,
        *_EXTRA,
    ), (OP_GENERIC,)),
    *(EventKind(name, f"A {name[6:]} of a multiprocessing Value's or Array's contents.", (
        _PRIM,
        *_KEY,
        _f("locked", "bool|null", "whether the caller already held the value's lock: null when "
           "tracedsync cannot tell"),
        *_site("where the access was made"),
    ), (OP_VALUE,)) for name in ("value_get", "value_set")),
    EventKind("rmw", "An unsynchronised read-modify-write of a multiprocessing Value or Array.", (
        _f("prim", "str", "the Value or Array"),
        *_KEY,
        _f("read_site", "str|null", "where the read it completes was made"),
        _f("read_func", "str|null", "the function there"),
        _f("read_locked", "bool|null", "whether the read was made holding the lock"),
        *_site("where the write was made"),
    ), (OP_RMW,)),
)
"""Every kind of event a log holds, in the order docs/events.md describes them."""

BY_NAME: Final[Mapping[str, EventKind]] = {k.name: k for k in EVENTS}


# -- the op tuples -----------------------------------------------------------------------------
How = Literal["copy", "tid", "tids", "timeout", "const", "opt", "flag", "site", "site_always",
              "key", "merge", "held_by", "thread", "assigned"]


@dataclasses.dataclass(frozen=True)
class Rule:
    """How one or two tuple positions become event fields (in order: the event's field order).

    ``how``: ``copy`` the value; ``tid`` map a thread ident to its native id (null stays null);
    ``tids`` the same for each item of a sequence, into a list; ``timeout`` copy, but a negative
    one (``-1``: none) is null; ``const`` write ``value``, reading nothing; ``opt`` copy, only
    when ``when`` (default: the source) is not None; ``flag`` write true, only when the source
    is true; ``site`` turn ``(code, pos)`` into ``site`` and ``func``, absent when unknown;
    ``site_always`` the same into ``field`` and ``also``, null when unknown; ``key`` what part
    of a Value or Array (``index`` or ``field``, or nothing); ``merge`` add every item of a
    dict (or nothing for None); ``held_by`` name the threads of a merged ``held_by``; ``thread``
    (the ``thread`` event's): its source, the native id, is the event's ``tid``, and what
    ``ident`` maps to from then on; ``assigned`` the name the line at ``(code, pos)`` assigns
    to, read from the source once per line (absent when there is none).
    """

    how: How
    field: str
    src: tuple[str, ...] = ()
    value: object = None
    when: str | None = None
    also: str = ""

    def writes(self) -> tuple[str, ...]:
        """The fields it may write (a ``merge`` writes what its dict holds: not known here)."""
        if self.how == "key":
            return ("index", "field")
        if self.how in ("site", "site_always"):
            return (self.field, self.also)
        if self.how in ("merge", "thread"):
            return ()
        return (self.field,)

    @property
    def always(self) -> bool:
        """Whether every decoded event has its fields."""
        return self.how in ("copy", "tid", "tids", "timeout", "const", "site_always", "thread")


def _copy(field: str, src: str | None = None) -> Rule:
    return Rule("copy", field, (src or field,))


def _tid(field: str, src: str | None = None) -> Rule:
    return Rule("tid", field, (src or field,))


def _opt(field: str, when: str | None = None) -> Rule:
    return Rule("opt", field, (field,), when=when)


def _const(field: str, value: object) -> Rule:
    return Rule("const", field, value=value)


_SITE = Rule("site", "site", ("code", "lineno"), also="func")
_KEYR = Rule("key", "", ("key",))


@dataclasses.dataclass(frozen=True)
class Op:
    """One op code: the layout of its tuples and how they decode."""

    code: int
    const: str
    """The ``OP_*`` name."""
    layout: tuple[str, ...]
    """The positions after ``(op, ts, ident)``, by name. ``code, lineno`` is a call site: a code
    object (or None) and a line, or ``-(lasti + 1)`` for the offset of the calling instruction
    (`tracedsync._core.sites`)."""
    rules: tuple[Rule, ...]
    event: str | tuple[str, str] | None
    """The event's name; or ``(if false, if true)`` chosen by position ``select``; or None: the
    name is position ``name`` (``OP_GENERIC``)."""
    select: str | None = None

    def events(self) -> tuple[str, ...]:
        """The event names it decodes to (empty for ``OP_GENERIC``: any)."""
        if self.event is None:
            return ()
        return (self.event,) if isinstance(self.event, str) else self.event


_CS = ("code", "lineno")
OPS: Final[tuple[Op, ...]] = (
    Op(OP_THREAD, "OP_THREAD", ("native_id", "name", "daemon"),
       (Rule("thread", "tid", ("native_id",)), _copy("ident"), _copy("name"), _copy("daemon")),
       "thread"),
    Op(OP_CREATED, "OP_CREATED", ("prim", "kind", "name", *_CS, "extra"),
       (_copy("prim"), _copy("kind"), _copy("name"), _SITE,
        Rule("assigned", "var", ("code", "lineno")), Rule("merge", "", ("extra",))),
       "created"),
    Op(OP_ACQUIRE, "OP_ACQUIRE",
       ("prim", "depth", "ok", "contended", "wait_ns", "blocked_by", "blocking", "timeout", *_CS),
       (_copy("prim"), _copy("depth"), _copy("ok"), _copy("contended"), _copy("wait_ns"),
        _tid("blocked_by"), _copy("blocking"), Rule("timeout", "timeout", ("timeout",)), _SITE),
       "acquire"),
    Op(OP_RELEASE, "OP_RELEASE", ("prim", "depth", "hold_ns"),
       (_copy("prim"), _copy("depth"), _opt("hold_ns")),
       "release"),
    Op(OP_SAVE, "OP_SAVE", ("prim", "saved_depth", "hold_ns", *_CS),
       (_copy("prim"), _const("depth", 0), _copy("saved_depth"), _opt("hold_ns"), _SITE),
       "release"),
    Op(OP_RESTORE, "OP_RESTORE", ("prim", "depth", "wait_ns", "contended", "blocked_by", *_CS),
       (_copy("prim"), _copy("depth"), _const("ok", True), _copy("contended"), _copy("wait_ns"),
        _tid("blocked_by"), _const("blocking", True), _const("timeout", None),
        _const("restored", True), _SITE),
       "acquire"),
    Op(OP_MISUSE, "OP_MISUSE", ("prim", "what", "message", *_CS),
       (_copy("prim"), _copy("what"), _copy("error", "message"), _SITE),
       "misuse"),
    Op(OP_COND_WAIT, "OP_COND_WAIT", ("prim", "lock", "saved_depth", "timeout", *_CS),
       (_copy("prim"), _copy("lock"), _copy("saved_depth"), _copy("timeout"), _SITE),
       "cond_wait"),
    Op(OP_COND_WAKE, "OP_COND_WAKE", ("prim", "waited_ns", "notified", "reacquire_ns", *_CS),
       (_copy("prim"), _copy("waited_ns"), _copy("notified"), _copy("reacquire_ns"), _SITE),
       "cond_wake"),
    Op(OP_NOTIFY, "OP_NOTIFY", ("prim", "n", "waiters", "woken", "all", *_CS),
       (_copy("prim"), _copy("n"), _copy("waiters"), Rule("tids", "woken", ("woken",)), _SITE),
       ("notify", "notify_all"), select="all"),
    Op(OP_STATS, "OP_STATS", ("prim", "stats"),
       (_copy("prim"), Rule("merge", "", ("stats",)), Rule("held_by", "held_by")),
       "stats"),
    Op(OP_SESSION_END, "OP_SESSION_END", ("counters",), (Rule("merge", "", ("counters",)),),
       "session_end"),
    Op(OP_GENERIC, "OP_GENERIC", ("name", "fields", *_CS),
       (Rule("merge", "", ("fields",)), _SITE),
       None),
    Op(OP_SEM_ACQUIRE, "OP_SEM_ACQUIRE",
       ("prim", "ok", "contended", "wait_ns", "permits", "held", "blocking", "timeout", *_CS),
       (_copy("prim"), _copy("ok"), _copy("contended"), _copy("wait_ns"), _copy("permits"),
        _copy("held"), _copy("blocking"), _copy("timeout"), _SITE),
       "sem_acquire"),
    Op(OP_SEM_RELEASE, "OP_SEM_RELEASE", ("prim", "n", "permits", "held", "for_others", *_CS),
       (_copy("prim"), _copy("n"), _copy("permits"), _copy("held"), _copy("for_others"), _SITE),
       "sem_release"),
    Op(OP_EVENT_SET, "OP_EVENT_SET", ("prim", "flag", "was_set", *_CS),
       (_copy("prim"), _copy("was_set"), _SITE),
       ("event_clear", "event_set"), select="flag"),
    Op(OP_EVENT_WAIT, "OP_EVENT_WAIT",
       ("prim", "result", "already_set", "waited_ns", "timeout", *_CS),
       (_copy("prim"), _copy("result"), _copy("already_set"), _copy("waited_ns"),
        _copy("timeout"), _SITE),
       "event_wait"),
    Op(OP_BARRIER_WAIT, "OP_BARRIER_WAIT",
       ("prim", "index", "waited_ns", "parties", "n_waiting", "timeout", *_CS),
       (_copy("prim"), _copy("index"), _copy("waited_ns"), _copy("parties"), _copy("n_waiting"),
        _copy("timeout"), _SITE),
       "barrier_wait"),
    Op(OP_BARRIER_BROKEN, "OP_BARRIER_BROKEN",
       ("prim", "broken_by", "why", "error", "waited_ns", "n_waiting", "timeout", *_CS),
       (_copy("prim"), _tid("broken_by"), _copy("why"), _opt("error"), _opt("waited_ns"),
        _opt("timeout", when="waited_ns"), _copy("n_waiting"), _SITE),
       "barrier_broken"),
    Op(OP_MP_ACQUIRE, "OP_MP_ACQUIRE",
       ("prim", "depth", "ok", "contended", "wait_ns", "by_pid", "by_tid", "blocking", "timeout",
        "restored", *_CS),
       (_copy("prim"), _copy("depth"), _copy("ok"), _copy("contended"), _copy("wait_ns"),
        _copy("blocked_by", "by_tid"), _copy("blocked_by_pid", "by_pid"), _copy("blocking"),
        _copy("timeout"), Rule("flag", "restored", ("restored",)), _SITE),
       "acquire"),
    Op(OP_VALUE, "OP_VALUE", ("prim", "is_set", "key", "locked", *_CS),
       (_copy("prim"), _KEYR, _copy("locked"), _SITE),
       ("value_get", "value_set"), select="is_set"),
    Op(OP_RMW, "OP_RMW", ("prim", "key", "read_code", "read_lineno", "read_locked", *_CS),
       (_copy("prim"), _KEYR,
        Rule("site_always", "read_site", ("read_code", "read_lineno"), also="read_func"),
        _copy("read_locked"), _SITE),
       "rmw"),
)
"""Every op code's tuple layout and decoding rules."""


# -- checking an event against the table ------------------------------------------------------
def _type_ok(value: Any, t: str) -> bool:
    if t == "null":
        return value is None
    if t == "bool":
        return isinstance(value, bool)
    if t == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    if t == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if t == "str":
        return isinstance(value, str)
    if t == "list":
        return isinstance(value, list)
    return isinstance(value, dict)


def _check(value: Mapping[str, Any], fields: tuple[Field, ...], where: str) -> list[str]:
    out: list[str] = []
    known = {f.name: f for f in fields}
    for key in value:
        if key not in known:
            out.append(f"{where}: unknown field {key!r}")
    for f in fields:
        if f.name not in value:
            if not f.optional:
                out.append(f"{where}: missing field {f.name!r}")
            continue
        v = value[f.name]
        at = f"{where}.{f.name}"
        if not any(_type_ok(v, t) for t in f.types):
            out.append(f"{at}: {v!r} is not {' or '.join(f.types)}")
        elif isinstance(v, dict) and f.fields:
            out.extend(_check(v, f.fields, at))
        elif isinstance(v, list) and f.items is not None:
            for i, item in enumerate(v):
                if isinstance(f.items, str):
                    if not _type_ok(item, f.items):
                        out.append(f"{at}[{i}]: {item!r} is not {f.items}")
                elif not isinstance(item, dict):
                    out.append(f"{at}[{i}]: {item!r} is not an object")
                else:
                    out.extend(_check(item, f.items, f"{at}[{i}]"))
    return out


def problems(event: Mapping[str, Any]) -> list[str]:
    """What is wrong with ``event`` (as parsed from a log line) by this schema; empty if
    nothing: an unknown name, an unknown or missing field, a value of the wrong JSON type."""
    name = event.get("event")
    kind = BY_NAME.get(name) if isinstance(name, str) else None
    if kind is None:
        return [f"unknown event {name!r}"]
    return _check(event, COMMON + kind.fields, kind.name)


# -- the JSON Schema ---------------------------------------------------------------------------
_JSON_NAMES: Final = {"int": "integer", "number": "number", "bool": "boolean", "str": "string",
                      "null": "null", "list": "array", "object": "object"}


def _field_schema(f: Field) -> dict[str, Any]:
    types = [_JSON_NAMES[t] for t in f.types]
    out: dict[str, Any] = {"type": types[0] if len(types) == 1 else types, "description": f.doc}
    if f.fields:
        out.update(_object_schema(f.fields))
    if isinstance(f.items, str):
        out["items"] = {"type": _JSON_NAMES[f.items]}
    elif f.items is not None:
        out["items"] = {"type": "object", **_object_schema(f.items)}
    return out


def _object_schema(fields: tuple[Field, ...]) -> dict[str, Any]:
    return {
        "properties": {f.name: _field_schema(f) for f in fields},
        "required": [f.name for f in fields if not f.optional],
        "additionalProperties": False,
    }


def json_schema() -> dict[str, Any]:
    """A JSON Schema (draft 2020-12) of one log line: one of `EVENTS`, told by ``event``."""
    defs: dict[str, Any] = {}
    for kind in EVENTS:
        body = _object_schema(COMMON + kind.fields)
        body["properties"]["event"] = {"const": kind.name}
        defs[kind.name] = {"type": "object", "description": kind.doc, **body}
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": f"tracedsync log event, schema {SCHEMA_VERSION}",
        "description": "One line of a tracedsync JSON-lines log (docs/events.md).",
        "oneOf": [{"$ref": f"#/$defs/{kind.name}"} for kind in EVENTS],
        "$defs": defs,
    }
