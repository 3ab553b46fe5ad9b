"""Who holds a traced multiprocessing lock, readable from every process: the owner record.

Design note.

A thread blocked on a lock held by *another process* cannot learn the holder from its own
process's books (`PrimState` describes this process's threads only). So each traced
multiprocessing lock carries a tiny record in shared memory, allocated with the lock from
multiprocessing's heap (a ``sharedctypes.RawArray`` of two int64) and travelling with it: copied
by ``fork`` (the mapping is shared, not copied), pickled with the lock while spawning (spawn,
forkserver), exactly like the memory of a ``multiprocessing.Value``:

    [OWNER] (pid << 32) | native thread id of the holder; 0 when free
    [DEPTH] the holder's recursion depth (an RLock's count); 0 when free

Who writes. Only the holder, and only while it holds the lock: `OWNER` right after an acquire
took the lock from free to held, `DEPTH` on every acquire and release, both cleared right
before the release that frees it. Writers are therefore serialised by the lock itself: there is
never a second writer at the same time, so no lock is needed around the record.

Who reads. Only the slow path: a thread whose first, non-blocking try failed reads `OWNER`
before blocking (``blocked_by``/``blocked_by_pid``). The owner is one aligned 64-bit word, so a
reader never pairs the pid of one holder with the thread of another; what it reads may be a
moment old (the holder released just after, or a new holder has not written yet): a snapshot,
like ``blocked_by`` for threading locks. ``DEPTH`` is a separate word and may lag by one store.

Thread ids are stored in 32 bits: Linux tids are below 2**22; macOS's 64-bit thread ids are
sequence numbers that stay far below 2**32 in practice.
"""

from __future__ import annotations

import _thread
import os
import threading
from typing import Any

OWNER = 0
DEPTH = 1
_TID_MASK = 0xFFFFFFFF

_tls = _thread._local()


def new_record() -> Any:
    """A fresh record (zeroed: free) in shared memory."""
    from multiprocessing.sharedctypes import RawArray

    return RawArray("q", 2)


def owner_word() -> int:
    """The calling thread's owner word, ``(pid << 32) | native id``, cached per thread."""
    try:
        return _tls.word  # type: ignore[no-any-return]
    except AttributeError:
        word = (os.getpid() << 32) | (threading.get_native_id() & _TID_MASK)
        _tls.word = word
        return word


def split(word: int) -> tuple[int | None, int | None]:
    """``(pid, tid)`` of an owner word; ``(None, None)`` for 0 (free, or unknown)."""
    if not word:
        return None, None
    return word >> 32, word & _TID_MASK


def read_owner(record: Any) -> tuple[int | None, int | None]:
    """``(pid, tid)`` of the holder now (a snapshot), or ``(None, None)`` if it looks free."""
    return split(record[OWNER])


def _renew_after_fork() -> None:
    # The forking thread has a new pid and native id in the child: forget its cached word.
    global _tls
    _tls = _thread._local()


os.register_at_fork(after_in_child=_renew_after_fork)
