/*
 * tracedsync._core._speedups: the uncontended hot path of TracedLock/TracedRLock in C.
 *
 * Optional. _locks.py installs these functions as the proxies' acquire/release/__enter__/
 * __exit__ when this module imports (and TRACEDSYNC_PURE_PYTHON is not set); otherwise the
 * pure-Python methods of the same name do exactly the same thing. Keep the two in step: the
 * test suite runs against both.
 *
 * What is done here is only the common case: the real lock's acquire(False) succeeding (an
 * uncontended acquire with the default arguments), a release our books agree with, and level
 * off. Everything else (contention, timeouts, argument errors, misuse, first event of a thread)
 * calls back into the Python functions that _locks.py hands to install().
 *
 * Concurrency: everything below runs with the GIL held. The books (owner, depth, hold start)
 * are written by the holder only: after the real acquire succeeded, before the real release,
 * exactly as in the Python version. The event tuple is appended with the deque's own append,
 * which is atomic under the GIL.
 *
 * State access: the proxy's `_self_state` slot and PrimState's slots are read by their offsets,
 * taken from the classes' member descriptors at install time (no attribute lookups).
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>
#include <frameobject.h>
#include <time.h>

/* Offsets of slots, found at install time. */
static Py_ssize_t off_state = -1;
enum {
    S_ACQUIRE, S_RELEASE, S_OWNER, S_DEPTH, S_T_HOLD, S_ACQUISITIONS, S_MAX_DEPTH, S_PRIM,
    S_REENTRANT, S_HOLD_NS, N_SLOTS
};
static const char *slot_names[N_SLOTS] = {
    "acquire", "release", "owner", "depth", "t_hold", "acquisitions", "max_depth", "prim",
    "reentrant", "hold_ns",
};
static Py_ssize_t off[N_SLOTS];

/* The runtime module's dict (level, emit, tls, now, buffer, limit, overflow, register_thread)
 * and the Python slow paths. */
static PyObject *rt_dict = NULL;
static PyObject *py_acquire_slow = NULL;   /* _acquire_slow(st, blocking, timeout, fdepth) */
static PyObject *py_release_unbooked = NULL; /* _release_unbooked(st, me) */
static PyObject *py_monotonic_ns = NULL;   /* time.monotonic_ns, to know when now() is real */
static PyObject *op_acquire = NULL, *op_release = NULL;
static PyObject *s_level, *s_emit, *s_tls, *s_now, *s_buffer, *s_limit, *s_overflow,
    *s_register_thread, *s_ident;
static PyObject *int_zero, *int_one, *int_minus_one;

#define SLOT(obj, i) (*(PyObject **)((char *)(obj) + off[i]))

static inline PyObject *
get_state(PyObject *self)
{
    PyObject *st = *(PyObject **)((char *)self + off_state);
    if (st == NULL) {
        PyErr_SetString(PyExc_AttributeError, "traced lock has no state (not initialised)");
    }
    return st;
}

static inline void
set_slot(PyObject *obj, int i, PyObject *value)  /* steals value */
{
    PyObject **p = (PyObject **)((char *)obj + off[i]);
    PyObject *old = *p;
    *p = value;
    Py_XDECREF(old);
}

static inline long
rt_level(void)
{
    PyObject *v = PyDict_GetItemWithError(rt_dict, s_level);  /* borrowed */
    if (v == NULL) {
        return -1;
    }
    return PyLong_AsLong(v);
}

/* Returns a new reference to the caller's ident (registering the thread the first time). */
static PyObject *
current_ident(void)
{
    PyObject *tls = PyDict_GetItemWithError(rt_dict, s_tls);
    if (tls == NULL) {
        if (!PyErr_Occurred()) PyErr_SetString(PyExc_RuntimeError, "tracedsync: no tls");
        return NULL;
    }
    PyObject *me = PyObject_GetAttr(tls, s_ident);
    if (me != NULL) {
        return me;
    }
    if (!PyErr_ExceptionMatches(PyExc_AttributeError)) {
        return NULL;
    }
    PyErr_Clear();
    PyObject *reg = PyDict_GetItemWithError(rt_dict, s_register_thread);
    if (reg == NULL) {
        if (!PyErr_Occurred()) PyErr_SetString(PyExc_RuntimeError, "tracedsync: no register");
        return NULL;
    }
    return PyObject_CallNoArgs(reg);
}

/* Returns a new reference to now() as an int. */
static PyObject *
now_ns(void)
{
    PyObject *now = PyDict_GetItemWithError(rt_dict, s_now);
    if (now == NULL) {
        if (!PyErr_Occurred()) PyErr_SetString(PyExc_RuntimeError, "tracedsync: no clock");
        return NULL;
    }
#if defined(__linux__) && defined(CLOCK_MONOTONIC)
    if (now == py_monotonic_ns) {
        struct timespec ts;
        if (clock_gettime(CLOCK_MONOTONIC, &ts) == 0) {
            return PyLong_FromLongLong((long long)ts.tv_sec * 1000000000LL + ts.tv_nsec);
        }
    }
#endif
    return PyObject_CallNoArgs(now);
}

static int
emit(PyObject *item)  /* steals item; 0 on success */
{
    if (item == NULL) {
        return -1;
    }
    /* The tuple holds only ints, strings, None, bools and a code object: it can be in no
     * reference cycle. Untracking it keeps the cyclic GC from walking every buffered event
     * (a buffer of 100k tracked tuples made collections a large part of the recording cost). */
    PyObject_GC_UnTrack(item);
    PyObject *fn = PyDict_GetItemWithError(rt_dict, s_emit);
    if (fn == NULL) {
        Py_DECREF(item);
        if (!PyErr_Occurred()) PyErr_SetString(PyExc_RuntimeError, "tracedsync: no emit");
        return -1;
    }
    PyObject *r = PyObject_CallOneArg(fn, item);
    Py_DECREF(item);
    if (r == NULL) {
        return -1;
    }
    Py_DECREF(r);
    return 0;
}

static int
check_overflow(void)
{
    PyObject *buf = PyDict_GetItemWithError(rt_dict, s_buffer);
    PyObject *limit = PyDict_GetItemWithError(rt_dict, s_limit);
    if (buf == NULL || limit == NULL) {
        return PyErr_Occurred() ? -1 : 0;
    }
    Py_ssize_t n = PyObject_Length(buf);
    if (n < 0) {
        return -1;
    }
    Py_ssize_t lim = PyLong_AsSsize_t(limit);
    if (lim == -1 && PyErr_Occurred()) {
        return -1;
    }
    if (n > lim) {
        PyObject *fn = PyDict_GetItemWithError(rt_dict, s_overflow);
        if (fn == NULL) {
            return PyErr_Occurred() ? -1 : 0;
        }
        PyObject *r = PyObject_CallNoArgs(fn);
        if (r == NULL) {
            return -1;
        }
        Py_DECREF(r);
    }
    return 0;
}

/* The uncontended, default-arguments acquire. `depth` = how many Python frames to go up from
 * the current one to reach the user's (1 = the direct caller). */
static PyObject *
fast_acquire(PyObject *self, int fdepth)
{
    PyObject *st = get_state(self);
    if (st == NULL) {
        return NULL;
    }
    long level = rt_level();
    if (level == -1 && PyErr_Occurred()) {
        return NULL;
    }
    PyObject *acq = SLOT(st, S_ACQUIRE);
    if (level == 0) {
        return PyObject_CallNoArgs(acq);
    }
    PyObject *got = PyObject_CallOneArg(acq, Py_False);
    if (got == NULL) {
        return NULL;
    }
    int ok = PyObject_IsTrue(got);
    Py_DECREF(got);
    if (ok < 0) {
        return NULL;
    }
    if (!ok) {
        /* Contended: the Python slow path blocks and records. Its frame is one more level. */
        PyObject *fd = PyLong_FromLong(fdepth);
        if (fd == NULL) {
            return NULL;
        }
        PyObject *args[4] = {st, Py_True, int_minus_one, fd};
        PyObject *r = PyObject_Vectorcall(py_acquire_slow, args, 4, NULL);
        Py_DECREF(fd);
        return r;
    }
    /* We hold the lock: update the books. On any error below the lock stays acquired, as an
     * exception raised after a successful acquire would leave it in Python too. */
    PyObject *me = current_ident();
    if (me == NULL) {
        return NULL;
    }
    PyObject *t = now_ns();
    if (t == NULL) {
        Py_DECREF(me);
        return NULL;
    }
    long depth;
    int same = PyObject_RichCompareBool(SLOT(st, S_OWNER), me, Py_EQ);
    if (same < 0) {
        goto error;
    }
    if (same) {
        depth = PyLong_AsLong(SLOT(st, S_DEPTH)) + 1;
        if (depth == 0 && PyErr_Occurred()) {
            goto error;
        }
    }
    else {
        Py_INCREF(me);
        set_slot(st, S_OWNER, me);
        Py_INCREF(t);
        set_slot(st, S_T_HOLD, t);
        depth = 1;
    }
    PyObject *depth_obj = PyLong_FromLong(depth);
    if (depth_obj == NULL) {
        goto error;
    }
    set_slot(st, S_DEPTH, depth_obj);
    {
        long long n = PyLong_AsLongLong(SLOT(st, S_ACQUISITIONS));
        if (n == -1 && PyErr_Occurred()) {
            goto error;
        }
        PyObject *n_obj = PyLong_FromLongLong(n + 1);
        if (n_obj == NULL) {
            goto error;
        }
        set_slot(st, S_ACQUISITIONS, n_obj);
        long maxd = PyLong_AsLong(SLOT(st, S_MAX_DEPTH));
        if (maxd == -1 && PyErr_Occurred()) {
            goto error;
        }
        if (depth > maxd) {
            Py_INCREF(depth_obj);
            set_slot(st, S_MAX_DEPTH, depth_obj);
        }
    }
    if (level >= 2) {
        PyFrameObject *f = PyEval_GetFrame();  /* borrowed */
        Py_XINCREF(f);
        for (int i = 1; i < fdepth && f != NULL; i++) {
            PyFrameObject *back = PyFrame_GetBack(f);  /* new */
            Py_DECREF(f);
            f = back;
        }
        PyObject *code = Py_None;
        int lineno = 0;
        if (f != NULL) {
            code = (PyObject *)PyFrame_GetCode(f);  /* new */
            /* The call's byte offset, encoded as -(lasti + 1): the flusher turns it into a line
             * (see _sites.py). PyFrame_GetLineNumber would scan the line table every time. */
#if PY_VERSION_HEX >= 0x030B0000
            lineno = -1 - PyFrame_GetLasti(f);
#else
            lineno = -1 - f->f_lasti * (int)sizeof(_Py_CODEUNIT);
#endif
            Py_DECREF(f);
        }
        else {
            Py_INCREF(code);
        }
        PyObject *ln = PyLong_FromLong(lineno);
        if (ln == NULL) {
            Py_DECREF(code);
            goto error;
        }
        Py_INCREF(depth_obj);
        PyObject *item = PyTuple_Pack(13, op_acquire, t, me, SLOT(st, S_PRIM), depth_obj,
                                      Py_True, Py_False, int_zero, Py_None, Py_True,
                                      int_minus_one, code, ln);
        Py_DECREF(depth_obj);
        Py_DECREF(code);
        Py_DECREF(ln);
        if (emit(item) < 0) {
            goto error;
        }
    }
    Py_DECREF(me);
    Py_DECREF(t);
    Py_RETURN_TRUE;
error:
    Py_DECREF(me);
    Py_DECREF(t);
    return NULL;
}

static PyObject *
fast_release(PyObject *self)
{
    PyObject *st = get_state(self);
    if (st == NULL) {
        return NULL;
    }
    long level = rt_level();
    if (level == -1 && PyErr_Occurred()) {
        return NULL;
    }
    PyObject *rel = SLOT(st, S_RELEASE);
    if (level == 0) {
        return PyObject_CallNoArgs(rel);
    }
    PyObject *me = current_ident();
    if (me == NULL) {
        return NULL;
    }
    long depth = PyLong_AsLong(SLOT(st, S_DEPTH));
    if (depth == -1 && PyErr_Occurred()) {
        Py_DECREF(me);
        return NULL;
    }
    int unbooked = (depth == 0);
    if (!unbooked && SLOT(st, S_REENTRANT) == Py_True) {
        int same = PyObject_RichCompareBool(SLOT(st, S_OWNER), me, Py_EQ);
        if (same < 0) {
            Py_DECREF(me);
            return NULL;
        }
        unbooked = !same;
    }
    if (unbooked) {
        PyObject *args[2] = {st, me};
        PyObject *r = PyObject_Vectorcall(py_release_unbooked, args, 2, NULL);
        Py_DECREF(me);
        return r;
    }
    depth -= 1;
    PyObject *t = now_ns();
    if (t == NULL) {
        Py_DECREF(me);
        return NULL;
    }
    PyObject *hold = Py_None;
    Py_INCREF(hold);
    PyObject *r;
    if (depth == 0) {
        long long t_ns = PyLong_AsLongLong(t);
        long long t0 = PyLong_AsLongLong(SLOT(st, S_T_HOLD));
        long long total = PyLong_AsLongLong(SLOT(st, S_HOLD_NS));
        if (PyErr_Occurred()) {
            goto error;
        }
        Py_DECREF(hold);
        hold = PyLong_FromLongLong(t_ns - t0);
        PyObject *total_obj = PyLong_FromLongLong(total + (t_ns - t0));
        if (hold == NULL || total_obj == NULL) {
            Py_XDECREF(total_obj);
            goto error;
        }
        set_slot(st, S_HOLD_NS, total_obj);
        PyObject *owner = SLOT(st, S_OWNER);
        Py_INCREF(owner);
        Py_INCREF(Py_None);
        set_slot(st, S_OWNER, Py_None);
        Py_INCREF(int_zero);
        set_slot(st, S_DEPTH, int_zero);
        r = PyObject_CallNoArgs(rel);
        if (r == NULL) {  /* restore the books: the real lock is still ours */
            set_slot(st, S_OWNER, owner);
            Py_INCREF(int_one);
            set_slot(st, S_DEPTH, int_one);
            goto error;
        }
        Py_DECREF(owner);
    }
    else {
        PyObject *d = PyLong_FromLong(depth);
        if (d == NULL) {
            goto error;
        }
        set_slot(st, S_DEPTH, d);
        r = PyObject_CallNoArgs(rel);
        if (r == NULL) {
            goto error;
        }
    }
    Py_DECREF(r);
    if (level >= 2) {
        PyObject *d = PyLong_FromLong(depth);
        if (d == NULL) {
            goto error;
        }
        PyObject *item = PyTuple_Pack(6, op_release, t, me, SLOT(st, S_PRIM), d, hold);
        Py_DECREF(d);
        if (emit(item) < 0 || check_overflow() < 0) {
            goto error;
        }
    }
    Py_DECREF(hold);
    Py_DECREF(me);
    Py_DECREF(t);
    Py_RETURN_NONE;
error:
    Py_XDECREF(hold);
    Py_DECREF(me);
    Py_DECREF(t);
    return NULL;
}

/* --- the methods installed on the proxy class -------------------------------------------- */

static PyObject *py_methods = NULL;  /* dict: name -> the pure-Python function, for fallbacks */

static PyObject *
call_python(const char *name, PyObject *self, PyObject *const *args, Py_ssize_t nargs,
            PyObject *kwnames)
{
    PyObject *fn = PyDict_GetItemString(py_methods, name);  /* borrowed */
    if (fn == NULL) {
        PyErr_Format(PyExc_RuntimeError, "tracedsync: no Python fallback for %s", name);
        return NULL;
    }
    Py_ssize_t n = nargs + (kwnames ? PyTuple_GET_SIZE(kwnames) : 0);
    PyObject *small[8];
    PyObject **stack = small;
    if (n + 1 > 8) {
        stack = PyMem_Malloc((n + 1) * sizeof(PyObject *));
        if (stack == NULL) {
            return PyErr_NoMemory();
        }
    }
    stack[0] = self;
    for (Py_ssize_t i = 0; i < n; i++) {
        stack[i + 1] = args[i];
    }
    PyObject *r = PyObject_Vectorcall(fn, stack, nargs + 1, kwnames);
    if (stack != small) {
        PyMem_Free(stack);
    }
    return r;
}

static PyObject *
m_acquire(PyObject *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    if (nargs == 0 && kwnames == NULL) {
        return fast_acquire(self, 1);
    }
    return call_python("acquire", self, args, nargs, kwnames);
}

static PyObject *
m_enter(PyObject *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    if (nargs == 0 && kwnames == NULL) {
        return fast_acquire(self, 1);
    }
    if (nargs == 1 && kwnames == NULL && PyLong_CheckExact(args[0])) {
        long fdepth = PyLong_AsLong(args[0]);
        if (fdepth >= 1 && fdepth < 64) {
            return fast_acquire(self, (int)fdepth);
        }
    }
    return call_python("__enter__", self, args, nargs, kwnames);
}

static PyObject *
m_release(PyObject *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    if (nargs == 0 && kwnames == NULL) {
        return fast_release(self);
    }
    return call_python("release", self, args, nargs, kwnames);
}

static PyObject *
m_exit(PyObject *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    if (kwnames == NULL) {
        return fast_release(self);
    }
    return call_python("__exit__", self, args, nargs, kwnames);
}

static PyMethodDef proxy_methods[] = {
    {"acquire", (PyCFunction)(void (*)(void))m_acquire, METH_FASTCALL | METH_KEYWORDS,
     "Acquire the lock, exactly as threading's does, and record it."},
    {"__enter__", (PyCFunction)(void (*)(void))m_enter, METH_FASTCALL | METH_KEYWORDS, NULL},
    {"release", (PyCFunction)(void (*)(void))m_release, METH_FASTCALL | METH_KEYWORDS,
     "Release the lock, exactly as threading's does, and record it."},
    {"__exit__", (PyCFunction)(void (*)(void))m_exit, METH_FASTCALL | METH_KEYWORDS, NULL},
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

/* install(proxy_cls, state_cls, runtime_module, acquire_slow, release_unbooked, op_acquire,
 *         op_release) -> None */
static PyObject *
install(PyObject *module, PyObject *args)
{
    PyObject *proxy_cls, *state_cls, *rt_module, *slow, *unbooked, *opa, *opr;
    if (!PyArg_ParseTuple(args, "O!O!OOOOO:install", &PyType_Type, &proxy_cls, &PyType_Type,
                          &state_cls, &rt_module, &slow, &unbooked, &opa, &opr)) {
        return NULL;
    }
    off_state = member_offset(proxy_cls, "_self_state");
    if (off_state < 0) {
        return NULL;
    }
    for (int i = 0; i < N_SLOTS; i++) {
        off[i] = member_offset(state_cls, slot_names[i]);
        if (off[i] < 0) {
            return NULL;
        }
    }
    PyObject *d = PyModule_GetDict(rt_module);  /* borrowed */
    if (d == NULL) {
        return NULL;
    }
    Py_INCREF(d);
    Py_XSETREF(rt_dict, d);
    Py_INCREF(slow);
    Py_XSETREF(py_acquire_slow, slow);
    Py_INCREF(unbooked);
    Py_XSETREF(py_release_unbooked, unbooked);
    Py_INCREF(opa);
    Py_XSETREF(op_acquire, opa);
    Py_INCREF(opr);
    Py_XSETREF(op_release, opr);

    PyObject *fallbacks = PyDict_New();
    if (fallbacks == NULL) {
        return NULL;
    }
    for (PyMethodDef *def = proxy_methods; def->ml_name != NULL; def++) {
        PyObject *pyfn = PyObject_GetAttrString(proxy_cls, def->ml_name);
        if (pyfn == NULL || PyDict_SetItemString(fallbacks, def->ml_name, pyfn) < 0) {
            Py_XDECREF(pyfn);
            Py_DECREF(fallbacks);
            return NULL;
        }
        Py_DECREF(pyfn);
    }
    Py_XSETREF(py_methods, fallbacks);
    for (PyMethodDef *def = proxy_methods; def->ml_name != NULL; def++) {
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
    Py_RETURN_NONE;
}

static PyMethodDef module_methods[] = {
    {"install", install, METH_VARARGS,
     "Install the C hot path on a traced lock proxy class (see _locks.py)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef moduledef = {
    PyModuleDef_HEAD_INIT, "tracedsync._core._speedups",
    "The uncontended hot path of traced locks, in C (optional).", -1, module_methods,
};

PyMODINIT_FUNC
PyInit__speedups(void)
{
    PyObject *m = PyModule_Create(&moduledef);
    if (m == NULL) {
        return NULL;
    }
#define INTERN(var, text) if ((var = PyUnicode_InternFromString(text)) == NULL) goto fail;
    INTERN(s_level, "level");
    INTERN(s_emit, "emit");
    INTERN(s_tls, "tls");
    INTERN(s_now, "now");
    INTERN(s_buffer, "buffer");
    INTERN(s_limit, "limit");
    INTERN(s_overflow, "overflow");
    INTERN(s_register_thread, "register_thread");
    INTERN(s_ident, "ident");
#undef INTERN
    int_zero = PyLong_FromLong(0);
    int_one = PyLong_FromLong(1);
    int_minus_one = PyLong_FromLong(-1);
    if (int_zero == NULL || int_one == NULL || int_minus_one == NULL) {
        goto fail;
    }
    {
        PyObject *time_mod = PyImport_ImportModule("time");
        if (time_mod == NULL) {
            goto fail;
        }
        py_monotonic_ns = PyObject_GetAttrString(time_mod, "monotonic_ns");
        Py_DECREF(time_mod);
        if (py_monotonic_ns == NULL) {
            goto fail;
        }
    }
    return m;
fail:
    Py_DECREF(m);
    return NULL;
}
