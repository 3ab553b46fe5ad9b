/*
 * The uncontended hot path of the traced multiprocessing locks, in C.
 *
 * Design note. A traced multiprocessing Lock/RLock (tracedsync/_multiprocessing/locks.py) is a
 * wrapt proxy in front of multiprocessing's own lock; its books are a Python `LockState`, and
 * its holder is also written to a small record in shared memory (owner.py) so that other
 * processes can name it. Every case but the common one stays in Python there (contention,
 * timeouts and other arguments, misuse, the Condition protocol); this file puts the common
 * one, an acquire with the default arguments that gets the lock at once and a release the books
 * agree with, on the proxy class as C methods (`install_mp`): the real lock's `acquire(False)`
 * and `release()` are called as the Python path does, the books' slots are read and written by
 * their offsets (taken from the class's member descriptors), the owner record through its
 * address (`LockState.ext_addr`), and the event is a native record (`K_MP_ACQUIRE`,
 * `K_RELEASE`). Concurrency is the Python path's: the books are written by the holder only,
 * after the real acquire and before the real release, with the GIL held.
 */
#include "native.h"
#include <stddef.h>
#include <structmember.h>
#include <unistd.h>

enum {
    M_ACQUIRE, M_RELEASE, M_OWNER, M_DEPTH, M_T_HOLD, M_ACQUISITIONS, M_MAX_DEPTH, M_REENTRANT,
    M_HOLD_NS, M_PRIM_PID, M_PRIM_N, M_EXT_ADDR, N_MSLOTS
};
static const char *mslot_names[N_MSLOTS] = {
    "acquire", "release", "owner", "depth", "t_hold", "acquisitions", "max_depth",
    "reentrant", "hold_ns", "prim_pid", "prim_n", "ext_addr",
};
static Py_ssize_t moff[N_MSLOTS];
static Py_ssize_t m_state_off = -1;
static PyObject *py_acquire_slow = NULL;  /* locks.acquire_slow(st, block, timeout, fdepth) */
static PyObject *py_release = NULL;       /* locks._release(st) */
static PyObject *py_methods = NULL;       /* name -> the Python method, for other arguments */
static int kind_acquire = -1, kind_release = -1;
static long my_pid = 0;

#define MSLOT(obj, i) (*(PyObject **)((char *)(obj) + moff[i]))

static inline void
mset(PyObject *obj, int i, PyObject *v)  /* steals v */
{
    PyObject **p = (PyObject **)((char *)obj + moff[i]);
    PyObject *old = *p;
    *p = v;
    Py_XDECREF(old);
}

static inline long long
mget_ll(PyObject *obj, int i)
{
    PyObject *v = MSLOT(obj, i);
    return v == NULL || v == Py_None ? 0 : PyLong_AsLongLong(v);
}

/* Write a declared-kind record from C (kinds.c's layout; no idents). */
static void
rec_kind(int kind, PyObject *st, uint8_t bits, uint64_t w0, uint64_t w1)
{
    ts_rec *r = ts_rec_getn(2);
    if (r == NULL) {
        return;
    }
    r->t = ts_ticks();
    r->prim_pid = (uint32_t)mget_ll(st, M_PRIM_PID);
    r->prim_n = (uint32_t)mget_ll(st, M_PRIM_N);
    r->site = ts_site_of_caller();
    r->op = REC_KIND;
    r->flags = bits;
    r->depth = (uint16_t)kind;
    r->val = w0;
    ts_ext *x = (ts_ext *)(r + 1);
    x->w[0] = w1;
    x->w[1] = x->w[2] = x->w[3] = 0;
    ts_rec_commitn(2);
}

static inline int64_t *
owner_record(PyObject *st)
{
    long long addr = mget_ll(st, M_EXT_ADDR);
    return addr ? (int64_t *)(intptr_t)addr : NULL;
}

static PyObject *
mp_state(PyObject *self)
{
    PyObject *st = *(PyObject **)((char *)self + m_state_off);
    if (st == NULL) {
        PyErr_SetString(PyExc_AttributeError, "traced lock has no state");
    }
    return st;
}

/* The uncontended acquire; NULL with no error: take the Python path. */
static PyObject *
mp_acquire_fast(PyObject *self)
{
    PyObject *st = mp_state(self);
    if (st == NULL) {
        return NULL;
    }
    int level = ts_level;
    PyObject *acq = MSLOT(st, M_ACQUIRE);
    if (!level) {
        return PyObject_CallNoArgs(acq);
    }
    PyObject *got = PyObject_CallOneArg(acq, Py_False);
    if (got == NULL) {
        return NULL;
    }
    int ok = PyObject_IsTrue(got);
    Py_DECREF(got);
    if (ok <= 0) {
        if (ok < 0) {
            return NULL;
        }
        PyObject *fd = PyLong_FromLong(0);  /* 0: acquire_slow finds the user's frame itself */
        PyObject *r = fd ? PyObject_CallFunctionObjArgs(py_acquire_slow, st, Py_True, Py_None,
                                                          fd, NULL) : NULL;
        Py_XDECREF(fd);
        return r;
    }
    /* The real lock is ours: the owner record first, then the books. */
    ts_tbuf *b = ts_tls_buf;
    if (b == NULL) {
        if (ts_thread_ident_slow() == 0) {
            return NULL;
        }
        b = ts_tls_buf;
    }
    int64_t *rec = owner_record(st);
    if (rec != NULL) {
        rec[0] = ((int64_t)my_pid << 32) | ((int64_t)b->native_id & 0xFFFFFFFF);
    }
    unsigned long me = b->ident;
    PyObject *owner = MSLOT(st, M_OWNER);
    long long depth;
    int mine = owner != NULL && owner != Py_None && PyLong_AsUnsignedLong(owner) == me;
    if (MSLOT(st, M_REENTRANT) == Py_True && mine) {
        depth = mget_ll(st, M_DEPTH) + 1;
    }
    else {
        mset(st, M_OWNER, PyLong_FromUnsignedLong(me));
        mset(st, M_T_HOLD, PyLong_FromLongLong(ts_to_ns(&ts_current_calib, ts_ticks())));
        depth = 1;
    }
    if (rec != NULL) {
        rec[1] = depth;
    }
    mset(st, M_DEPTH, PyLong_FromLongLong(depth));
    mset(st, M_ACQUISITIONS, PyLong_FromLongLong(mget_ll(st, M_ACQUISITIONS) + 1));
    if (depth > mget_ll(st, M_MAX_DEPTH)) {
        mset(st, M_MAX_DEPTH, PyLong_FromLongLong(depth));
    }
    if (PyErr_Occurred()) {
        return NULL;
    }
    if (level == LEVEL_FULL) {
        rec_kind(kind_acquire, st, 0b101, (uint64_t)depth, 0);  /* ok, blocking */
    }
    Py_RETURN_TRUE;
}

/* A release the books agree with; otherwise the Python path (misuse, unbooked). */
static PyObject *
mp_release_fast(PyObject *self)
{
    PyObject *st = mp_state(self);
    if (st == NULL) {
        return NULL;
    }
    int level = ts_level;
    ts_tbuf *b = ts_tls_buf;
    long long depth = mget_ll(st, M_DEPTH);
    PyObject *owner = MSLOT(st, M_OWNER);
    int mine = b != NULL && owner != NULL && owner != Py_None &&
               PyLong_AsUnsignedLong(owner) == b->ident;
    if (!level || depth <= 0 || !mine) {
        return PyObject_CallOneArg(py_release, st);
    }
    int64_t *rec = owner_record(st);
    depth -= 1;
    long long hold = 0;
    if (depth == 0) {
        long long t = ts_to_ns(&ts_current_calib, ts_ticks());
        hold = t - mget_ll(st, M_T_HOLD);
        int64_t word = rec ? rec[0] : 0;
        PyObject *saved_owner = Py_NewRef(owner);
        mset(st, M_OWNER, Py_NewRef(Py_None));
        mset(st, M_DEPTH, PyLong_FromLong(0));
        if (rec != NULL) {
            rec[1] = 0;
            rec[0] = 0;  /* last before the real release (see owner.py) */
        }
        PyObject *r = PyObject_CallNoArgs(MSLOT(st, M_RELEASE));
        if (r == NULL) {
            /* as the Python path: the books were stale, or the release failed */
            if (rec != NULL) {
                rec[0] = word;
                rec[1] = 1;
            }
            mset(st, M_OWNER, saved_owner);
            mset(st, M_DEPTH, PyLong_FromLong(1));
            return NULL;
        }
        Py_DECREF(r);
        Py_DECREF(saved_owner);
        mset(st, M_HOLD_NS, PyLong_FromLongLong(mget_ll(st, M_HOLD_NS) + hold));
    }
    else {
        mset(st, M_DEPTH, PyLong_FromLongLong(depth));
        if (rec != NULL) {
            rec[1] = depth;
        }
        PyObject *r = PyObject_CallNoArgs(MSLOT(st, M_RELEASE));
        if (r == NULL) {
            return NULL;
        }
        Py_DECREF(r);
    }
    if (level == LEVEL_FULL) {
        if (depth == 0) {
            rec_kind(kind_release, st, 1, 0, (uint64_t)hold);
        }
        else {
            rec_kind(kind_release, st, 0, (uint64_t)depth, 0);
        }
    }
    Py_RETURN_NONE;
}

static PyObject *
call_py(const char *name, PyObject *self, PyObject *const *args, Py_ssize_t nargs,
        PyObject *kwnames)
{
    PyObject *fn = PyDict_GetItemString(py_methods, name);
    if (fn == NULL) {
        PyErr_Format(PyExc_RuntimeError, "tracedsync: no Python %s", name);
        return NULL;
    }
    PyObject *small[8];
    Py_ssize_t n = nargs + (kwnames ? PyTuple_GET_SIZE(kwnames) : 0);
    if (n + 1 > 8) {
        PyObject *t = PyTuple_New(0);
        Py_XDECREF(t);
        PyErr_SetString(PyExc_TypeError, "too many arguments");
        return NULL;
    }
    small[0] = self;
    for (Py_ssize_t i = 0; i < n; i++) {
        small[i + 1] = args[i];
    }
    return PyObject_Vectorcall(fn, small, nargs + 1, kwnames);
}

static PyObject *
m_acquire(PyObject *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    if (nargs == 0 && kwnames == NULL) {
        return mp_acquire_fast(self);
    }
    return call_py("acquire", self, args, nargs, kwnames);
}

static PyObject *
m_enter(PyObject *self, PyObject *Py_UNUSED(ignored))
{
    return mp_acquire_fast(self);
}

static PyObject *
m_release(PyObject *self, PyObject *Py_UNUSED(ignored))
{
    return mp_release_fast(self);
}

static PyObject *
m_exit(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    return mp_release_fast(self);
}

static PyMethodDef mp_methods[] = {
    {"acquire", (PyCFunction)(void (*)(void))m_acquire, METH_FASTCALL | METH_KEYWORDS,
     "Acquire the lock, exactly as multiprocessing's does, and record it."},
    {"__enter__", (PyCFunction)m_enter, METH_NOARGS, NULL},
    {"release", (PyCFunction)m_release, METH_NOARGS,
     "Release the lock, exactly as multiprocessing's does, and record it."},
    {"__exit__", (PyCFunction)(void (*)(void))m_exit, METH_FASTCALL, NULL},
    {NULL, NULL, 0, NULL},
};

static Py_ssize_t
member_offset(PyObject *cls, const char *name)
{
    PyObject *d = PyObject_GetAttrString(cls, name);
    if (d == NULL) {
        return -1;
    }
    if (!PyObject_TypeCheck(d, &PyMemberDescr_Type)) {
        PyErr_Format(PyExc_TypeError, "%s is not a slot", name);
        Py_DECREF(d);
        return -1;
    }
    Py_ssize_t o = ((PyMemberDescrObject *)d)->d_member->offset;
    Py_DECREF(d);
    return o;
}

/* install_mp(proxy_cls, state_cls, acquire_slow, release, kind_acquire, kind_release):
 * put the C methods on the proxy class (the Python ones stay for other arguments). */
static PyObject *
install_mp(PyObject *module, PyObject *args)
{
    PyObject *proxy_cls, *state_cls, *slow, *rel;
    if (!PyArg_ParseTuple(args, "O!O!OOii:install_mp", &PyType_Type, &proxy_cls, &PyType_Type,
                          &state_cls, &slow, &rel, &kind_acquire, &kind_release)) {
        return NULL;
    }
    m_state_off = member_offset(proxy_cls, "_self_state");
    if (m_state_off < 0) {
        return NULL;
    }
    for (int i = 0; i < N_MSLOTS; i++) {
        moff[i] = member_offset(state_cls, mslot_names[i]);
        if (moff[i] < 0) {
            return NULL;
        }
    }
    Py_INCREF(slow);
    Py_XSETREF(py_acquire_slow, slow);
    Py_INCREF(rel);
    Py_XSETREF(py_release, rel);
    PyObject *fallbacks = PyDict_New();
    if (fallbacks == NULL) {
        return NULL;
    }
    PyObject *acq = PyObject_GetAttrString(proxy_cls, "acquire");
    if (acq == NULL || PyDict_SetItemString(fallbacks, "acquire", acq) < 0) {
        Py_XDECREF(acq);
        Py_DECREF(fallbacks);
        return NULL;
    }
    Py_DECREF(acq);
    Py_XSETREF(py_methods, fallbacks);
    for (PyMethodDef *def = mp_methods; def->ml_name != NULL; def++) {
        PyObject *descr = PyDescr_NewMethod((PyTypeObject *)proxy_cls, def);
        if (descr == NULL) {
            return NULL;
        }
        int rc = PyObject_SetAttrString(proxy_cls, def->ml_name, descr);
        Py_DECREF(descr);
        if (rc < 0) {
            return NULL;
        }
    }
    my_pid = (long)getpid();
    Py_RETURN_NONE;
}

/* mp_after_fork(): this process's pid, for the owner words. */
static PyObject *
mp_after_fork(PyObject *module, PyObject *noargs)
{
    my_pid = (long)getpid();
    Py_RETURN_NONE;
}

static PyMethodDef mp_module_methods[] = {
    {"install_mp", install_mp, METH_VARARGS, "Put the C hot path on a multiprocessing lock class."},
    {"mp_after_fork", mp_after_fork, METH_NOARGS, NULL},
    {NULL},
};

int
ts_mplock_init(PyObject *module)
{
    return PyModule_AddFunctions(module, mp_module_methods);
}
