"""The shared wait table: what each process's threads wait for, readable from the other processes.

Design note (the concurrency reasoning; read `_detect.py` and `_mp_owner.py` first).

Why. A thread blocked on a multiprocessing lock held by another process knows the holder from
the lock's shared owner record, but not what *that* thread is waiting for: that lives in the
other process's `_detect.WAITS`. To close a wait-for cycle across processes, each process
publishes its blocked threads' waits on multiprocessing locks here, and `_detect` reads them
(`_detect.set_remote(lookup)`).

Where. A small file (under ``/dev/shm`` where it exists, else the temporary directory), mapped
shared by every process that uses it. The first traced multiprocessing lock of a process tree
creates it; the lock carries its path when pickled to a spawn or forkserver child (next to the
owner record), and a forked child inherits the mapping. A multiprocessing lock can only reach a
process by inheritance, so every process that shares a lock knows the table the lock was made
with; a process that knows several (rare) publishes a wait in the table of the lock it waits on
and looks in all of them. The creator unlinks the file when it exits: processes that mapped it
keep it; a process started later makes its own.

Layout. ``BLOCKS`` block headers (the pid that claimed the block, 0 when free), then ``BLOCKS``
blocks of ``SLOTS`` slots of ``WORDS`` int64: a sequence number, the waiter ``(pid << 32) | tid``
(0 when free), the lock's id, the holder's owner word as read, when it was read, when the wait
began, flags, the timeout and the user's site as text.

Who writes. A process claims a whole block at its first published wait, under a POSIX record
lock on the file (``lockf``: per process, released by the kernel if the process dies; held for
microseconds, never while blocked, and taken without blocking: if busy for 10 ms, the wait is
simply not published) together with a `_thread` lock for its own threads; blocks of dead
processes are reclaimed then. Inside its blocks a process writes only under its own
``_slots_lock`` (a raw `_thread` lock, never a traced one, held for microseconds, renewed in a
forked child): the waiting thread publishes before it blocks and clears after; the flusher's
tick refreshes the owner word of every published wait. So each slot has one writer at a time.

Who reads. Any process, without a lock: a seqlock. The writer makes the sequence odd, writes the
fields, makes it even; a reader retries while it is odd or changed under it. On x86 (TSO) the
stores are seen in order; on weaker memory models a torn read is possible in principle and
costs at most a missed or delayed report: `_detect` confirms a cycle by reading it twice.

Stale holders. The owner word in a slot is what the waiter read when it began (and what the
last tick read since): the holder may have released meanwhile. `_detect` trusts an edge
"W waits for a lock held by H" read from a slot only if H's own wait began before that read (a
blocked thread releases nothing, so H still holds it). A process that has the lock itself reads
the owner record instead (fresh). The two-process AB-BA is therefore found by the thread that
closes it; a longer cycle through locks the checking process does not have is found by a later
tick, once the refreshed reads postdate every wait.
"""

from __future__ import annotations

import _thread
import atexit
import os
import struct
import time
from types import FrameType
from typing import Any

from .._core import runtime as rt
from .._core.diagnostics import report
from .._core.registry import state_of
from .._core.waits import RemoteWait, set_remote
from .owner import _TID_MASK, OWNER, owner_word

try:
    import fcntl
    import mmap
except ImportError:  # pragma: no cover - Windows: no cross-process wait table
    fcntl = None  # type: ignore[assignment]

BLOCKS = 64
SLOTS = 16
WORDS = 24
_SLOT_BYTES = WORDS * 8
_HEADERS = BLOCKS * 8
SIZE = _HEADERS + BLOCKS * SLOTS * _SLOT_BYTES

# Word offsets inside a slot.
SEQ, WAITER, PRIM_PID, PRIM_N, HOLDER, READ_AT, SINCE, FLAGS, TIMEOUT, SITE_LEN = range(10)
_FIELDS = struct.Struct("<10q")
_SITE_AT = 10 * 8
SITE_MAX = (WORDS - 10) * 8
F_RLOCK, F_RESTORE, F_TIMED = 1, 2, 4
_Q = struct.Struct("<q")
_HEADS = struct.Struct(f"<{BLOCKS}q")
_CLAIM_TRIES = 100


class Table:
    """One mapped wait table (see the module note)."""

    def __init__(self, path: str, creator: bool, fd: int | None = None) -> None:
        self.path = path
        if fd is None:
            fd = os.open(path, os.O_RDWR | (os.O_CREAT | os.O_EXCL if creator else 0), 0o600)
        try:
            if creator:
                os.ftruncate(fd, SIZE)
            elif os.fstat(fd).st_size != SIZE:
                raise OSError(f"{path}: not a wait table of this version")
            self.mm = mmap.mmap(fd, SIZE)
        except BaseException:
            os.close(fd)
            raise
        self.fd = fd  # kept open: closing any descriptor of the file drops our lockf
        self.creator_pid = os.getpid() if creator else 0
        self.blocks: list[int] = []  # the blocks this process claimed

    # -- reading (any thread, any process, no lock) -----------------------------------------
    def read_slot(self, off: int) -> tuple[tuple[int, ...], bytes] | None:
        """The fields and site text of the slot at ``off``, consistent (seqlock), or None."""
        mm = self.mm
        for _ in range(20):
            fields = _FIELDS.unpack_from(mm, off)
            seq = fields[SEQ]
            if seq & 1:
                continue
            n = fields[SITE_LEN]
            site = mm[off + _SITE_AT: off + _SITE_AT + max(0, min(n, SITE_MAX))]
            if _Q.unpack_from(mm, off)[0] == seq:
                return fields, site
        return None

    def find(self, word: int) -> tuple[tuple[int, ...], bytes] | None:
        """The published wait of the thread ``word`` (``(pid << 32) | tid``), if any."""
        pid = word >> 32
        mm = self.mm
        for b, claimed in enumerate(_HEADS.unpack_from(mm, 0)):
            if claimed != pid:
                continue
            base = _HEADERS + b * SLOTS * _SLOT_BYTES
            for s in range(SLOTS):
                off = base + s * _SLOT_BYTES
                if _Q.unpack_from(mm, off + WAITER * 8)[0] == word:
                    got = self.read_slot(off)
                    if got is not None and got[0][WAITER] == word:
                        return got
        return None

    # -- writing (this process's own slots, under _slots_lock) ----------------------------
    def write(self, off: int, fields: tuple[int, ...], site: bytes = b"") -> None:
        mm = self.mm
        seq = _Q.unpack_from(mm, off)[0] | 1
        _Q.pack_into(mm, off, seq)  # odd: being written
        _FIELDS.pack_into(mm, off, seq, *fields[1:])
        if site:
            mm[off + _SITE_AT: off + _SITE_AT + len(site)] = site
        _Q.pack_into(mm, off, seq + 1)

    def free_slot(self) -> int | None:
        """A free slot in this process's blocks, claiming a new block if all are busy."""
        mm = self.mm
        for b in self.blocks:
            base = _HEADERS + b * SLOTS * _SLOT_BYTES
            for s in range(SLOTS):
                off = base + s * _SLOT_BYTES
                if _Q.unpack_from(mm, off + WAITER * 8)[0] == 0:
                    return off
        claimed = self._claim_block()
        if claimed is None:
            return None
        return _HEADERS + claimed * SLOTS * _SLOT_BYTES

    def _claim_block(self) -> int | None:
        if not _file_lock(self.fd):
            return None
        try:
            me = os.getpid()
            heads = _HEADS.unpack_from(self.mm, 0)
            for b, pid in enumerate(heads):
                if pid and pid != me and _alive(pid):
                    continue
                if pid == me and b in self.blocks:
                    continue
                # Free, ours from before a fork of the same pid (impossible), or of a dead process.
                base = _HEADERS + b * SLOTS * _SLOT_BYTES
                self.mm[base: base + SLOTS * _SLOT_BYTES] = bytes(SLOTS * _SLOT_BYTES)
                _Q.pack_into(self.mm, b * 8, me)
                self.blocks.append(b)
                return b
            return None
        finally:
            _file_unlock(self.fd)

    def release_blocks(self) -> None:
        """Give back this process's blocks whose slots are all free (at exit)."""
        if not self.blocks or not _file_lock(self.fd):
            return
        try:
            for b in list(self.blocks):
                base = _HEADERS + b * SLOTS * _SLOT_BYTES
                if all(_Q.unpack_from(self.mm, base + s * _SLOT_BYTES + WAITER * 8)[0] == 0
                       for s in range(SLOTS)):
                    _Q.pack_into(self.mm, b * 8, 0)
                    self.blocks.remove(b)
        finally:
            _file_unlock(self.fd)


def _file_lock(fd: int) -> bool:
    for i in range(_CLAIM_TRIES):
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, 0)
            return True
        except OSError:
            if i + 1 < _CLAIM_TRIES:
                time.sleep(0.0001)
    return False


def _file_unlock(fd: int) -> None:
    try:
        fcntl.lockf(fd, fcntl.LOCK_UN, 1, 0)
    except OSError:  # pragma: no cover - nothing to undo
        pass


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # PermissionError: alive, someone else's
        return True
    return True


# -- this process's tables and published waits ----------------------------------------------
_tables: dict[str, Table] = {}
"""path → the tables this process has mapped (usually one)."""
_current: Table | None = None
"""The table for the locks this process creates."""
_slots_lock = _thread.RLock()
"""Reentrant: a signal handler that blocks on a multiprocessing lock may interrupt this very
thread inside `publish`; it must not wait for itself."""
_published: dict[int, tuple[Table, int, Any, int]] = {}
"""ident → (table, slot offset, the lock's owner record, flags) of each published wait."""
_broken = False


def enabled() -> bool:
    return fcntl is not None and not _broken


def _directory() -> str:
    shm = "/dev/shm"
    if os.path.isdir(shm) and os.access(shm, os.W_OK | os.X_OK):
        return shm
    import tempfile  # here: not paid by ``import tracedsync`` (docs/architecture.md)

    return tempfile.gettempdir()


def table_for_new_lock() -> Table | None:
    """This process's table (created at the first call); None if unavailable."""
    global _current, _broken
    if not enabled():
        return None
    if _current is None:
        import tempfile

        try:
            fd, path = tempfile.mkstemp(prefix="tracedsync-waits-", dir=_directory())
        except OSError as exc:
            _broken = True
            report(f"cross-process deadlock detection is off: no wait table ({exc!r})")
            return None
        try:
            table = Table(path, creator=True, fd=fd)
        except (OSError, ValueError) as exc:
            os.unlink(path)
            _broken = True
            report(f"cross-process deadlock detection is off: no wait table ({exc!r})")
            return None
        _tables[path] = table
        _current = table
        set_remote(lookup)
    return _current


def adopt(path: str | None) -> Table | None:
    """Map the table ``path`` that a lock arriving from another process carries."""
    global _current
    if path is None or not enabled():
        return None
    table = _tables.get(path)
    if table is None:
        try:
            table = Table(path, creator=False)
        except (OSError, ValueError):
            return None  # its creator has gone (and unlinked it): no table for this lock
        _tables[path] = table
        if _current is None:
            _current = table
        set_remote(lookup)
    return table


def publish(
    table: Table | None,
    prim: str,
    rec: Any,
    reentrant: bool,
    restore: bool,
    timeout: float | None,
    frame: FrameType | None,
) -> int | None:
    """Publish the calling thread's wait on the multiprocessing lock ``prim`` (before it blocks);
    returns its ident for `unpublish`, or None if not published. Never raises an error of its
    own: a wait that cannot be published is only invisible to other processes."""
    try:
        return _publish(table, prim, rec, reentrant, restore, timeout, frame)
    except Exception as exc:  # the traced program's acquire must go on
        _give_up(exc)
        return None


def _give_up(exc: BaseException) -> None:
    global _broken
    if not _broken:
        _broken = True
        report(f"cross-process deadlock detection is off: the wait table failed ({exc!r})")


def _publish(table: Table | None, prim: str, rec: Any, reentrant: bool, restore: bool,
             timeout: float | None, frame: FrameType | None) -> int | None:
    if _broken or table is None:
        return None
    pid_s, _, n_s = prim.partition(".")
    if not (pid_s.isdigit() and n_s.isdigit()):
        return None
    me = _thread.get_ident()
    flags = (F_RLOCK if reentrant else 0) | (F_RESTORE if restore else 0)
    t_ns = -1
    if timeout is not None and timeout >= 0:
        flags |= F_TIMED
        t_ns = int(timeout * 1e9)
    site = b""
    if frame is not None:
        code = frame.f_code
        text = f"{code.co_filename}:{frame.f_lineno} {getattr(code, 'co_qualname', code.co_name)}"
        site = text.encode("utf-8", "replace")[-SITE_MAX:]
    now = rt.now()
    with _slots_lock:
        off = table.free_slot()
        if off is None:
            return None
        table.write(off, (0, owner_word(), int(pid_s), int(n_s), rec[OWNER], now, now, flags,
                          t_ns, len(site)), site)
        _published[me] = (table, off, rec, flags)
    return me


def unpublish(me: int | None) -> None:
    """The thread's wait ended (call in a ``finally``)."""
    if me is None:
        return
    try:
        with _slots_lock:
            entry = _published.pop(me, None)
            if entry is not None:
                table, off, _, _ = entry
                table.write(off, (0,) * 10)
    except Exception as exc:  # as in publish
        _give_up(exc)


def refresh() -> None:
    """Re-read the holder of every lock this process's threads wait for (the flusher's tick),
    so that a later walk from another process can trust it (see the module note)."""
    if not _published:
        return
    now = rt.now()
    try:
        with _slots_lock:
            for table, off, rec, _ in list(_published.values()):
                got = table.read_slot(off)
                if got is None:
                    continue
                fields = list(got[0])
                fields[HOLDER] = rec[OWNER]
                fields[READ_AT] = now
                table.write(off, tuple(fields))
    except Exception as exc:  # as in publish; the watchdog's other checks go on
        _give_up(exc)


# -- the lookup `_detect` calls -------------------------------------------------------------
def _fresh_owner(prim: str) -> int | None:
    """The owner word of the multiprocessing lock ``prim`` read now, if this process has it
    (its `PrimState.ext` is then the lock's shared owner record)."""
    st = state_of(prim)
    if st is None or st.kind not in ("Lock", "RLock") or st.ext is None:
        return None
    return int(st.ext[OWNER])


def lookup(pid: int, tid: int) -> RemoteWait | None:
    """What thread ``tid`` of process ``pid`` waits for, from the shared tables; None if it is
    not known to wait."""
    word = (pid << 32) | tid
    for table in list(_tables.values()):
        got = table.find(word)
        if got is not None:
            return _remote_wait(pid, tid, *got)
    return None


def waits_of(pid: int | None = None) -> list[RemoteWait]:
    """Every published wait of process ``pid`` (of every process if None), from every table
    this process knows (for snapshots and tests)."""
    out: dict[int, RemoteWait] = {}
    for table in list(_tables.values()):
        for b, claimed in enumerate(_HEADS.unpack_from(table.mm, 0)):
            if not claimed or (pid is not None and claimed != pid):
                continue
            base = _HEADERS + b * SLOTS * _SLOT_BYTES
            for s in range(SLOTS):
                got = table.read_slot(base + s * _SLOT_BYTES)
                if got is None:
                    continue
                word = got[0][WAITER]
                if word and word >> 32 == claimed:
                    out[word] = _remote_wait(claimed, word & _TID_MASK, *got)
    return list(out.values())


def _remote_wait(pid: int, tid: int, fields: tuple[int, ...], site: bytes) -> RemoteWait:
    prim = f"{fields[PRIM_PID]}.{fields[PRIM_N]}"
    flags = fields[FLAGS]
    holder: int | None = fields[HOLDER]
    read_at: int | None = fields[READ_AT]
    fresh = _fresh_owner(prim)
    if fresh is not None:
        holder, read_at = fresh, None  # read now, from the lock itself
    return RemoteWait(
        pid=pid,
        tid=tid,
        prim=prim,
        owners=((holder >> 32, holder & _TID_MASK),) if holder else (),
        kind="RLock" if flags & F_RLOCK else "Lock",
        what="restore" if flags & F_RESTORE else "acquire",
        site=site.decode("utf-8", "replace") or None,
        since=fields[SINCE],
        read_at=read_at,
        timeout=fields[TIMEOUT] / 1e9 if flags & F_TIMED else None,
    )


# -- fork and exit ----------------------------------------------------------------------------
def _after_fork_child() -> None:
    global _slots_lock
    _slots_lock = _thread.RLock()  # a parent's thread may have held it
    _published.clear()  # the parent's waiting threads do not exist here
    for table in _tables.values():
        table.blocks = []  # the parent's blocks stay the parent's
        table.creator_pid = 0  # only the creator unlinks


def _at_exit() -> None:
    for table in list(_tables.values()):
        try:
            table.release_blocks()
            if table.creator_pid == os.getpid():
                os.unlink(table.path)
        except OSError:
            pass


atexit.register(_at_exit)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_child)
