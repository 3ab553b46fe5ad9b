/*
 * NativeLock and NativeRLock: threading's Lock and RLock, traced, in C.
 *
 * Design note (read docs/architecture.md, "The native recorder", first).
 *
 * Behaviour. These are not proxies in front of a `_thread` lock: they are locks, implemented
 * as Modules/_threadmodule.c implements `_thread.lock` and `_thread.RLock`, on a PyThread lock:
 * an acquire first tries without blocking, then waits with the GIL released, runs signal
 * handlers when the wait is interrupted and retries with what is left of the timeout; an
 * RLock keeps its owner and count. Arguments other than the defaults are first given to a
 * fresh real lock's `acquire` (it is free, so that cannot block), so that wrong ones raise the
 * original's own errors on every Python version; only then are they interpreted here. `__class__`
 * answers the original type, so `isinstance(lock, type(threading.Lock()))` holds.
 *
 * Books. The owner and depth are the lock's own state (an RLock's owner and count; a Lock's
 * acquirer, kept beside its `locked` flag) and are always kept, at every level; so they can
 * never disagree with the lock. Counters and times are kept at `contention` and `full`. All of
 * them are written with the GIL held, by the thread that takes or gives back the lock, after
 * the PyThread lock was taken and before it is released, so no other thread can be between.
 *
 * Records. An uncontended acquire with the default arguments and every release write one
 * 32-byte record at `full` (buffers.c), and so does a contended one; the rest (timeouts,
 * failures, misuse, the Condition protocol) is rare and goes through the Python tuple channel,
 * as the pure-Python twin does.
 *
 * Waits. A thread about to block enters the wait-for graph first: as a native wait (waits.c:
 * a slot on its stack, no Python object) unless the C walk there finds that the wait may close
 * a cycle or reaches a wait registered in Python; then in Python (_core/waits.py), whose check
 * may raise DeadlockError.
 */
#include "native.h"
#include <math.h>
#include <stddef.h>


typedef struct {
    PyObject_HEAD
    PyThread_type_lock lock;
    char reentrant;
    char locked;             /* the PyThread lock is held (by `owner`, for an RLock) */
    char reported;
    unsigned long owner;     /* ident of the holder (0: none) */
    unsigned long depth;     /* an RLock's count; a Lock's 0 or 1 */
    uint64_t t_hold;         /* ticks at the acquire that took it from free (0: not timed) */
    uint64_t t_hold_seen;    /* the t_hold whose ns value the `t_hold` attribute gave last, */
    int64_t t_hold_ns;       /* and that value: one hold reads the same every time */
    uint64_t acquisitions, contended, failed, max_depth, misuse;
    uint64_t hold_ticks;
    int64_t wait_ns;
    int64_t restore_ns;
    uint32_t prim_pid, prim_n;
    ts_chunk *pair_c;        /* where the acquire record of the current hold is (its chunk, */
    uint32_t pair_i;         /* index): the release may turn it into a REC_PAIR */
    PyObject *prim;          /* "<pid>.<n>" */
    PyObject *name;
    PyObject *kind;          /* "Lock" | "RLock" */
    PyObject *weakreflist;
} NativeLock;

static PyTypeObject NativeLockType;
#define WALK_MAX 64  /* hops of the C walk before it hands over to Python (waits.c) */
static PyTypeObject NativeRLockType;

static PyObject *real_lock_type = NULL;    /* type(threading.Lock()) */
static PyObject *real_rlock_type = NULL;   /* threading.RLock's C type */
static PyObject *allocate_lock = NULL;     /* _thread.allocate_lock: argument checks */
static PyObject *ops = NULL;               /* dict: op name -> code (from _core.ops) */
static long op_acquire, op_release, op_save, op_restore, op_misuse, op_generic, op_stats;
static PyObject *s_emit, *s_register_thread, *s_wait_lock, *s_wait_restore, *s_forget,
    *s_user_site, *s_user_frame, *s_new_native, *s_interrupted, *s_prim, *s_error;

/* -- Python channel ------------------------------------------------------------------------ */
ts_hooks_t ts_hooks;

int
ts_emit_tuple(PyObject *item)
{
    if (item == NULL) {
        return -1;
    }
    PyObject *emit = PyObject_GetAttr(ts_hooks.runtime, s_emit);
    if (emit == NULL) {
        Py_DECREF(item);
        return -1;
    }
    PyObject *r = PyObject_CallOneArg(emit, item);
    Py_DECREF(emit);
    Py_DECREF(item);
    if (r == NULL) {
        return -1;
    }
    Py_DECREF(r);
    return 0;
}

PyObject *
ts_now_ns_obj(void)
{
    return PyLong_FromLongLong(ts_mono_ns());
}

/* (code, -(lasti + 1)) of the innermost user frame, from the site table, or (None, 0): for
 * the rare events (a new reference). */
static PyObject *
user_site(void)
{
    int lasti = 0;
    PyObject *code = ts_site_code(ts_site_of_caller(), &lasti);
    if (code == NULL) {
        return Py_BuildValue("(Oi)", Py_None, 0);
    }
    return Py_BuildValue("(Oi)", code, -1 - lasti);
}

static inline int64_t
ticks_to_ns(uint64_t dticks)
{
    return ts_ticks_to_ns(&ts_current_calib, dticks);
}

static PyObject *
ident_obj(unsigned long ident)
{
    return PyLong_FromUnsignedLong(ident);
}

/* -- the PyThread lock, as _threadmodule.c drives it -------------------------------------- */
/* timeout_us: -1 forever, 0 try, > 0 microseconds; `intr`: a signal interrupts the wait (its
 * handlers run, then the wait goes on with what is left), else it is not noticed until the
 * lock is taken (an RLock's `_acquire_restore`). Returns PY_LOCK_ACQUIRED, PY_LOCK_FAILURE,
 * or PY_LOCK_INTR with an exception set (a signal handler raised). */
static PyLockStatus
acquire_timed(PyThread_type_lock lock, PY_TIMEOUT_T timeout_us, int intr)
{
    int64_t deadline = 0;
    if (timeout_us > 0) {
        deadline = ts_mono_ns() + (int64_t)timeout_us * 1000;
    }
    PyLockStatus r;
    do {
        r = PyThread_acquire_lock_timed(lock, 0, 0);
        if (r == PY_LOCK_FAILURE && timeout_us != 0) {
            Py_BEGIN_ALLOW_THREADS
            r = PyThread_acquire_lock_timed(lock, timeout_us, intr);
            Py_END_ALLOW_THREADS
        }
        if (r == PY_LOCK_INTR) {
            if (Py_MakePendingCalls() < 0) {
                return PY_LOCK_INTR;
            }
            if (timeout_us > 0) {
                int64_t left = deadline - ts_mono_ns();
                if (left < 0) {
                    r = PY_LOCK_FAILURE;
                }
                else {
                    timeout_us = (PY_TIMEOUT_T)((left + 999) / 1000);
                }
            }
        }
    } while (r == PY_LOCK_INTR);
    return r;
}

/* -- the books ---------------------------------------------------------------------------- */
static inline void
took(NativeLock *self, unsigned long me, uint64_t t)
{
    /* Called with the lock just taken by `me` (from free, or one more level of an RLock). */
    if (self->depth == 0 || !self->reentrant) {
        self->owner = me;
        self->depth = 1;
        self->t_hold = t;
        self->pair_c = NULL;
    }
    else {
        self->depth++;
    }
    self->locked = 1;
    if (ts_level) {
        self->acquisitions++;
        if (self->depth > self->max_depth) {
            self->max_depth = self->depth;
        }
    }
}

static inline void
write_acquire_record(NativeLock *self, uint64_t t)
{
    ts_rec *r = ts_rec_get();
    if (r == NULL) {
        return;
    }
    r->t = t;
    r->prim_pid = self->prim_pid;
    r->prim_n = self->prim_n;
    r->site = ts_site_of_caller();
    r->op = REC_ACQUIRE;
    r->flags = 0;
    r->depth = (uint16_t)(self->depth > 0xFFFF ? 0xFFFF : self->depth);
    r->val = 0;
    if (self->depth == 1) {
        self->pair_c = ts_tls_buf->cur;  /* (r is its next record) */
        self->pair_i = ts_tls_buf->cur->n;
    }
    ts_rec_commit();
}

/* The release of a hold whose acquire record is still this thread's last one, not yet in a
 * snapshot: that record becomes a REC_PAIR carrying the hold (one record for the two events,
 * which halves what a `with lock:` costs the memory budget). 1 if done. */
static inline int
pair_release(NativeLock *self, uint64_t t_hold, uint64_t hold)
{
    ts_tbuf *b = ts_tls_buf;
    ts_chunk *c = self->pair_c;
    if (c == NULL || b == NULL || c != b->cur || self->pair_i + 1 != c->n
        || (c == b->sealed && self->pair_i < b->sealed_n)) {
        return 0;
    }
    ts_rec *r = &c->recs[self->pair_i];
    if (r->op != REC_ACQUIRE || r->flags != 0 || r->depth != 1 || r->t != t_hold
        || r->prim_n != self->prim_n || r->prim_pid != self->prim_pid) {
        return 0;
    }
    r->val = hold;
    r->op = REC_PAIR;
    return 1;
}

static void
write_contended_record(NativeLock *self, uint64_t t, uint64_t wait_ticks,
                       unsigned long blocked_by)
{
    ts_rec *r = ts_rec_get2();
    if (r == NULL) {
        return;
    }
    r->t = t;
    r->prim_pid = self->prim_pid;
    r->prim_n = self->prim_n;
    r->site = ts_site_of_caller();
    r->op = REC_ACQUIRE;
    r->flags = FLAG_CONTENDED;
    r->depth = (uint16_t)(self->depth > 0xFFFF ? 0xFFFF : self->depth);
    r->val = wait_ticks;
    ts_ext *x = (ts_ext *)(r + 1);
    x->w[0] = blocked_by;
    x->w[1] = x->w[2] = x->w[3] = 0;
    ts_rec_commit2();
}

static inline void
write_release_record(NativeLock *self, uint64_t t, unsigned long depth, int has_hold,
                     uint64_t hold)
{
    ts_rec *r = ts_rec_get();
    if (r == NULL) {
        return;
    }
    r->t = t;
    r->prim_pid = self->prim_pid;
    r->prim_n = self->prim_n;
    r->site = 0;
    r->op = REC_RELEASE;
    r->flags = has_hold ? FLAG_HOLD : 0;
    r->depth = (uint16_t)(depth > 0xFFFF ? 0xFFFF : depth);
    r->val = hold;
    ts_rec_commit();
}

/* Make sure the thread is registered (its `thread` event written) before recording a tuple
 * that names it. Returns 0, or -1 with an error. */
static int
ensure_registered(void)
{
    if (ts_tls_buf == NULL && ts_thread_ident_slow() == 0) {
        return -1;
    }
    return 0;
}

/* An OP_ACQUIRE tuple: the slow paths' record. */
static int
emit_acquire(NativeLock *self, int64_t ts, unsigned long me, int ok, int contended,
             int64_t wait, unsigned long blocked_by, PyObject *blocking, PyObject *timeout)
{
    if (ensure_registered() < 0) {
        return -1;
    }
    PyObject *site = user_site();
    if (site == NULL) {
        return -1;
    }
    PyObject *bb = blocked_by ? ident_obj(blocked_by) : Py_NewRef(Py_None);
    PyObject *item = Py_BuildValue(
        "(lLNOkOOLNOOOO)", op_acquire, (long long)ts, ident_obj(me), self->prim,
        (unsigned long)(ok ? self->depth : (self->owner == me ? self->depth : 0)),
        ok ? Py_True : Py_False, contended ? Py_True : Py_False, (long long)wait, bb,
        blocking, timeout, PyTuple_GET_ITEM(site, 0), PyTuple_GET_ITEM(site, 1));
    Py_DECREF(site);
    return ts_emit_tuple(item);
}

static int
emit_misuse(NativeLock *self, unsigned long me, const char *what, PyObject *message)
{
    if (ensure_registered() < 0) {
        return -1;
    }
    PyObject *site = user_site();
    if (site == NULL) {
        return -1;
    }
    PyObject *item = Py_BuildValue("(lLNOsOOO)", op_misuse, (long long)ts_mono_ns(),
                                   ident_obj(me), self->prim, what, message,
                                   PyTuple_GET_ITEM(site, 0), PyTuple_GET_ITEM(site, 1));
    Py_DECREF(site);
    return ts_emit_tuple(item);
}

/* Record a misuse for the exception now set (which is kept). */
static void
misuse_now(NativeLock *self, unsigned long me, const char *what)
{
    if (!ts_level) {
        return;
    }
    self->misuse++;
    PyObject *exc = PyErr_GetRaisedException();
    PyObject *msg = PyObject_Str(exc);
    if (msg == NULL || emit_misuse(self, me, what, msg) < 0) {
        PyErr_Clear();  /* the program's exception matters, not our record */
    }
    Py_XDECREF(msg);
    PyErr_SetRaisedException(exc);
}

/* -- acquire ------------------------------------------------------------------------------- */
/* The uncontended acquire with the default arguments; NULL (no error) if contended. */
static inline PyObject *
acquire_fast(NativeLock *self)
{
    unsigned long me = PyThread_get_thread_ident();
    int level = ts_level;
    if (UNLIKELY(level == LEVEL_FULL && ts_tls_buf == NULL) && ensure_registered() < 0) {
        PyErr_Clear();  /* (the thread's `thread` event first, so that it precedes its records) */
    }
    if (self->reentrant && self->depth > 0 && self->owner == me) {
        if (self->depth + 1 == 0) {
            PyErr_SetString(PyExc_OverflowError, "Internal lock count overflowed");
            return NULL;
        }
        self->depth++;
        if (level) {
            self->acquisitions++;
            if (self->depth > self->max_depth) {
                self->max_depth = self->depth;
            }
            if (level == LEVEL_FULL) {
                write_acquire_record(self, ts_ticks());
            }
        }
        Py_RETURN_TRUE;
    }
    if (PyThread_acquire_lock_timed(self->lock, 0, 0) != PY_LOCK_ACQUIRED) {
        return NULL;
    }
    uint64_t t = level ? ts_ticks() : 0;
    took(self, me, t);
    if (level == LEVEL_FULL) {
        write_acquire_record(self, t);
    }
    Py_RETURN_TRUE;
}

/* Check unusual arguments with a real lock (its own errors), then read them. */
static int
parse_acquire_args(PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames, int *blocking,
                   PY_TIMEOUT_T *timeout_us, PyObject **blocking_obj, PyObject **timeout_obj)
{
    PyObject *probe = PyObject_CallNoArgs(allocate_lock);
    if (probe == NULL) {
        return -1;
    }
    PyObject *acq = PyObject_GetAttrString(probe, "acquire");
    if (acq == NULL) {
        Py_DECREF(probe);
        return -1;
    }
    PyObject *ok = PyObject_Vectorcall(acq, args, nargs, kwnames);
    Py_DECREF(acq);
    if (ok == NULL) {
        Py_DECREF(probe);
        return -1;
    }
    Py_DECREF(ok);
    PyObject *rel = PyObject_CallMethod(probe, "release", NULL);
    Py_DECREF(probe);
    if (rel == NULL) {
        return -1;
    }
    Py_DECREF(rel);
    /* Valid: now read them. */
    PyObject *b = Py_True, *to = NULL;
    Py_ssize_t nkw = kwnames ? PyTuple_GET_SIZE(kwnames) : 0;
    if (nargs >= 1) b = args[0];
    if (nargs >= 2) to = args[1];
    for (Py_ssize_t i = 0; i < nkw; i++) {
        PyObject *k = PyTuple_GET_ITEM(kwnames, i);
        if (PyUnicode_CompareWithASCIIString(k, "blocking") == 0) b = args[nargs + i];
        else if (PyUnicode_CompareWithASCIIString(k, "timeout") == 0) to = args[nargs + i];
    }
    int bl = PyObject_IsTrue(b);
    if (bl < 0) {
        return -1;
    }
    *blocking = bl;
    *blocking_obj = bl ? Py_True : Py_False;
    *timeout_obj = to;
    *timeout_us = -1;
    if (to != NULL) {
        double secs;
        if (PyFloat_Check(to)) {
            secs = PyFloat_AS_DOUBLE(to);
        }
        else {
            long long v = PyLong_AsLongLong(to);
            if (v == -1 && PyErr_Occurred()) {
                return -1;
            }
            secs = (double)v;
        }
        if (secs != -1.0) {
            double us = ceil(secs * 1e6);
            *timeout_us = us < 0 ? 0 : (PY_TIMEOUT_T)us;
        }
    }
    if (!bl) {
        *timeout_us = 0;
    }
    return 0;
}

/* The holder of native lock `lock` (0: free), for waits.c. */
unsigned long
ts_lock_owner(PyObject *lock)
{
    NativeLock *l = (NativeLock *)lock;
    return l->locked ? l->owner : 0;
}

/* -- blocking, registered as a native wait (waits.c) --------------------------------------- */
#define WAIT_NEEDS_PY 3  /* wait_native: register in Python instead (another PyLockStatus) */

/* Whether thread `me`, about to block on `lock`, must register in Python: the walk from the
 * lock's owner through the native waits comes back to `me`, reaches a thread in the Python
 * table, or is too long (see waits.c). With the GIL held; no Python code runs. */
static int
native_walk(NativeLock *lock, unsigned long me)
{
    NativeLock *cur = lock;
    for (int hops = 0; hops < WALK_MAX; hops++) {
        unsigned long o = cur->owner;
        if (!cur->locked || o == 0) {
            return 0;
        }
        if (o == me) {
            return 1;
        }
        ts_wait *w = ts_wait_find(o);
        if (w == NULL) {
            return ts_py_waiting(o);
        }
        cur = (NativeLock *)w->lock;
    }
    return 1;
}

/* Block on `self` for timeout_us (-1: forever) as a native wait that began at `t0`, as
 * acquire_timed does. A signal handler that interrupts the wait runs with the wait still
 * registered (as a Python registration stays through acquire_timed's retries): a snapshot
 * taken by SIGUSR1 shows the thread waiting. Returns what acquire_timed returns, or
 * WAIT_NEEDS_PY (nothing was tried: register in Python and wait there). */
static int
wait_native(NativeLock *self, unsigned long me, PY_TIMEOUT_T timeout_us, int what, int intr,
            int64_t t0)
{
    if (native_walk(self, me)) {
        return WAIT_NEEDS_PY;
    }
    ts_wait w;
    w.ident = me;
    w.lock = (PyObject *)self;
    w.since = t0;
    w.timeout_us = timeout_us;
    w.site = ts_site_of_caller();
    w.what = what;
    ts_wait_link(&w);
    if (ts_flusher_idle) {  /* the watchdog has a wait to watch */
        PyObject *woke = ts_wake_if_idle(NULL, NULL);
        Py_XDECREF(woke);
    }
    PyLockStatus r = acquire_timed(self->lock, timeout_us, intr);
    ts_wait_done(&w, r == PY_LOCK_ACQUIRED ? Py_True : r == PY_LOCK_FAILURE ? Py_False : Py_None);
    return r;
}

/* Every acquire that is not an uncontended one with the default arguments. */
static PyObject *
acquire_slow(NativeLock *self, int blocking, PY_TIMEOUT_T timeout_us, PyObject *blocking_obj,
             PyObject *timeout_obj)
{
    unsigned long me = PyThread_get_thread_ident();
    int level = ts_level;
    PyObject *timeout_rec = timeout_obj ? timeout_obj : Py_None;
    if (timeout_obj != NULL && PyFloat_Check(timeout_obj) && PyFloat_AS_DOUBLE(timeout_obj) == -1.0) {
        timeout_rec = Py_None;
    }
    if (timeout_obj != NULL && PyLong_Check(timeout_obj) && PyLong_AsLong(timeout_obj) == -1) {
        timeout_rec = Py_None;
    }
    if (self->reentrant && self->depth > 0 && self->owner == me) {
        /* one more level: never waits */
        self->depth++;
        if (level) {
            self->acquisitions++;
            if (self->depth > self->max_depth) {
                self->max_depth = self->depth;
            }
            if (level == LEVEL_FULL &&
                emit_acquire(self, ts_mono_ns(), me, 1, 0, 0, 0, blocking_obj, timeout_rec) < 0) {
                PyErr_Clear();
            }
        }
        Py_RETURN_TRUE;
    }
    if (PyThread_acquire_lock_timed(self->lock, 0, 0) == PY_LOCK_ACQUIRED) {
        took(self, me, level ? ts_ticks() : 0);
        if (level == LEVEL_FULL &&
            emit_acquire(self, ts_mono_ns(), me, 1, 0, 0, 0, blocking_obj, timeout_rec) < 0) {
            PyErr_Clear();
        }
        Py_RETURN_TRUE;
    }
    /* Held by someone else (or, for a Lock, by this very thread). */
    unsigned long blocked_by = self->owner;
    if (!level || timeout_us == 0) {
        /* At level off nothing is recorded; a try that may not wait never waits, so it is
         * neither in the wait-for graph nor a wait. */
        if (timeout_us != 0) {
            PyLockStatus r = acquire_timed(self->lock, timeout_us, 1);
            if (r == PY_LOCK_INTR) {
                return NULL;
            }
            if (r == PY_LOCK_ACQUIRED) {
                took(self, me, 0);
                Py_RETURN_TRUE;
            }
            Py_RETURN_FALSE;
        }
        if (level) {
            self->failed++;
            if (emit_acquire(self, ts_mono_ns(), me, 0, 1, 0, blocked_by, blocking_obj,
                             timeout_rec) < 0) {
                PyErr_Clear();
            }
        }
        Py_RETURN_FALSE;
    }
    /* Contended: in the wait-for graph while blocked (waits.c: in C, unless the walk there
     * wants the Python registration, which may raise DeadlockError), then block for the
     * timeout. */
    if (ensure_registered() < 0) {
        PyErr_Clear();
    }
    PyObject *me_obj = NULL;
    int64_t t0 = ts_mono_ns();
    uint64_t k0 = ts_ticks();
    int r = wait_native(self, me, timeout_us, TS_WAIT_ACQUIRE, 1, t0);
    if (r == WAIT_NEEDS_PY) {
        me_obj = ident_obj(me);
        PyObject *frame = user_site();  /* (code, pos): where it waits */
        PyObject *timeout_f = timeout_us < 0 ? PyFloat_FromDouble(-1.0)
                                             : PyFloat_FromDouble((double)timeout_us / 1e6);
        PyObject *reg = NULL;
        if (me_obj != NULL && frame != NULL && timeout_f != NULL) {
            reg = PyObject_CallMethodObjArgs(ts_hooks.waits, s_wait_lock, me_obj,
                                             (PyObject *)self, timeout_f, frame, NULL);
        }
        Py_XDECREF(frame);
        Py_XDECREF(timeout_f);
        r = PY_LOCK_INTR;
        if (reg != NULL) {
            Py_DECREF(reg);
            r = acquire_timed(self->lock, timeout_us, 1);
            /* out of the graph, keeping any exception the wait raised */
            PyObject *exc = PyErr_GetRaisedException();
            PyObject *ok_obj = r == PY_LOCK_ACQUIRED ? Py_True
                             : r == PY_LOCK_FAILURE ? Py_False : Py_None;
            PyObject *f = PyObject_CallMethodObjArgs(ts_hooks.waits, s_forget, me_obj, ok_obj,
                                                     NULL);
            Py_XDECREF(f);
            if (f == NULL) {
                PyErr_Clear();
            }
            PyErr_SetRaisedException(exc);
        }
        else if (me_obj == NULL) {
            return NULL;
        }
    }
    int64_t t1 = ts_mono_ns();
    int64_t wait = t1 - t0;
    self->contended++;
    self->wait_ns += wait;
    if (r == PY_LOCK_INTR) {
        /* KeyboardInterrupt while blocked, or DeadlockError: recorded, then raised. */
        self->failed++;
        PyObject *exc = PyErr_GetRaisedException();
        PyObject *msg = PyObject_Repr(exc);
        if (emit_acquire(self, t1, me, 0, 1, wait, blocked_by, Py_True, timeout_rec) < 0) {
            PyErr_Clear();
        }
        PyObject *site = msg ? user_site() : NULL;
        if (site != NULL) {
            PyObject *fields = Py_BuildValue("{sOsO}", "prim", self->prim, "error", msg);
            PyObject *item = fields ? Py_BuildValue("(lLNONOO)", op_generic, (long long)t1,
                                                    ident_obj(me), s_interrupted, fields,
                                                    PyTuple_GET_ITEM(site, 0),
                                                    PyTuple_GET_ITEM(site, 1)) : NULL;
            if (ts_emit_tuple(item) < 0) {
                PyErr_Clear();
            }
            Py_DECREF(site);
        }
        else {
            PyErr_Clear();
        }
        Py_XDECREF(msg);
        Py_XDECREF(me_obj);
        PyErr_SetRaisedException(exc);
        return NULL;
    }
    Py_XDECREF(me_obj);
    int ok = r == PY_LOCK_ACQUIRED;
    uint64_t k1 = ts_ticks();
    if (ok) {
        took(self, me, k1);
    }
    else {
        self->failed++;
    }
    if (ok && timeout_rec == Py_None) {
        /* The common case, a binary record: no Python object while the lock is held. */
        write_contended_record(self, k1, k1 - k0, blocked_by);
    }
    else if (emit_acquire(self, t1, me, ok, 1, wait, blocked_by, Py_True, timeout_rec) < 0) {
        PyErr_Clear();
    }
    return PyBool_FromLong(ok);
}

static PyObject *
lock_acquire(NativeLock *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    if (LIKELY(nargs == 0 && kwnames == NULL)) {
        PyObject *r = acquire_fast(self);
        if (r != NULL || PyErr_Occurred()) {
            return r;
        }
        return acquire_slow(self, 1, -1, Py_True, NULL);
    }
    int blocking;
    PY_TIMEOUT_T timeout_us;
    PyObject *bo, *to;
    if (parse_acquire_args(args, nargs, kwnames, &blocking, &timeout_us, &bo, &to) < 0) {
        return NULL;
    }
    return acquire_slow(self, blocking, timeout_us, bo, to);
}

/* -- release ------------------------------------------------------------------------------- */
static PyObject *
lock_release(NativeLock *self, PyObject *Py_UNUSED(ignored))
{
    if (self->reentrant) {
        unsigned long me = PyThread_get_thread_ident();
        if (self->depth == 0 || self->owner != me) {
            PyErr_SetString(PyExc_RuntimeError, "cannot release un-acquired lock");
            misuse_now(self, me, "release_unowned");
            return NULL;
        }
    }
    else if (!self->locked) {  /* (a Lock may be released by any thread: no identity needed) */
        PyErr_SetString(PyExc_RuntimeError, "release unlocked lock");
        misuse_now(self, PyThread_get_thread_ident(), "release_unlocked");
        return NULL;
    }
    int level = ts_level;
    if (UNLIKELY(level == LEVEL_FULL && ts_tls_buf == NULL) && ensure_registered() < 0) {
        PyErr_Clear();
    }
    unsigned long depth = self->depth - 1;
    if (depth == 0 || !self->reentrant) {
        uint64_t hold = 0;
        int timed = 0;
        uint64_t t = 0;
        uint64_t t_hold = self->t_hold;
        if (level) {
            t = ts_ticks();
            if (t_hold) {
                hold = t - t_hold;
                timed = 1;
                self->hold_ticks += hold;
            }
        }
        self->owner = 0;
        self->depth = 0;
        self->t_hold = 0;
        self->locked = 0;
        PyThread_release_lock(self->lock);
        if (level == LEVEL_FULL && !(timed && pair_release(self, t_hold, hold))) {
            write_release_record(self, t, 0, timed, hold);
        }
        self->pair_c = NULL;
    }
    else {
        self->depth = depth;
        if (level == LEVEL_FULL) {
            write_release_record(self, ts_ticks(), depth, 0, 0);
        }
    }
    Py_RETURN_NONE;
}

static PyObject *
lock_exit(NativeLock *self, PyObject *const *args, Py_ssize_t nargs)
{
    return lock_release(self, NULL);
}

/* -- the rest of the lock API --------------------------------------------------------------- */
static PyObject *
lock_locked(NativeLock *self, PyObject *Py_UNUSED(ignored))
{
    return PyBool_FromLong(self->locked);
}

static PyObject *
lock_at_fork_reinit(NativeLock *self, PyObject *Py_UNUSED(ignored))
{
    /* As _thread does: the old lock may be held by a thread that does not exist here; it is
     * leaked rather than freed. */
    PyThread_type_lock fresh = PyThread_allocate_lock();
    if (fresh == NULL) {
        PyErr_SetString(PyExc_MemoryError, "cannot allocate lock");
        return NULL;
    }
    self->lock = fresh;
    self->locked = 0;
    self->owner = 0;
    self->depth = 0;
    self->t_hold = 0;
    self->pair_c = NULL;
    if (ts_level == LEVEL_FULL) {
        PyObject *site = user_site();
        PyObject *fields = site ? Py_BuildValue("{sO}", "prim", self->prim) : NULL;
        unsigned long me = PyThread_get_thread_ident();
        if (fields != NULL && ensure_registered() == 0) {
            PyObject *item = Py_BuildValue("(lLNsNOO)", op_generic, (long long)ts_mono_ns(),
                                           ident_obj(me), "reinit", fields,
                                           PyTuple_GET_ITEM(site, 0), PyTuple_GET_ITEM(site, 1));
            fields = NULL;
            if (ts_emit_tuple(item) < 0) {
                PyErr_Clear();
            }
        }
        Py_XDECREF(fields);
        Py_XDECREF(site);
        PyErr_Clear();
    }
    Py_RETURN_NONE;
}

static PyObject *
lock_is_owned(NativeLock *self, PyObject *Py_UNUSED(ignored))
{
    if (self->reentrant) {
        return PyBool_FromLong(self->depth > 0 && self->owner == PyThread_get_thread_ident());
    }
    /* threading.Condition's fallback for a plain lock: "owned" means locked by anyone. */
    return PyBool_FromLong(self->locked);
}

static PyObject *
lock_recursion_count(NativeLock *self, PyObject *Py_UNUSED(ignored))
{
    unsigned long me = PyThread_get_thread_ident();
    return PyLong_FromUnsignedLong(self->owner == me ? self->depth : 0);
}

static void
record_save(NativeLock *self, unsigned long me, unsigned long saved, int64_t hold_ns)
{
    if (ts_level != LEVEL_FULL || ensure_registered() < 0) {
        PyErr_Clear();
        return;
    }
    PyObject *site = user_site();
    if (site == NULL) {
        PyErr_Clear();
        return;
    }
    PyObject *item = Py_BuildValue("(lLNOkLOO)", op_save, (long long)ts_mono_ns(),
                                   ident_obj(me), self->prim, saved, (long long)hold_ns,
                                   PyTuple_GET_ITEM(site, 0), PyTuple_GET_ITEM(site, 1));
    Py_DECREF(site);
    if (ts_emit_tuple(item) < 0) {
        PyErr_Clear();
    }
}

/* The full release before a condition wait. An RLock returns (count, owner) as _thread's. */
static PyObject *
lock_release_save(NativeLock *self, PyObject *Py_UNUSED(ignored))
{
    unsigned long me = PyThread_get_thread_ident();
    if (self->reentrant ? self->depth == 0 : !self->locked) {
        PyErr_SetString(PyExc_RuntimeError, self->reentrant ? "cannot release un-acquired lock"
                                                           : "release unlocked lock");
        misuse_now(self, me, self->reentrant ? "release_unowned" : "release_unlocked");
        return NULL;
    }
    unsigned long count = self->depth, owner = self->owner;
    int64_t hold_ns = 0;
    if (ts_level && self->t_hold) {
        uint64_t hold = ts_ticks() - self->t_hold;
        self->hold_ticks += hold;
        hold_ns = ticks_to_ns(hold);
    }
    self->owner = 0;
    self->depth = 0;
    self->t_hold = 0;
    self->pair_c = NULL;
    self->locked = 0;
    PyThread_release_lock(self->lock);
    record_save(self, me, count, hold_ns);
    if (self->reentrant) {
        return Py_BuildValue("kk", count, owner);
    }
    Py_RETURN_NONE;
}

/* The re-acquire at the end of a condition wait. */
static PyObject *
lock_acquire_restore(NativeLock *self, PyObject *state)
{
    unsigned long count = 1, owner = PyThread_get_thread_ident();
    if (self->reentrant && !PyArg_ParseTuple(state, "kk:_acquire_restore", &count, &owner)) {
        return NULL;
    }
    unsigned long me = PyThread_get_thread_ident();
    unsigned long blocked_by = self->locked ? self->owner : 0;
    int64_t t0 = ts_mono_ns();
    int level = ts_level;
    int r = PyThread_acquire_lock_timed(self->lock, 0, 0);
    if (r != PY_LOCK_ACQUIRED && level) {
        /* About to block: in the wait-for graph meanwhile, as a native wait (waits.c) unless
         * the walk there wants the Python registration (below). A plain lock's restore is
         * threading's `acquire()`: interruptible; an RLock's is not. */
        r = wait_native(self, me, -1, TS_WAIT_RESTORE, !self->reentrant, t0);
        if (r == PY_LOCK_INTR) {
            return NULL;
        }
    }
    if (r != PY_LOCK_ACQUIRED) {
        /* About to block: in the wait-for graph meanwhile (reported, never raised: failing
         * here would leave Condition.wait's caller without the lock). */
        PyObject *me_obj = level ? ident_obj(me) : NULL;
        PyObject *reg = me_obj ? PyObject_CallMethodObjArgs(ts_hooks.waits, s_wait_restore,
                                                            me_obj, (PyObject *)self, NULL)
                               : NULL;
        Py_XDECREF(reg);
        PyErr_Clear();
        if (acquire_timed(self->lock, -1, !self->reentrant) == PY_LOCK_INTR) {
            if (me_obj) {
                PyObject *exc = PyErr_GetRaisedException();
                PyObject *f = PyObject_CallMethodOneArg(ts_hooks.waits, s_forget, me_obj);
                Py_XDECREF(f);
                PyErr_Clear();
                PyErr_SetRaisedException(exc);
                Py_DECREF(me_obj);
            }
            return NULL;
        }
        if (me_obj) {
            PyObject *f = PyObject_CallMethodObjArgs(ts_hooks.waits, s_forget, me_obj, Py_True,
                                                     NULL);
            Py_XDECREF(f);
            PyErr_Clear();
            Py_DECREF(me_obj);
        }
    }
    int64_t t1 = ts_mono_ns();
    int64_t wait = t1 - t0;
    self->locked = 1;
    self->owner = self->reentrant ? owner : me;
    self->depth = count;
    self->t_hold = level ? ts_ticks() : 0;
    if (!level) {
        Py_RETURN_NONE;
    }
    self->acquisitions++;
    self->restore_ns = wait;
    int contended = blocked_by != 0 && blocked_by != me;
    if (contended) {
        self->contended++;
        self->wait_ns += wait;
    }
    if (count > self->max_depth) {
        self->max_depth = count;
    }
    if (level == LEVEL_FULL || contended) {
        if (ensure_registered() == 0) {
            PyObject *site = user_site();
            if (site != NULL) {
                PyObject *bb = blocked_by ? ident_obj(blocked_by) : Py_NewRef(Py_None);
                PyObject *item = Py_BuildValue(
                    "(lLNOkLONOO)", op_restore, (long long)t1, ident_obj(me), self->prim,
                    count, (long long)wait, contended ? Py_True : Py_False, bb,
                    PyTuple_GET_ITEM(site, 0), PyTuple_GET_ITEM(site, 1));
                Py_DECREF(site);
                if (ts_emit_tuple(item) < 0) {
                    PyErr_Clear();
                }
            }
        }
        PyErr_Clear();
    }
    Py_RETURN_NONE;
}

/* -- statistics ----------------------------------------------------------------------------- */
static PyObject *
lock_statistics(NativeLock *self, PyObject *Py_UNUSED(ignored))
{
    PyObject *kw = Py_BuildValue(
        "{sOsOsOsKsKsKsKsLsLsKsNsKsisisisi}",
        "prim", self->prim, "kind", self->kind, "name", self->name,
        "acquisitions", (unsigned long long)self->acquisitions,
        "contended", (unsigned long long)self->contended,
        "failed", (unsigned long long)self->failed,
        "max_depth", (unsigned long long)self->max_depth,
        "wait_ns", (long long)self->wait_ns,
        "hold_ns", (long long)ticks_to_ns(self->hold_ticks),
        "misuse", (unsigned long long)self->misuse,
        "owner", self->owner ? PyLong_FromUnsignedLong(self->owner) : Py_NewRef(Py_None),
        "depth", (unsigned long long)self->depth,
        "waits", 0, "wait_timeouts", 0, "notifies", 0, "unheard_notifies", 0);
    if (kw == NULL) {
        return NULL;
    }
    PyObject *empty = PyTuple_New(0);
    PyObject *r = empty ? PyObject_Call(ts_hooks.statistics_cls, empty, kw) : NULL;
    Py_XDECREF(empty);
    Py_DECREF(kw);
    return r;
}

/* Record the counters once (at exit, or when the lock is collected): state.report_stats. */
static PyObject *
lock_report(NativeLock *self, PyObject *Py_UNUSED(ignored))
{
    if (self->reported) {
        Py_RETURN_NONE;
    }
    self->reported = 1;
    if (!ts_level) {
        Py_RETURN_NONE;
    }
    return PyObject_CallOneArg(ts_hooks.report, (PyObject *)self);
}

/* -- construction ---------------------------------------------------------------------------- */
static PyObject *
lock_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    NativeLock *self = (NativeLock *)type->tp_alloc(type, 0);
    if (self == NULL) {
        return NULL;
    }
    self->lock = PyThread_allocate_lock();
    if (self->lock == NULL) {
        Py_DECREF(self);
        PyErr_SetString(PyExc_MemoryError, "cannot allocate lock");
        return NULL;
    }
    self->reentrant = (char)PyType_IsSubtype(type, &NativeRLockType);
    self->kind = PyUnicode_InternFromString(self->reentrant ? "RLock" : "Lock");
    self->name = Py_NewRef(Py_None);
    self->prim = Py_NewRef(Py_None);
    self->reported = 1;  /* until it is registered */
    if (self->kind == NULL) {
        Py_DECREF(self);
        return NULL;
    }
    return (PyObject *)self;
}

/* __init__(*, name=None, _site=None): register (id, `created` event). */
static int
lock_init(NativeLock *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"name", "_site", NULL};
    PyObject *name = Py_None, *site = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "|$OO:NativeLock", kwlist, &name, &site)) {
        return -1;
    }
    if (name != Py_None && !PyUnicode_Check(name)) {
        PyErr_Format(PyExc_TypeError, "name must be a str or None, not %.100s",
                     Py_TYPE(name)->tp_name);
        return -1;
    }
    Py_INCREF(name);
    Py_XSETREF(self->name, name);
    /* registry.new_native(lock, kind, name, site) -> (pid, n, "pid.n") */
    PyObject *r = PyObject_CallFunctionObjArgs(ts_hooks.registry_new, (PyObject *)self,
                                               self->kind, name, site, NULL);
    if (r == NULL) {
        return -1;
    }
    unsigned int pid, n;
    PyObject *prim;
    if (!PyArg_ParseTuple(r, "IIU", &pid, &n, &prim)) {
        Py_DECREF(r);
        return -1;
    }
    self->prim_pid = pid;
    self->prim_n = n;
    Py_INCREF(prim);
    Py_XSETREF(self->prim, prim);
    self->reported = 0;
    Py_DECREF(r);
    return 0;
}

static void
lock_finalize(PyObject *op)
{
    NativeLock *self = (NativeLock *)op;
    if (self->reported || !Py_IsInitialized()) {
        return;
    }
    PyObject *exc = PyErr_GetRaisedException();
    PyObject *r = lock_report(self, NULL);
    if (r == NULL) {
        PyErr_Clear();
    }
    Py_XDECREF(r);
    PyErr_SetRaisedException(exc);
}

static void
lock_dealloc(NativeLock *self)
{
    if (PyObject_CallFinalizerFromDealloc((PyObject *)self) < 0) {
        return;  /* resurrected */
    }
    if (self->weakreflist != NULL) {
        PyObject_ClearWeakRefs((PyObject *)self);
    }
    if (self->lock != NULL) {
        if (self->locked) {
            PyThread_release_lock(self->lock);
        }
        PyThread_free_lock(self->lock);
    }
    Py_XDECREF(self->prim);
    Py_XDECREF(self->name);
    Py_XDECREF(self->kind);
    /* A subclass's subtype_dealloc releases its (heap) type after calling this. */
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *
lock_repr(NativeLock *self)
{
    const char *state = self->locked ? "locked" : "unlocked";
    PyObject *extra = self->name == Py_None
                          ? PyUnicode_FromFormat(" traced=%S", self->prim)
                          : PyUnicode_FromFormat(" traced=%S name=%R", self->prim, self->name);
    if (extra == NULL) {
        return NULL;
    }
    PyObject *r;
    if (self->reentrant) {
        r = PyUnicode_FromFormat("<%s _thread.RLock object owner=%lu count=%lu at %p%U>", state,
                                 self->owner, self->depth, self, extra);
    }
    else {
        r = PyUnicode_FromFormat("<%s _thread.lock object at %p%U>", state, self, extra);
    }
    Py_DECREF(extra);
    return r;
}

/* -- attributes: the books, read-only ---------------------------------------------------- */
static PyObject *
get_class(NativeLock *self, void *c)
{
    return Py_NewRef(self->reentrant ? real_rlock_type : real_lock_type);
}

static PyObject *
get_owner(NativeLock *self, void *c)
{
    if (self->depth == 0 || self->owner == 0) {
        Py_RETURN_NONE;
    }
    return PyLong_FromUnsignedLong(self->owner);
}

static PyObject *
get_t_hold(NativeLock *self, void *c)
{
    if (!self->t_hold) {
        return PyLong_FromLong(0);
    }
    if (self->t_hold != self->t_hold_seen) {  /* converted once per hold: the calibration moves */
        self->t_hold_seen = self->t_hold;
        self->t_hold_ns = ts_to_ns(&ts_current_calib, self->t_hold);
    }
    return PyLong_FromLongLong(self->t_hold_ns);
}

static PyObject *
get_hold_ns(NativeLock *self, void *c)
{
    return PyLong_FromLongLong(ticks_to_ns(self->hold_ticks));
}

static PyObject *get_depth(NativeLock *s, void *c) { return PyLong_FromUnsignedLong(s->depth); }
static PyObject *get_acq(NativeLock *s, void *c) { return PyLong_FromUnsignedLongLong(s->acquisitions); }
static PyObject *get_contended(NativeLock *s, void *c) { return PyLong_FromUnsignedLongLong(s->contended); }
static PyObject *get_failed(NativeLock *s, void *c) { return PyLong_FromUnsignedLongLong(s->failed); }
static PyObject *get_max_depth(NativeLock *s, void *c) { return PyLong_FromUnsignedLongLong(s->max_depth); }
static PyObject *get_misuse(NativeLock *s, void *c) { return PyLong_FromUnsignedLongLong(s->misuse); }
static PyObject *get_wait_ns(NativeLock *s, void *c) { return PyLong_FromLongLong(s->wait_ns); }
static PyObject *get_restore_ns(NativeLock *s, void *c) { return PyLong_FromLongLong(s->restore_ns); }
static PyObject *get_reentrant(NativeLock *s, void *c) { return PyBool_FromLong(s->reentrant); }
static PyObject *get_reported(NativeLock *s, void *c) { return PyBool_FromLong(s->reported); }
static PyObject *get_prim(NativeLock *s, void *c) { return Py_NewRef(s->prim); }
static PyObject *get_name(NativeLock *s, void *c) { return Py_NewRef(s->name); }
static PyObject *get_kind(NativeLock *s, void *c) { return Py_NewRef(s->kind); }
static PyObject *get_self(NativeLock *s, void *c) { return Py_NewRef((PyObject *)s); }
static PyObject *get_none(NativeLock *s, void *c) { Py_RETURN_NONE; }

static int
set_reported(NativeLock *s, PyObject *v, void *c)
{
    int b = v ? PyObject_IsTrue(v) : 0;
    if (b < 0) {
        return -1;
    }
    s->reported = (char)b;
    return 0;
}

static PyGetSetDef lock_getset[] = {
    {"__class__", (getter)get_class, NULL, "The original's type (isinstance answers as for it).", NULL},
    {"owner", (getter)get_owner, NULL, "ident of the holder, or None", NULL},
    {"depth", (getter)get_depth, NULL, "recursion depth (a Lock: 0 or 1)", NULL},
    {"t_hold", (getter)get_t_hold, NULL, "monotonic ns of the acquire that took it (0: none)", NULL},
    {"acquisitions", (getter)get_acq, NULL, NULL, NULL},
    {"contended", (getter)get_contended, NULL, NULL, NULL},
    {"failed", (getter)get_failed, NULL, NULL, NULL},
    {"max_depth", (getter)get_max_depth, NULL, NULL, NULL},
    {"misuse", (getter)get_misuse, NULL, NULL, NULL},
    {"wait_ns", (getter)get_wait_ns, NULL, NULL, NULL},
    {"hold_ns", (getter)get_hold_ns, NULL, NULL, NULL},
    {"restore_ns", (getter)get_restore_ns, NULL, NULL, NULL},
    {"reentrant", (getter)get_reentrant, NULL, NULL, NULL},
    {"reported", (getter)get_reported, (setter)set_reported, NULL, NULL},
    {"prim", (getter)get_prim, NULL, "tracedsync's id of the lock", NULL},
    {"name", (getter)get_name, NULL, NULL, NULL},
    {"kind", (getter)get_kind, NULL, NULL, NULL},
    {"raw", (getter)get_self, NULL, "the lock itself (it is its own real lock)", NULL},
    {"ext", (getter)get_none, NULL, NULL, NULL},
    {NULL},
};

#define FASTCALL(f) (PyCFunction)(void (*)(void))(f)

static PyMethodDef lock_methods[] = {
    {"acquire", FASTCALL(lock_acquire), METH_FASTCALL | METH_KEYWORDS,
     "acquire(blocking=True, timeout=-1): as threading's, recorded."},
    {"__enter__", FASTCALL(lock_acquire), METH_FASTCALL | METH_KEYWORDS, NULL},
    {"release", (PyCFunction)lock_release, METH_NOARGS, "release(): as threading's, recorded."},
    {"__exit__", FASTCALL(lock_exit), METH_FASTCALL, NULL},
    {"_at_fork_reinit", (PyCFunction)lock_at_fork_reinit, METH_NOARGS, NULL},
    {"_is_owned", (PyCFunction)lock_is_owned, METH_NOARGS, NULL},
    {"_release_save", (PyCFunction)lock_release_save, METH_NOARGS, NULL},
    {"_acquire_restore", (PyCFunction)lock_acquire_restore, METH_O, NULL},
    {"statistics", (PyCFunction)lock_statistics, METH_NOARGS,
     "A snapshot of this lock's counters."},
    {"report", (PyCFunction)lock_report, METH_NOARGS,
     "Record the counters once (at exit, or when collected)."},
    {NULL},
};

static PyMethodDef lock_only_methods[] = {
    {"locked", (PyCFunction)lock_locked, METH_NOARGS, "Whether the lock is held."},
    {NULL},
};

static PyMethodDef rlock_only_methods[] = {
    {"_recursion_count", (PyCFunction)lock_recursion_count, METH_NOARGS, NULL},
    {NULL},
};

static PyTypeObject NativeLockType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "tracedsync._core._native.NativeLock",
    .tp_basicsize = sizeof(NativeLock),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE,
    .tp_doc = "A traced threading.Lock, in C.",
    .tp_new = lock_new,
    .tp_init = (initproc)lock_init,
    .tp_dealloc = (destructor)lock_dealloc,
    .tp_finalize = lock_finalize,
    .tp_repr = (reprfunc)lock_repr,
    .tp_methods = lock_methods,
    .tp_getset = lock_getset,
    .tp_weaklistoffset = offsetof(NativeLock, weakreflist),
};

static PyTypeObject NativeRLockType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "tracedsync._core._native.NativeRLock",
    .tp_basicsize = sizeof(NativeLock),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE,
    .tp_doc = "A traced threading.RLock, in C.",
    .tp_new = lock_new,
    .tp_init = (initproc)lock_init,
    .tp_dealloc = (destructor)lock_dealloc,
    .tp_finalize = lock_finalize,
    .tp_repr = (reprfunc)lock_repr,
    .tp_methods = lock_methods,
    .tp_getset = lock_getset,
    .tp_weaklistoffset = offsetof(NativeLock, weakreflist),
};

static int
add_methods(PyTypeObject *type, PyMethodDef *defs)
{
    for (PyMethodDef *d = defs; d->ml_name != NULL; d++) {
        PyObject *descr = PyDescr_NewMethod(type, d);
        if (descr == NULL || PyDict_SetItemString(type->tp_dict, d->ml_name, descr) < 0) {
            Py_XDECREF(descr);
            return -1;
        }
        Py_DECREF(descr);
    }
    PyType_Modified(type);
    return 0;
}

static long
op_code(const char *name)
{
    PyObject *v = PyDict_GetItemString(ops, name);
    return v ? PyLong_AsLong(v) : -1;
}

/* install(runtime, waits, sites, statistics_cls, registry_new, report, ops, real_lock_type,
 *         real_rlock_type, allocate_lock) */
static PyObject *
install_locks(PyObject *module, PyObject *args)
{
    PyObject *runtime, *waits, *sites, *stats, *reg, *report, *opd, *rl, *rrl, *alloc;
    if (!PyArg_ParseTuple(args, "OOOOOOO!OOO:install", &runtime, &waits, &sites, &stats, &reg,
                          &report, &PyDict_Type, &opd, &rl, &rrl, &alloc)) {
        return NULL;
    }
#define KEEP(dst, src) do { Py_INCREF(src); Py_XSETREF(dst, src); } while (0)
    KEEP(ts_hooks.runtime, runtime);
    KEEP(ts_hooks.waits, waits);
    KEEP(ts_hooks.user_site, sites);
    KEEP(ts_hooks.statistics_cls, stats);
    KEEP(ts_hooks.registry_new, reg);
    KEEP(ts_hooks.report, report);
    KEEP(ops, opd);
    KEEP(real_lock_type, rl);
    KEEP(real_rlock_type, rrl);
    KEEP(allocate_lock, alloc);
#undef KEEP
    op_acquire = op_code("OP_ACQUIRE");
    op_release = op_code("OP_RELEASE");
    op_save = op_code("OP_SAVE");
    op_restore = op_code("OP_RESTORE");
    op_misuse = op_code("OP_MISUSE");
    op_generic = op_code("OP_GENERIC");
    op_stats = op_code("OP_STATS");
    if (PyErr_Occurred()) {
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyMethodDef lock_module_methods[] = {
    {"install", install_locks, METH_VARARGS, "Connect the native locks to the runtime."},
    {NULL},
};

int
ts_lock_init(PyObject *module)
{
#define INTERN(var, text) if ((var = PyUnicode_InternFromString(text)) == NULL) return -1;
    INTERN(s_emit, "emit");
    INTERN(s_register_thread, "register_thread");
    INTERN(s_wait_lock, "wait_lock");
    INTERN(s_wait_restore, "wait_restore");
    INTERN(s_forget, "forget");
    INTERN(s_user_site, "user_site");
    INTERN(s_user_frame, "user_frame");
    INTERN(s_new_native, "new_native");
    INTERN(s_interrupted, "interrupted");
    INTERN(s_prim, "prim");
    INTERN(s_error, "error");
#undef INTERN
    if (PyType_Ready(&NativeLockType) < 0 || PyType_Ready(&NativeRLockType) < 0) {
        return -1;
    }
    if (add_methods(&NativeLockType, lock_only_methods) < 0 ||
        add_methods(&NativeRLockType, rlock_only_methods) < 0) {
        return -1;
    }
    if (PyModule_AddObjectRef(module, "NativeLock", (PyObject *)&NativeLockType) < 0 ||
        PyModule_AddObjectRef(module, "NativeRLock", (PyObject *)&NativeRLockType) < 0) {
        return -1;
    }
    return PyModule_AddFunctions(module, lock_module_methods);
}
