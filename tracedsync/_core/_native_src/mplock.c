/*
 * The hot paths of the traced multiprocessing locks and of a Value's or Array's get and set,
 * in C.
 *
 * Design note (read tracedsync/_multiprocessing/base.py and locks.py first). A traced
 * multiprocessing Lock/RLock is a subclass of multiprocessing's own class; while the level is
 * not off, the methods below are on that class (`mp_lock_methods`), and the instance
 * attributes multiprocessing sets (`acquire`/`release`, its SemLock's) are not there. Its books
 * are an `MpLockBooks` (this file), the object's `_ts_books` attribute: owner, depth, hold
 * start, counters as C fields, the SemLock's own bound methods, and the address of the shared
 * owner record (owner.py). The lock's `LockState` (its `_ts_state`: the detectors, the Python
 * slow paths) reads and writes the same fields through properties. Both are attributes in the
 * instance's dict (see base.py for why not slots), read here with one attribute lookup.
 *
 * The common cases are here: an acquire with the default arguments (or a plain block flag)
 * that gets the lock at once, a release the books agree with. The real SemLock's `acquire`
 * and `release` are called as the Python path calls them; the owner record is written through
 * its address; the event is a native record (`K_MP_ACQUIRE`, `K_RELEASE`). Everything else
 * (contention, timeouts and other arguments, misuse, the Condition protocol) is the Python
 * path's. Concurrency is the Python path's: the books are written by the holder only, after
 * the real acquire and before the real release, with the GIL held.
 *
 * A Value's `value` (`mp_value_get`/`mp_value_set`, the getter and setter of the property on
 * the traced Value class) and an Array's items by an int index (its `__getitem__` and
 * `__setitem__`: `mp_item_methods`) are multiprocessing's getter and setter with the lock
 * taken by the code above (`value_access`): take the value's lock, read or write the ctypes
 * object, keep the books (`MpValueBooks`: gets, sets, unlocked, rmws), apply the
 * read-modify-write rule (rmw.py's, in C: the thread's remembered gets are a table in its
 * record buffer; Python is called only to report a read-modify-write), write the record
 * (`K_VALUE`, with the normalised index) and release. If the caller
 * already holds the value's RLock (its SemLock says so), the value is read or written under
 * that holding without taking the lock again: the real wrapper would take it once more and
 * give it back, which changes nothing another thread or process can see, and the log records
 * the access (`locked: true`) and not the nested pair. Values over any other lock, slices and
 * other indexes take the Python path.
 *
 * Objects: the uncontended paths create no Python object (an unsynchronised
 * read-modify-write, which is reported, does).
 */
#include "native.h"
#include <limits.h>
#include <stddef.h>
#include <structmember.h>
#include <unistd.h>


/* -- the books of a lock ------------------------------------------------------------------- */
typedef struct {
    PyObject_HEAD
    PyObject *sl_acquire;     /* the SemLock's bound acquire, release and _is_mine */
    PyObject *sl_release;
    PyObject *sl_is_mine;
    PyObject *record;         /* the shared owner record (kept alive), or NULL */
    int64_t *rec;             /* its address */
    unsigned long owner;      /* ident of the holder (0: none) */
    long long depth;
    int64_t t_hold;           /* monotonic ns of the acquire that took it from free */
    unsigned long long acquisitions, contended, failed, max_depth;
    int64_t wait_ns, hold_ns, restore_ns;
    unsigned int prim_pid, prim_n;
    char reentrant;
} MpLockBooks;

static PyTypeObject MpLockBooksType;

/* -- the books of a Value or Array ---------------------------------------------------------- */
typedef struct {
    PyObject_HEAD
    PyObject *obj;            /* the shared ctypes object */
    PyObject *lock;           /* the value's lock */
    PyObject *lock_books;     /* its MpLockBooks (a traced multiprocessing lock), or NULL */
    PyObject *prim;           /* the value's id */
    unsigned int prim_pid, prim_n;
    Py_ssize_t length;        /* an Array's length (0: a Value) */
    unsigned long long gets, sets, unlocked, rmws;
} MpValueBooks;

static PyTypeObject MpValueBooksType;

/* -- configuration (mp_configure) ----------------------------------------------------------- */
static PyObject *s_ts_books = NULL, *s_ts_state = NULL;  /* "_ts_books", "_ts_state" */
static PyObject *py_acquire_slow = NULL;   /* locks.acquire_slow(st, block, timeout, fdepth) */
static PyObject *py_release = NULL;        /* locks.release_py(st) */
static PyObject *py_release_unbooked = NULL;  /* locks.release_unbooked(st, me) */
static PyObject *py_acquire_args = NULL;   /* locks.acquire_args(lock, *args, **kwargs) */
static PyObject *py_value_get = NULL;      /* values.value_get(obj) */
static PyObject *py_value_set = NULL;      /* values.value_set(obj, value) */
static PyObject *py_item_get = NULL;       /* values.item_get(obj, index) */
static PyObject *py_item_set = NULL;       /* values.item_set(obj, index, value) */
static PyObject *py_rmw_found = NULL;      /* values.rmw_found(obj, key, read, code, pos) */
static int kind_acquire = -1, kind_release = -1, kind_value = -1;
static long my_pid = 0;
static PyObject *s_value = NULL;           /* "value" */

/* -- records ---------------------------------------------------------------------------- */
/* A declared-kind record (kinds.c's layout; no idents) at call site `site`. */
static void
rec_kind(int kind, unsigned int prim_pid, unsigned int prim_n, uint32_t site, uint8_t bits,
         uint64_t w0, uint64_t w1)
{
    ts_rec *r = ts_rec_getn(2);
    if (r == NULL) {
        PyErr_Clear();  /* recording never breaks the program: the record is lost */
        return;
    }
    r->t = ts_ticks();
    r->prim_pid = prim_pid;
    r->prim_n = prim_n;
    r->site = site;
    r->op = REC_KIND;
    r->flags = bits;
    r->depth = (uint16_t)kind;
    r->val = w0;
    ts_ext *x = (ts_ext *)(r + 1);
    x->w[0] = w1;
    x->w[1] = x->w[2] = x->w[3] = 0;
    ts_rec_commitn(2);
}

static inline int64_t
now_ns(void)
{
    return ts_to_ns(&ts_current_calib, ts_ticks());
}

/* The calling thread's buffer (registering the thread the first time), or NULL with an
 * error. */
static inline ts_tbuf *
my_buf(void)
{
    ts_tbuf *b = ts_tls_buf;
    if (LIKELY(b != NULL)) {
        return b;
    }
    if (ts_thread_ident_slow() == 0) {
        return NULL;
    }
    return ts_tls_buf;
}

/* -- the books, from the primitive objects -------------------------------------------------- */
/* The books of traced lock `lock` (its `_ts_books`), a new reference; NULL with an error. */
static MpLockBooks *
lock_books(PyObject *lock)
{
    PyObject *b = PyObject_GetAttr(lock, s_ts_books);
    if (b != NULL && !PyObject_TypeCheck(b, &MpLockBooksType)) {
        Py_DECREF(b);
        PyErr_SetString(PyExc_TypeError, "tracedsync: a traced multiprocessing lock without books");
        return NULL;
    }
    return (MpLockBooks *)b;
}

/* The state of a traced primitive (its `_ts_state`), a new reference; NULL with an error. */
static PyObject *
state_of(PyObject *obj)
{
    return PyObject_GetAttr(obj, s_ts_state);
}

/* -- acquire ------------------------------------------------------------------------------ */
/* The books, owner record and record of an acquire by thread `tb` that got the lock
 * (`blocking`: the call could have waited). */
static void
took(MpLockBooks *b, ts_tbuf *tb, int level, uint32_t site, int blocking)
{
    if (b->rec != NULL) {  /* first: the window in which others see no owner is short */
        b->rec[0] = ((int64_t)my_pid << 32) | ((int64_t)tb->native_id & 0xFFFFFFFF);
    }
    unsigned long me = tb->ident;
    long long depth;
    if (b->reentrant && b->owner == me && b->depth > 0) {
        depth = b->depth + 1;
    }
    else {
        b->owner = me;
        b->t_hold = now_ns();
        depth = 1;
    }
    if (b->rec != NULL) {
        b->rec[1] = depth;
    }
    b->depth = depth;
    b->acquisitions++;
    if ((unsigned long long)depth > b->max_depth) {
        b->max_depth = (unsigned long long)depth;
    }
    if (level == LEVEL_FULL) {  /* bits: ok, blocking */
        rec_kind(kind_acquire, b->prim_pid, b->prim_n,
                 site ? site : ts_site_of_caller(), blocking ? 0b101 : 0b001,
                 (uint64_t)depth, 0);
    }
}

/* acquire(block) of `lock` (books `b`): a try, then the books and record; if the try failed,
 * the Python path (which blocks, or records the failed try). A new reference (True/False). */
static PyObject *
acquire_fast(PyObject *lock, MpLockBooks *b, int block, uint32_t site)
{
    int level = ts_level;
    if (UNLIKELY(!level)) {  /* (the methods leave the class at off; a call that was running) */
        return PyObject_CallOneArg(b->sl_acquire, block ? Py_True : Py_False);
    }
    ts_tbuf *tb = my_buf();  /* (registering the thread first: never while holding it) */
    if (tb == NULL) {
        return NULL;
    }
    PyObject *got = PyObject_CallOneArg(b->sl_acquire, Py_False);
    if (got == NULL) {
        return NULL;
    }
    int ok = PyObject_IsTrue(got);
    Py_DECREF(got);
    if (ok < 0) {
        return NULL;
    }
    if (!ok) {
        PyObject *st = state_of(lock);
        if (st == NULL) {
            return NULL;
        }
        PyObject *args[4] = {st, block ? Py_True : Py_False, Py_None, NULL};
        args[3] = PyLong_FromLong(0);  /* 0: the slow path finds the user's frame itself */
        PyObject *r = args[3] == NULL ? NULL : PyObject_Vectorcall(py_acquire_slow, args, 4, NULL);
        Py_XDECREF(args[3]);
        Py_DECREF(st);
        return r;
    }
    took(b, tb, level, site, block);
    Py_RETURN_TRUE;
}

/* -- release ------------------------------------------------------------------------------ */
/* release() of `lock`: None, or NULL with an error. */
static PyObject *
release_fast(PyObject *lock, MpLockBooks *b, uint32_t site)
{
    int level = ts_level;
    ts_tbuf *tb = ts_tls_buf;
    long long depth = b->depth;
    if (UNLIKELY(!level || depth <= 0 || tb == NULL || b->owner != tb->ident)) {
        PyObject *st = state_of(lock);
        if (st == NULL) {
            return NULL;
        }
        PyObject *r = PyObject_CallOneArg(py_release, st);
        Py_DECREF(st);
        return r;
    }
    int64_t *rec = b->rec;
    depth -= 1;
    int64_t hold = 0;
    if (depth == 0) {
        int64_t t = now_ns();
        hold = t - b->t_hold;
        int64_t word = rec ? rec[0] : 0;
        unsigned long owner = b->owner;
        b->owner = 0;
        b->depth = 0;
        if (rec != NULL) {
            rec[1] = 0;
            rec[0] = 0;  /* last before the real release (see owner.py) */
        }
        PyObject *r = PyObject_CallNoArgs(b->sl_release);
        if (r == NULL) {
            /* Our books were stale (the lock was released behind them): put them back as
             * they were and let the Python path redo it, which records the misuse. */
            if (rec != NULL) {
                rec[0] = word;
                rec[1] = 1;
            }
            b->owner = owner;
            b->depth = 1;
            PyErr_Clear();
            PyObject *st = state_of(lock);
            if (st == NULL) {
                return NULL;
            }
            PyObject *me = PyLong_FromUnsignedLong(tb->ident);
            if (me == NULL) {
                Py_DECREF(st);
                return NULL;
            }
            b->owner = 0;
            b->depth = 0;
            PyObject *args[2] = {st, me};
            r = PyObject_Vectorcall(py_release_unbooked, args, 2, NULL);
            Py_DECREF(me);
            Py_DECREF(st);
            return r;
        }
        Py_DECREF(r);
        b->hold_ns += hold;
    }
    else {
        b->depth = depth;
        if (rec != NULL) {
            rec[1] = depth;
        }
        PyObject *r = PyObject_CallNoArgs(b->sl_release);
        if (r == NULL) {
            return NULL;
        }
        Py_DECREF(r);
    }
    if (level == LEVEL_FULL) {
        if (site == 0) {
            site = ts_site_of_caller();
        }
        if (depth == 0) {
            rec_kind(kind_release, b->prim_pid, b->prim_n, site, 1, 0, (uint64_t)hold);
        }
        else {
            rec_kind(kind_release, b->prim_pid, b->prim_n, site, 0, (uint64_t)depth, 0);
        }
    }
    Py_RETURN_NONE;
}

/* -- the lock's methods --------------------------------------------------------------------- */
/* acquire(): the defaults, or a plain block flag (True/False, positional); anything else goes
 * to the Python method, whose checks are the original's. */
static PyObject *
m_acquire(PyObject *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    if (kwnames == NULL && nargs <= 1) {
        int block = 1;
        if (nargs == 1) {
            if (args[0] == Py_False) {
                block = 0;
            }
            else if (args[0] != Py_True) {
                goto python;
            }
        }
        MpLockBooks *b = lock_books(self);
        if (b == NULL) {
            return NULL;
        }
        PyObject *r = acquire_fast(self, b, block, 0);
        Py_DECREF(b);
        return r;
    }
python:;
    Py_ssize_t n = nargs + (kwnames ? PyTuple_GET_SIZE(kwnames) : 0);
    PyObject *small[8];
    PyObject **all = small;
    if (n + 1 > 8) {
        all = PyMem_Malloc((size_t)(n + 1) * sizeof(PyObject *));
        if (all == NULL) {
            return PyErr_NoMemory();
        }
    }
    all[0] = self;
    for (Py_ssize_t i = 0; i < n; i++) {
        all[i + 1] = args[i];
    }
    PyObject *r = PyObject_Vectorcall(py_acquire_args, all, nargs + 1, kwnames);
    if (all != small) {
        PyMem_Free(all);
    }
    return r;
}

static PyObject *
m_enter(PyObject *self, PyObject *Py_UNUSED(ignored))
{
    MpLockBooks *b = lock_books(self);
    if (b == NULL) {
        return NULL;
    }
    PyObject *r = acquire_fast(self, b, 1, 0);
    Py_DECREF(b);
    return r;
}

static PyObject *
m_release(PyObject *self, PyObject *Py_UNUSED(ignored))
{
    MpLockBooks *b = lock_books(self);
    if (b == NULL) {
        return NULL;
    }
    PyObject *r = release_fast(self, b, 0);
    Py_DECREF(b);
    return r;
}

static PyObject *
m_exit(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    return m_release(self, NULL);
}

static PyMethodDef mp_lock_defs[] = {
    {"acquire", (PyCFunction)(void (*)(void))m_acquire, METH_FASTCALL | METH_KEYWORDS,
     "Acquire the lock, exactly as multiprocessing's does, and record it."},
    {"__enter__", (PyCFunction)m_enter, METH_NOARGS, NULL},
    {"release", (PyCFunction)m_release, METH_NOARGS,
     "Release the lock, exactly as multiprocessing's does, and record it."},
    {"__exit__", (PyCFunction)(void (*)(void))m_exit, METH_FASTCALL, NULL},
    {NULL, NULL, 0, NULL},
};

/* -- a Value's `value` --------------------------------------------------------------------- */
/* Take the value's lock for one access unless the caller holds it (an RLock): `*taken` says
 * whether it was taken. Returns locked (the caller held it before: 1, else 0), -1 on error;
 * `*has_hold`/`*hold`: the caller's holding as the rmw rule sees it (known when it owns it). */
static int
value_enter(MpValueBooks *vb, MpLockBooks *lb, uint32_t site, unsigned long me, int *taken,
            int *has_hold, int64_t *hold)
{
    PyObject *r = PyObject_CallNoArgs(lb->sl_is_mine);  /* the lock itself answers */
    if (r == NULL) {
        return -1;
    }
    int locked = PyObject_IsTrue(r);
    Py_DECREF(r);
    if (locked < 0) {
        return -1;
    }
    *has_hold = locked && lb->owner == me && lb->depth > 0;
    *hold = *has_hold ? lb->t_hold : 0;
    *taken = !(locked && lb->reentrant);
    if (*taken) {
        r = acquire_fast(vb->lock, lb, 1, site);
        if (r == NULL) {
            return -1;
        }
        Py_DECREF(r);
    }
    return locked;
}

/* -- the read-modify-write rule, in C (rmw.py's, with the thread's gets in its buffer) -------- */
/* Remember a get of item `key` of `vb` by this thread. */
static void
rmw_note(ts_tbuf *tb, MpValueBooks *vb, int64_t key, uint32_t site, int locked, int has_hold,
         int64_t hold)
{
    ts_rmw_read *e = NULL;
    for (uint32_t i = 0; i < tb->n_reads; i++) {
        ts_rmw_read *x = &tb->reads[i];
        if (x->key == key && x->prim_n == vb->prim_n && x->prim_pid == vb->prim_pid) {
            e = x;
            break;
        }
    }
    if (e == NULL) {
        if (tb->n_reads >= RMW_READS) {
            tb->n_reads = 0;  /* forget them (at worst a missed report, never a false one) */
        }
        e = &tb->reads[tb->n_reads++];
        e->prim_pid = vb->prim_pid;
        e->prim_n = vb->prim_n;
        e->key = key;
    }
    e->site = site;
    e->locked = (int8_t)locked;
    e->has_hold = (int8_t)has_hold;
    e->hold = hold;
}

/* Forget this thread's get of item `key` of `vb`; 1 with it in `*got` if this set completes an
 * unsynchronised read-modify-write (the lock not held across both by one holding), else 0. */
static int
rmw_check(ts_tbuf *tb, MpValueBooks *vb, int64_t key, int locked, int has_hold, int64_t hold,
          ts_rmw_read *got)
{
    for (uint32_t i = 0; i < tb->n_reads; i++) {
        ts_rmw_read *x = &tb->reads[i];
        if (x->key == key && x->prim_n == vb->prim_n && x->prim_pid == vb->prim_pid) {
            *got = *x;
            tb->reads[i] = tb->reads[--tb->n_reads];
            int same = got->has_hold == has_hold && (!has_hold || got->hold == hold);
            return !(locked && got->locked && same);
        }
    }
    return 0;
}

/* The rule's arguments (code, pos) for site `site`; new references. */
static int
site_args(uint32_t site, PyObject **code, PyObject **pos)
{
    int lasti = 0;
    PyObject *c = ts_site_code(site, &lasti);
    *code = Py_NewRef(c != NULL ? c : Py_None);
    *pos = PyLong_FromLong(c != NULL ? -1 - lasti : 0);
    if (*pos == NULL) {
        Py_DECREF(*code);
        return -1;
    }
    return 0;
}

/* The books of traced Value or Array `obj` (its `_ts_books`), a new reference; NULL without
 * an error if it has none of ours. */
static inline MpValueBooks *
value_books(PyObject *obj)
{
    PyObject *vb = PyObject_GetAttr(obj, s_ts_books);
    if (vb == NULL || !PyObject_TypeCheck(vb, &MpValueBooksType)) {
        PyErr_Clear();
        Py_XDECREF(vb);
        return NULL;
    }
    return (MpValueBooks *)vb;
}

/* One get (`value` NULL) or set of `obj.value` (`index` NULL) or `obj[index]` over a traced
 * multiprocessing lock, recorded, as the Python path (values._access) does it: the lock taken
 * unless the caller holds the RLock, the ctypes object read or written, the books, the rmw
 * rule (`key`: the index normalised, or None), the record at full, the lock released. A new
 * reference (the value got, or None), or NULL with the error of the access. */
static PyObject *
value_access(PyObject *obj, MpValueBooks *vb, PyObject *index, PyObject *key, PyObject *value)
{
    int level = ts_level;
    int is_set = value != NULL;
    MpLockBooks *lb = (MpLockBooks *)vb->lock_books;
    ts_tbuf *tb = my_buf();
    if (tb == NULL) {
        return NULL;
    }
    uint32_t site = ts_site_of_caller();
    int taken = 0, has_hold = 0;
    int64_t hold = 0;
    int locked = value_enter(vb, lb, site, tb->ident, &taken, &has_hold, &hold);
    if (locked < 0) {
        return NULL;
    }
    int64_t ikey = key == Py_None ? RMW_NO_KEY : (int64_t)PyLong_AsSsize_t(key);
    PyObject *result;
    if (is_set) {
        int rc = index == NULL ? PyObject_SetAttr(vb->obj, s_value, value)
                               : PyObject_SetItem(vb->obj, index, value);
        result = rc < 0 ? NULL : Py_NewRef(Py_None);
    }
    else {
        result = index == NULL ? PyObject_GetAttr(vb->obj, s_value)
                               : PyObject_GetItem(vb->obj, index);
    }
    if (result != NULL) {
        int failed = 0;
        ts_rmw_read got;
        if (!is_set) {
            vb->gets++;
            rmw_note(tb, vb, ikey, site, locked, has_hold, hold);
        }
        else if (vb->sets++, rmw_check(tb, vb, ikey, locked, has_hold, hold, &got)) {
            /* an unsynchronised read-modify-write: rmw.py's reporting, with the get as
             * rmw.note_get would have kept it (code, pos, locked, hold) */
            PyObject *rcode, *rpos, *code, *pos;
            failed = -1;
            if (site_args(got.site, &rcode, &rpos) == 0) {
                PyObject *read = got.has_hold
                    ? Py_BuildValue("(NNON)", rcode, rpos, got.locked ? Py_True : Py_False,
                                    PyLong_FromLongLong(got.hold))
                    : Py_BuildValue("(NNOO)", rcode, rpos, got.locked ? Py_True : Py_False,
                                    Py_None);
                if (read != NULL && site_args(site, &code, &pos) == 0) {
                    PyObject *rargs[5] = {obj, key, read, code, pos};
                    PyObject *found = PyObject_Vectorcall(py_rmw_found, rargs, 5, NULL);
                    Py_DECREF(code);
                    Py_DECREF(pos);
                    if (found != NULL) {
                        Py_DECREF(found);
                        failed = 0;
                    }
                }
                Py_XDECREF(read);
            }
        }
        if (failed) {
            Py_CLEAR(result);
        }
        else {
            if (!locked) {
                vb->unlocked++;
            }
            if (level == LEVEL_FULL) {
                /* bits: a set, an index (in w0), locked */
                uint8_t bits = (uint8_t)(is_set | (key != Py_None) << 1 | locked << 2);
                uint64_t w0 = key == Py_None ? 0 : (uint64_t)ikey;
                rec_kind(kind_value, vb->prim_pid, vb->prim_n, site, bits, w0, 0);
            }
        }
    }
    if (taken) {
        PyObject *exc = result == NULL ? PyErr_GetRaisedException() : NULL;
        PyObject *r = release_fast(vb->lock, lb, site);
        if (r == NULL) {
            Py_XDECREF(exc);
            Py_CLEAR(result);
        }
        else {
            Py_DECREF(r);
            if (exc != NULL) {
                PyErr_SetRaisedException(exc);
            }
        }
    }
    return result;
}

/* The C paths serve objects whose lock is a traced multiprocessing lock, while tracing (their
 * books, a new reference); anything else is the Python path's (NULL, no error). */
static inline MpValueBooks *
served(PyObject *obj)
{
    if (!ts_level || py_rmw_found == NULL || kind_value < 0) {
        return NULL;
    }
    MpValueBooks *vb = value_books(obj);
    if (vb != NULL && vb->lock_books == NULL) {
        Py_CLEAR(vb);
    }
    return vb;
}

/* mp_value_get(obj): `obj.value`, recorded. */
static PyObject *
mp_value_get(PyObject *module, PyObject *obj)
{
    MpValueBooks *vb = served(obj);
    if (vb == NULL) {
        return PyObject_CallOneArg(py_value_get, obj);
    }
    PyObject *r = value_access(obj, vb, NULL, Py_None, NULL);
    Py_DECREF(vb);
    return r;
}

/* mp_value_set(obj, value): `obj.value = value`, recorded. */
static PyObject *
mp_value_set(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "mp_value_set(obj, value)");
        return NULL;
    }
    MpValueBooks *vb = served(args[0]);
    if (vb == NULL) {
        return PyObject_Vectorcall(py_value_set, args, 2, NULL);
    }
    PyObject *r = value_access(args[0], vb, NULL, Py_None, args[1]);
    Py_DECREF(vb);
    return r;
}

/* An Array's index as the events and the rmw rule see it (normalised: a negative one counts
 * from the end), a new reference; NULL without an error for anything but an int (a slice, a
 * bool, an object with __index__: the Python path). */
static PyObject *
item_key(MpValueBooks *vb, PyObject *index)
{
    if (!PyLong_CheckExact(index)) {
        return NULL;
    }
    Py_ssize_t i = PyLong_AsSsize_t(index);
    if (i == -1 && PyErr_Occurred()) {
        PyErr_Clear();
        return NULL;
    }
    if (i >= 0) {
        return Py_NewRef(index);
    }
    return PyLong_FromSsize_t(i + vb->length);
}

/* __getitem__(index) of a traced Array, recorded. */
static PyObject *
m_item_get(PyObject *self, PyObject *index)
{
    MpValueBooks *vb = served(self);
    PyObject *key = vb == NULL ? NULL : item_key(vb, index);
    if (key == NULL) {
        Py_XDECREF(vb);
        if (PyErr_Occurred()) {
            return NULL;
        }
        PyObject *args[2] = {self, index};
        return PyObject_Vectorcall(py_item_get, args, 2, NULL);
    }
    PyObject *r = value_access(self, vb, index, key, NULL);
    Py_DECREF(key);
    Py_DECREF(vb);
    return r;
}

/* __setitem__(index, value) of a traced Array, recorded. */
static PyObject *
m_item_set(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "__setitem__(index, value)");
        return NULL;
    }
    MpValueBooks *vb = served(self);
    PyObject *key = vb == NULL ? NULL : item_key(vb, args[0]);
    if (key == NULL) {
        Py_XDECREF(vb);
        if (PyErr_Occurred()) {
            return NULL;
        }
        PyObject *all[3] = {self, args[0], args[1]};
        return PyObject_Vectorcall(py_item_set, all, 3, NULL);
    }
    PyObject *r = value_access(self, vb, args[0], key, args[1]);
    Py_DECREF(key);
    Py_DECREF(vb);
    return r;
}

static PyMethodDef mp_item_defs[] = {
    {"__getitem__", (PyCFunction)m_item_get, METH_O, NULL},
    {"__setitem__", (PyCFunction)(void (*)(void))m_item_set, METH_FASTCALL, NULL},
    {NULL, NULL, 0, NULL},
};

/* -- MpLockBooks as a Python object --------------------------------------------------------- */
static PyObject *
books_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    return type->tp_alloc(type, 0);  /* zeroed: free, no counts */
}

static int
books_traverse(MpLockBooks *self, visitproc visit, void *arg)
{
    Py_VISIT(self->sl_acquire);
    Py_VISIT(self->sl_release);
    Py_VISIT(self->sl_is_mine);
    Py_VISIT(self->record);
    return 0;
}

static int
books_clear(MpLockBooks *self)
{
    Py_CLEAR(self->sl_acquire);
    Py_CLEAR(self->sl_release);
    Py_CLEAR(self->sl_is_mine);
    Py_CLEAR(self->record);
    self->rec = NULL;
    return 0;
}

static void
books_dealloc(MpLockBooks *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    books_clear(self);
    tp->tp_free((PyObject *)self);
}

static int
set_ll(long long *dst, PyObject *v, long long min)
{
    if (v == NULL) {
        PyErr_SetString(PyExc_AttributeError, "cannot delete a book");
        return -1;
    }
    long long x = PyLong_AsLongLong(v);
    if (x == -1 && PyErr_Occurred()) {
        return -1;
    }
    if (x < min) {
        PyErr_SetString(PyExc_ValueError, "a book below its minimum");
        return -1;
    }
    *dst = x;
    return 0;
}

#define LL_FIELD(field, ctype, min)                                                           \
    static PyObject *get_##field(MpLockBooks *s, void *c)                                     \
    {                                                                                         \
        return PyLong_FromLongLong((long long)s->field);                                      \
    }                                                                                         \
    static int set_##field(MpLockBooks *s, PyObject *v, void *c)                              \
    {                                                                                         \
        long long x;                                                                          \
        if (set_ll(&x, v, min) < 0) {                                                         \
            return -1;                                                                        \
        }                                                                                     \
        s->field = (ctype)x;                                                                  \
        return 0;                                                                             \
    }

LL_FIELD(depth, long long, 0)
LL_FIELD(acquisitions, unsigned long long, 0)
LL_FIELD(contended, unsigned long long, 0)
LL_FIELD(failed, unsigned long long, 0)
LL_FIELD(max_depth, unsigned long long, 0)
LL_FIELD(wait_ns, int64_t, LLONG_MIN)
LL_FIELD(hold_ns, int64_t, LLONG_MIN)
LL_FIELD(restore_ns, int64_t, LLONG_MIN)
LL_FIELD(prim_pid, unsigned int, 0)
LL_FIELD(prim_n, unsigned int, 0)

static PyObject *
get_owner(MpLockBooks *s, void *c)
{
    if (s->owner == 0) {
        Py_RETURN_NONE;
    }
    return PyLong_FromUnsignedLong(s->owner);
}

static int
set_owner(MpLockBooks *s, PyObject *v, void *c)
{
    if (v == NULL || v == Py_None) {
        s->owner = 0;
        return 0;
    }
    unsigned long x = PyLong_AsUnsignedLong(v);
    if (x == (unsigned long)-1 && PyErr_Occurred()) {
        return -1;
    }
    s->owner = x;
    return 0;
}

static PyObject *
get_t_hold(MpLockBooks *s, void *c)
{
    return PyLong_FromLongLong(s->t_hold);
}

static int
set_t_hold(MpLockBooks *s, PyObject *v, void *c)
{
    long long x;
    if (set_ll(&x, v, LLONG_MIN) < 0) {
        return -1;
    }
    s->t_hold = x;
    return 0;
}

static PyObject *
get_reentrant(MpLockBooks *s, void *c)
{
    return PyBool_FromLong(s->reentrant);
}

static int
set_reentrant(MpLockBooks *s, PyObject *v, void *c)
{
    int b = v == NULL ? 0 : PyObject_IsTrue(v);
    if (b < 0) {
        return -1;
    }
    s->reentrant = (char)b;
    return 0;
}

static PyObject *
get_record(MpLockBooks *s, void *c)
{
    return Py_NewRef(s->record != NULL ? s->record : Py_None);
}

/* `record`: the shared owner record, a ctypes array of two int64 (None: none). */
static int
set_record(MpLockBooks *s, PyObject *v, void *c)
{
    if (v == NULL || v == Py_None) {
        Py_CLEAR(s->record);
        s->rec = NULL;
        return 0;
    }
    Py_buffer view;
    if (PyObject_GetBuffer(v, &view, PyBUF_SIMPLE) < 0) {
        return -1;
    }
    int ok = view.len >= 2 * (Py_ssize_t)sizeof(int64_t);
    void *addr = view.buf;
    PyBuffer_Release(&view);
    if (!ok) {
        PyErr_SetString(PyExc_ValueError, "an owner record has two 64-bit words");
        return -1;
    }
    Py_INCREF(v);
    Py_XSETREF(s->record, v);
    s->rec = (int64_t *)addr;  /* shared memory that `record` keeps mapped */
    return 0;
}

static PyGetSetDef books_getset[] = {
    {"owner", (getter)get_owner, (setter)set_owner, "ident of the holder, or None", NULL},
    {"depth", (getter)get_depth, (setter)set_depth, "recursion depth (a Lock: 0 or 1)", NULL},
    {"t_hold", (getter)get_t_hold, (setter)set_t_hold,
     "monotonic ns of the acquire that took it from free", NULL},
    {"acquisitions", (getter)get_acquisitions, (setter)set_acquisitions, NULL, NULL},
    {"contended", (getter)get_contended, (setter)set_contended, NULL, NULL},
    {"failed", (getter)get_failed, (setter)set_failed, NULL, NULL},
    {"max_depth", (getter)get_max_depth, (setter)set_max_depth, NULL, NULL},
    {"wait_ns", (getter)get_wait_ns, (setter)set_wait_ns, NULL, NULL},
    {"hold_ns", (getter)get_hold_ns, (setter)set_hold_ns, NULL, NULL},
    {"restore_ns", (getter)get_restore_ns, (setter)set_restore_ns, NULL, NULL},
    {"prim_pid", (getter)get_prim_pid, (setter)set_prim_pid, NULL, NULL},
    {"prim_n", (getter)get_prim_n, (setter)set_prim_n, NULL, NULL},
    {"reentrant", (getter)get_reentrant, (setter)set_reentrant, NULL, NULL},
    {"record", (getter)get_record, (setter)set_record,
     "the shared owner record (a ctypes array of two int64), or None", NULL},
    {NULL},
};

static PyMemberDef books_members[] = {
    {"sl_acquire", T_OBJECT, offsetof(MpLockBooks, sl_acquire), 0,
     "the SemLock's own acquire (bound)"},
    {"sl_release", T_OBJECT, offsetof(MpLockBooks, sl_release), 0, NULL},
    {"sl_is_mine", T_OBJECT, offsetof(MpLockBooks, sl_is_mine), 0, NULL},
    {NULL},
};

static PyTypeObject MpLockBooksType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "tracedsync._core._native.MpLockBooks",
    .tp_basicsize = sizeof(MpLockBooks),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "The books of a traced multiprocessing lock, in C.",
    .tp_new = books_new,
    .tp_traverse = (traverseproc)books_traverse,
    .tp_clear = (inquiry)books_clear,
    .tp_dealloc = (destructor)books_dealloc,
    .tp_getset = books_getset,
    .tp_members = books_members,
};

/* -- MpValueBooks as a Python object (a base class: the Python side adds its own slots) ---- */
static PyObject *
vbooks_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    return type->tp_alloc(type, 0);
}

static int
vbooks_traverse(MpValueBooks *self, visitproc visit, void *arg)
{
    Py_VISIT(self->obj);
    Py_VISIT(self->lock);
    Py_VISIT(self->lock_books);
    Py_VISIT(self->prim);
    return 0;
}

static int
vbooks_clear(MpValueBooks *self)
{
    Py_CLEAR(self->obj);
    Py_CLEAR(self->lock);
    Py_CLEAR(self->lock_books);
    Py_CLEAR(self->prim);
    return 0;
}

static void
vbooks_dealloc(MpValueBooks *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    vbooks_clear(self);
    tp->tp_free((PyObject *)self);
}

static PyObject *
get_lock_books(MpValueBooks *s, void *c)
{
    return Py_NewRef(s->lock_books != NULL ? s->lock_books : Py_None);
}

static int
set_lock_books(MpValueBooks *s, PyObject *v, void *c)
{
    if (v == NULL || v == Py_None) {
        Py_CLEAR(s->lock_books);
        return 0;
    }
    if (!PyObject_TypeCheck(v, &MpLockBooksType)) {
        PyErr_SetString(PyExc_TypeError, "lock_books: an MpLockBooks or None");
        return -1;
    }
    Py_INCREF(v);
    Py_XSETREF(s->lock_books, v);
    return 0;
}

static PyGetSetDef vbooks_getset[] = {
    {"lock_books", (getter)get_lock_books, (setter)set_lock_books,
     "the books of the value's lock if it is a traced multiprocessing lock, else None", NULL},
    {NULL},
};

static PyMemberDef vbooks_members[] = {
    {"obj", T_OBJECT, offsetof(MpValueBooks, obj), 0, "the shared ctypes object"},
    {"lock", T_OBJECT, offsetof(MpValueBooks, lock), 0, "the value's lock"},
    {"prim", T_OBJECT, offsetof(MpValueBooks, prim), 0, "the value's id"},
    {"prim_pid", T_UINT, offsetof(MpValueBooks, prim_pid), 0, NULL},
    {"prim_n", T_UINT, offsetof(MpValueBooks, prim_n), 0, NULL},
    {"length", T_PYSSIZET, offsetof(MpValueBooks, length), 0, "an Array's length (0: a Value)"},
    {"gets", T_ULONGLONG, offsetof(MpValueBooks, gets), 0, NULL},
    {"sets", T_ULONGLONG, offsetof(MpValueBooks, sets), 0, NULL},
    {"unlocked", T_ULONGLONG, offsetof(MpValueBooks, unlocked), 0, NULL},
    {"rmws", T_ULONGLONG, offsetof(MpValueBooks, rmws), 0, NULL},
    {NULL},
};

static PyTypeObject MpValueBooksType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "tracedsync._core._native.MpValueBooks",
    .tp_basicsize = sizeof(MpValueBooks),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_BASETYPE,
    .tp_doc = "The books of a traced Value or Array, in C (a base of the Python books).",
    .tp_new = vbooks_new,
    .tp_traverse = (traverseproc)vbooks_traverse,
    .tp_clear = (inquiry)vbooks_clear,
    .tp_dealloc = (destructor)vbooks_dealloc,
    .tp_getset = vbooks_getset,
    .tp_members = vbooks_members,
};

/* -- configuration -------------------------------------------------------------------------- */
/* mp_configure(hooks: dict): the Python functions and record kinds the C paths use (see the
 * declarations above); a call sets those its dict names (locks.py and values.py each give
 * theirs). */
static PyObject *
mp_configure(PyObject *module, PyObject *hooks)
{
    if (!PyDict_Check(hooks)) {
        PyErr_SetString(PyExc_TypeError, "mp_configure(hooks: dict)");
        return NULL;
    }
    struct { const char *name; PyObject **dst; } table[] = {
        {"acquire_slow", &py_acquire_slow}, {"release", &py_release},
        {"release_unbooked", &py_release_unbooked}, {"acquire_args", &py_acquire_args},
        {"value_get", &py_value_get}, {"value_set", &py_value_set},
        {"item_get", &py_item_get}, {"item_set", &py_item_set},
        {"rmw_found", &py_rmw_found},
    };
    for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++) {
        PyObject *fn = PyDict_GetItemString(hooks, table[i].name);
        if (fn == NULL) {
            continue;
        }
        if (!PyCallable_Check(fn)) {
            PyErr_Format(PyExc_TypeError, "mp_configure: %s is not callable", table[i].name);
            return NULL;
        }
        Py_INCREF(fn);
        Py_XSETREF(*table[i].dst, fn);
    }
    struct { const char *name; int *dst; } kinds[] = {
        {"kind_acquire", &kind_acquire}, {"kind_release", &kind_release},
        {"kind_value", &kind_value},
    };
    for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++) {
        PyObject *v = PyDict_GetItemString(hooks, kinds[i].name);
        if (v == NULL) {
            continue;
        }
        long k = PyLong_AsLong(v);
        if (k == -1 && PyErr_Occurred()) {
            return NULL;
        }
        *kinds[i].dst = (int)k;
    }
    my_pid = (long)getpid();
    Py_RETURN_NONE;
}

/* {name: method} for class `cls` of the methods `defs`. */
static PyObject *
methods_for(PyObject *cls, PyMethodDef *defs)
{
    if (!PyType_Check(cls)) {
        PyErr_SetString(PyExc_TypeError, "a class");
        return NULL;
    }
    PyObject *out = PyDict_New();
    if (out == NULL) {
        return NULL;
    }
    for (PyMethodDef *def = defs; def->ml_name != NULL; def++) {
        PyObject *descr = PyDescr_NewMethod((PyTypeObject *)cls, def);
        if (descr == NULL || PyDict_SetItemString(out, def->ml_name, descr) < 0) {
            Py_XDECREF(descr);
            Py_DECREF(out);
            return NULL;
        }
        Py_DECREF(descr);
    }
    return out;
}

/* mp_lock_methods(cls) -> {name: method}: the C methods for a class of traced locks (their
 * base `cls`), to put on it while the level is not off. */
static PyObject *
mp_lock_methods(PyObject *module, PyObject *cls)
{
    return methods_for(cls, mp_lock_defs);
}

/* mp_item_methods(cls) -> {name: method}: __getitem__ and __setitem__ for a class of traced
 * Arrays (their base `cls`). */
static PyObject *
mp_item_methods(PyObject *module, PyObject *cls)
{
    return methods_for(cls, mp_item_defs);
}

/* mp_after_fork(): this process's pid, for the owner words. */
static PyObject *
mp_after_fork(PyObject *module, PyObject *noargs)
{
    my_pid = (long)getpid();
    Py_RETURN_NONE;
}

static PyMethodDef mp_module_methods[] = {
    {"mp_configure", mp_configure, METH_O,
     "Connect the multiprocessing hot paths to their Python side."},
    {"mp_lock_methods", mp_lock_methods, METH_O,
     "The C methods of a traced multiprocessing lock class."},
    {"mp_item_methods", mp_item_methods, METH_O,
     "The C __getitem__ and __setitem__ of a traced Array class."},
    {"mp_value_get", mp_value_get, METH_O, "obj.value of a traced Value, recorded."},
    {"mp_value_set", (PyCFunction)(void (*)(void))mp_value_set, METH_FASTCALL,
     "obj.value = value on a traced Value, recorded."},
    {"mp_after_fork", mp_after_fork, METH_NOARGS, NULL},
    {NULL},
};

int
ts_mplock_init(PyObject *module)
{
    if ((s_value = PyUnicode_InternFromString("value")) == NULL ||
        (s_ts_books = PyUnicode_InternFromString("_ts_books")) == NULL ||
        (s_ts_state = PyUnicode_InternFromString("_ts_state")) == NULL) {
        return -1;
    }
    if (PyType_Ready(&MpLockBooksType) < 0 || PyType_Ready(&MpValueBooksType) < 0) {
        return -1;
    }
    if (PyModule_AddObjectRef(module, "MpLockBooks", (PyObject *)&MpLockBooksType) < 0 ||
        PyModule_AddObjectRef(module, "MpValueBooks", (PyObject *)&MpValueBooksType) < 0) {
        return -1;
    }
    return PyModule_AddFunctions(module, mp_module_methods);
}
