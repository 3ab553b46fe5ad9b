/*
 * A traced Condition's books in C, and its `notify` in C.
 *
 * Design note (read tracedsync/_threading/condition.py's first). `notify()` runs with the
 * condition's lock held, once per item in a producer/consumer program: a Python wrapper
 * around threading's notify lengthened every critical section by about 200 ns, which, with
 * eight threads on one lock, made them contend and wait far more often (docs/benchmarks.md,
 * "Workloads"). So:
 *
 * - `CondBooks` keeps the condition's counters that notify updates (`notifies`, `unheard`) as
 *   C integers, with the ids a record needs and references to the real condition's waiter
 *   deque and to the mirror list of waiting idents (both mutated in place, never rebound).
 *   `ConditionState.notifies`/`unheard` read and write them (the pure-Python twin has a
 *   Python class with the same attributes).
 * - `NotifyMethod` is a method descriptor (like a function defined in a class: the
 *   interpreter calls it with the instance, no bound method made) whose common case,
 *   `cond.notify()` or `cond.notify(1)` at a level other than off, calls threading's own
 *   `notify` (so behaviour is exactly the original's), then does the books and the record
 *   the Python `_notify` would do, in C: no Python object is created. Every other call
 *   (another n, keywords) goes to that Python function, `slow`. A RuntimeError from
 *   threading's notify (not owned) is recorded as a misuse by the Python `on_error` hook and
 *   raised unchanged.
 *
 * Everything here runs with the GIL held; threading's notify, which may run Python code (a
 * waiter lock's release), is called before the books are touched, as the Python version does.
 */
#include "native.h"
#include <structmember.h>

typedef struct {
    PyObject_HEAD
    unsigned long long notifies, unheard;
    uint32_t prim_pid, prim_n;
    PyObject *deque;    /* the real condition's `_waiters` */
    PyObject *mirror;   /* list of the waiting idents, oldest first (ConditionState.waiters) */
} CondBooks;

static PyTypeObject CondBooksType;
static PyTypeObject NotifyMethodType;
static PyObject *s_ts_books;

static PyObject *
books_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    PyObject *deque, *mirror;
    unsigned int pid, n;
    static char *kwlist[] = {"waiters", "mirror", "prim_pid", "prim_n", NULL};
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OO!II:CondBooks", kwlist, &deque,
                                     &PyList_Type, &mirror, &pid, &n)) {
        return NULL;
    }
    CondBooks *self = (CondBooks *)type->tp_alloc(type, 0);
    if (self == NULL) {
        return NULL;
    }
    self->deque = Py_NewRef(deque);
    self->mirror = Py_NewRef(mirror);
    self->prim_pid = pid;
    self->prim_n = n;
    return (PyObject *)self;
}

static int
books_traverse(CondBooks *self, visitproc visit, void *arg)
{
    Py_VISIT(self->deque);
    Py_VISIT(self->mirror);
    return 0;
}

static int
books_clear(CondBooks *self)
{
    Py_CLEAR(self->deque);
    Py_CLEAR(self->mirror);
    return 0;
}

static void
books_dealloc(CondBooks *self)
{
    PyObject_GC_UnTrack(self);
    books_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyMemberDef books_members[] = {
    {"notifies", T_ULONGLONG, offsetof(CondBooks, notifies), 0, "notify/notify_all calls"},
    {"unheard", T_ULONGLONG, offsetof(CondBooks, unheard), 0, "notifies that found no waiter"},
    {"prim_pid", T_UINT, offsetof(CondBooks, prim_pid), READONLY, NULL},
    {"prim_n", T_UINT, offsetof(CondBooks, prim_n), READONLY, NULL},
    {NULL, 0, 0, 0, NULL},
};

static PyTypeObject CondBooksType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "tracedsync._core._native.CondBooks",
    .tp_doc = "CondBooks(waiters, mirror, prim_pid, prim_n): a traced Condition's counters.",
    .tp_basicsize = sizeof(CondBooks),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_new = books_new,
    .tp_traverse = (traverseproc)books_traverse,
    .tp_clear = (inquiry)books_clear,
    .tp_dealloc = (destructor)books_dealloc,
    .tp_members = books_members,
};

/* -- notify ---------------------------------------------------------------------------------- */
typedef struct {
    PyObject_HEAD
    PyObject *raw;       /* threading.Condition.notify */
    PyObject *slow;      /* the Python `_notify(self, n=1)`: every other case */
    PyObject *on_error;  /* on_error(cond, exc): record a misuse (must not raise) */
    vectorcallfunc vectorcall;
} NotifyMethod;

static PyObject *
notify_call(PyObject *callable, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    NotifyMethod *m = (NotifyMethod *)callable;
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    int level = ts_level;
    if (level == LEVEL_OFF || kwnames != NULL || nargs < 1 || nargs > 2 ||
        (nargs == 2 && !(PyLong_CheckExact(args[1]) && PyLong_AsLong(args[1]) == 1))) {
        PyErr_Clear();  /* (an n that does not fit a long: the slow path says what it is) */
        return PyObject_Vectorcall(m->slow, args, nargsf, kwnames);
    }
    PyObject *cond = args[0];
    PyObject *obj = PyObject_GetAttr(cond, s_ts_books);
    if (obj == NULL || !PyObject_TypeCheck(obj, &CondBooksType)) {
        Py_XDECREF(obj);
        PyErr_Clear();
        return PyObject_Vectorcall(m->slow, args, nargsf, kwnames);
    }
    CondBooks *b = (CondBooks *)obj;
    Py_ssize_t present = PyObject_Length(b->deque);
    if (present < 0) {
        PyErr_Clear();
        present = 0;
    }
    PyObject *r = PyObject_Vectorcall(m->raw, args, nargsf, NULL);
    if (r == NULL) {
        PyObject *exc = PyErr_GetRaisedException();
        if (PyErr_GivenExceptionMatches(exc, PyExc_RuntimeError)) {
            PyObject *h = PyObject_CallFunctionObjArgs(m->on_error, cond, exc, NULL);
            Py_XDECREF(h);
            PyErr_Clear();
        }
        PyErr_SetRaisedException(exc);
        Py_DECREF(obj);
        return NULL;
    }
    Py_DECREF(r);
    b->notifies++;
    uint64_t w[4] = {1, (uint64_t)present, 0, 0};
    if (present == 0) {
        b->unheard++;
        ts_kind_rec(K_NOTIFY, b->prim_pid, b->prim_n, 0, w, NULL, 0);
    }
    else if (PyList_GET_SIZE(b->mirror) > 0) {
        /* the oldest waiter was woken (see condition.py on the mirror) */
        unsigned long long woken = PyLong_AsUnsignedLongLong(PyList_GET_ITEM(b->mirror, 0));
        if (woken == (unsigned long long)-1 && PyErr_Occurred()) {
            PyErr_Clear();
            woken = 0;
        }
        if (PyList_SetSlice(b->mirror, 0, 1, NULL) < 0) {
            PyErr_Clear();
        }
        if (level == LEVEL_FULL) {
            w[2] = 1;
            ts_kind_rec(K_NOTIFY, b->prim_pid, b->prim_n, 0, w, &woken, 1);
        }
    }
    else if (level == LEVEL_FULL) {
        ts_kind_rec(K_NOTIFY, b->prim_pid, b->prim_n, 0, w, NULL, 0);
    }
    Py_DECREF(obj);
    Py_RETURN_NONE;
}

static PyObject *
notify_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    PyObject *raw, *slow, *on_error;
    static char *kwlist[] = {"raw", "slow", "on_error", NULL};
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OOO:NotifyMethod", kwlist, &raw, &slow,
                                     &on_error)) {
        return NULL;
    }
    NotifyMethod *self = (NotifyMethod *)type->tp_alloc(type, 0);
    if (self == NULL) {
        return NULL;
    }
    self->raw = Py_NewRef(raw);
    self->slow = Py_NewRef(slow);
    self->on_error = Py_NewRef(on_error);
    self->vectorcall = notify_call;
    return (PyObject *)self;
}

static int
notify_traverse(NotifyMethod *self, visitproc visit, void *arg)
{
    Py_VISIT(self->raw);
    Py_VISIT(self->slow);
    Py_VISIT(self->on_error);
    return 0;
}

static int
notify_clear(NotifyMethod *self)
{
    Py_CLEAR(self->raw);
    Py_CLEAR(self->slow);
    Py_CLEAR(self->on_error);
    return 0;
}

static void
notify_dealloc(NotifyMethod *self)
{
    PyObject_GC_UnTrack(self);
    notify_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* Bound to an instance, as a function is (`f = cond.notify`). */
static PyObject *
notify_get(PyObject *self, PyObject *obj, PyObject *type)
{
    if (obj == NULL || obj == Py_None) {
        return Py_NewRef(self);
    }
    return PyMethod_New(self, obj);
}

/* __name__, __qualname__, __doc__, __module__, __wrapped__: the Python function's, so that
 * help(), inspect.signature() and repr() describe what the method does. */
static PyObject *
notify_getattro(PyObject *self, PyObject *name)
{
    if (PyUnicode_CompareWithASCIIString(name, "__doc__") == 0) {
        return PyObject_GetAttr(((NotifyMethod *)self)->slow, name);
    }
    PyObject *r = PyObject_GenericGetAttr(self, name);
    if (r != NULL || !PyErr_ExceptionMatches(PyExc_AttributeError)) {
        return r;
    }
    PyErr_Clear();
    if (PyUnicode_CompareWithASCIIString(name, "__wrapped__") == 0) {
        return Py_NewRef(((NotifyMethod *)self)->slow);
    }
    return PyObject_GetAttr(((NotifyMethod *)self)->slow, name);
}

static PyObject *
notify_repr(NotifyMethod *self)
{
    return PyUnicode_FromFormat("<native method %R>", self->slow);
}

static PyTypeObject NotifyMethodType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "tracedsync._core._native.NotifyMethod",
    .tp_doc = "NotifyMethod(raw, slow, on_error): a traced Condition's notify (cond.c).",
    .tp_basicsize = sizeof(NotifyMethod),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_METHOD_DESCRIPTOR |
                Py_TPFLAGS_HAVE_VECTORCALL,
    .tp_vectorcall_offset = offsetof(NotifyMethod, vectorcall),
    .tp_call = PyVectorcall_Call,
    .tp_descr_get = notify_get,
    .tp_getattro = notify_getattro,
    .tp_repr = (reprfunc)notify_repr,
    .tp_new = notify_new,
    .tp_traverse = (traverseproc)notify_traverse,
    .tp_clear = (inquiry)notify_clear,
    .tp_dealloc = (destructor)notify_dealloc,
};

int
ts_cond_init(PyObject *module)
{
    s_ts_books = PyUnicode_InternFromString("_ts_books");
    if (s_ts_books == NULL || PyType_Ready(&CondBooksType) < 0 ||
        PyType_Ready(&NotifyMethodType) < 0) {
        return -1;
    }
    if (PyModule_AddObjectRef(module, "CondBooks", (PyObject *)&CondBooksType) < 0 ||
        PyModule_AddObjectRef(module, "NotifyMethod", (PyObject *)&NotifyMethodType) < 0) {
        return -1;
    }
    return 0;
}
