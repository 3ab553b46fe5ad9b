"""Op codes: the first item of every tuple the hot path records (decoded by `_record.decode`)."""

# Tuple layouts, after the common (op, ts, ident) prefix:
OP_THREAD = 0  # native_id, name, daemon
OP_CREATED = 1  # prim, kind, name, code, lineno, extra(dict|None)
OP_ACQUIRE = 2  # prim, depth, ok, contended, wait_ns, blocked_by, blocking, timeout, code, lineno
OP_RELEASE = 3  # prim, depth, hold_ns(None unless depth 0)
OP_SAVE = 4  # prim, saved_depth, hold_ns, code, lineno          (release before a condition wait)
OP_RESTORE = 5  # prim, depth, wait_ns, contended, blocked_by, code, lineno
OP_MISUSE = 6  # prim, what, message, code, lineno
OP_COND_WAIT = 7  # prim, lock, saved_depth, timeout, code, lineno
OP_COND_WAKE = 8  # prim, waited_ns, notified, reacquire_ns, code, lineno
OP_NOTIFY = 9  # prim, n, waiters, woken(tuple of idents), all, code, lineno
OP_STATS = 10  # prim, statistics dict
OP_DROPPED = 11  # count
OP_SESSION_END = 12  # counters dict
OP_GENERIC = 13  # event name, fields dict, code, lineno   (rare events of other primitives)
OP_SEM_ACQUIRE = 14  # prim, ok, contended, wait_ns, permits, held, blocking, timeout, code, lineno
OP_SEM_RELEASE = 15  # prim, n, permits, held, for_others, code, lineno
OP_EVENT_SET = 16  # prim, flag(True: set(), False: clear()), was_set, code, lineno
OP_EVENT_WAIT = 17  # prim, result, already_set, waited_ns, timeout, code, lineno
OP_BARRIER_WAIT = 18  # prim, index, waited_ns, parties, n_waiting, timeout, code, lineno
OP_BARRIER_BROKEN = 19  # prim, broken_by, why, error, waited_ns|None, n_waiting, timeout, code, ln
# multiprocessing primitives (tracedsync/_mp_*.py). A holder in another process is named by
# (pid, native tid), read from the lock's shared owner record, never by a local ident.
OP_MP_ACQUIRE = 20  # prim, depth, ok, contended, wait_ns, by_pid, by_tid, blocking, timeout,
#                     restored, code, lineno
OP_VALUE = 21  # prim, is_set, key, locked, code, lineno  (key: None, int, (start, stop, step), str)
OP_RMW = 22  # prim, key, read_code, read_lineno, read_locked, code, lineno
