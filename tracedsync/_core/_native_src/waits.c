/*
 * Native waits: which thread is blocked, right now, on which native Lock/RLock.
 *
 * Design note (read the one at the top of tracedsync/_core/waits.py first).
 *
 * A contended acquire (or a condition wait's re-acquire) of a native lock registers itself here,
 * in C, instead of in the Python wait-for table: a `ts_wait` on the waiting thread's own stack,
 * linked into one list with the GIL held just before the thread blocks with the GIL released,
 * and unlinked with the GIL held as soon as the blocking call returns. So the wait blocks
 * untimed from its start and creates no Python object, where it used to wait 50 µs with a
 * timer and then take the GIL back to register in Python (under contention, that GIL request
 * forced a switch away from whichever thread ran, often the lock's holder: see
 * docs/benchmarks.md, "Workloads").
 *
 * The check a registering thread owes (does my wait close a cycle?) is first a walk in C
 * (lock.c, `native_walk`): the lock's owner → the wait that owner has linked here → that
 * lock's owner → ... It ends at a running thread (no cycle can close: link and block), or it
 * hands over to Python: the walk came back to this thread (a cycle, or a plain Lock waited for
 * by its holder), reached a thread registered in the Python table (a condition, semaphore,
 * Event, Barrier or multiprocessing wait: there the deadlock and nested-monitor rules apply),
 * or went on too long. Then the acquire registers in Python exactly as before. The walk and
 * the link run with the GIL held and no Python code between them, so of two threads closing a
 * cycle the later one sees the earlier one: the rule waits.py states for its registrations
 * holds across both kinds.
 *
 * A signal handler that interrupts a wait runs with the wait still linked (the thread goes on
 * waiting after it); if the handler itself blocks on a native lock, its wait is linked in front
 * and is the thread's wait until it ends (`ts_wait_find` finds the latest; `sync_waits` makes a
 * `Wait` only of a thread's latest).
 *
 * Python readers (the deadlock walk, the watchdog, snapshots, the nested-monitor check) see
 * these waits as `waits.Wait` objects: `sync_waits()` makes one for each linked wait that has
 * none yet (`waits._native_wait`), keeps it in the slot (so every reader gets the same object,
 * which the deadlock walk's confirming pass relies on, and its flags last as long as the wait)
 * and enters it in `waits.WAITS`. The waiting thread, unlinking a wait that was so made, calls
 * `waits.forget` (which removes it, and records `deadlock_end` if a cycle was reported through
 * it). Making a `Wait` runs Python code, during which the waiter may wake and unlink (its slot
 * is on its stack: gone), so `sync_waits` first copies what it needs, and finds the slot again
 * by its sequence number before it stores anything.
 */
#include "native.h"

static ts_wait *head = NULL;
static Py_ssize_t n_linked = 0;
static uint64_t last_seq = 0;
static PyObject *waits_dict = NULL;  /* waits.WAITS (never rebound; cleared at fork) */
static PyObject *s_forget, *s_native_wait, *s_WAITS;

void
ts_wait_link(ts_wait *w)
{
    w->seq = ++last_seq;
    w->wait = NULL;
    w->prev = NULL;
    w->next = head;
    if (head != NULL) {
        head->prev = w;
    }
    head = w;
    n_linked++;
}

ts_wait *
ts_wait_find(unsigned long ident)
{
    for (ts_wait *w = head; w != NULL; w = w->next) {
        if (w->ident == ident) {
            return w;
        }
    }
    return NULL;
}

void
ts_wait_done(ts_wait *w, PyObject *ok)
{
    if (w->prev != NULL) {
        w->prev->next = w->next;
    }
    else {
        head = w->next;
    }
    if (w->next != NULL) {
        w->next->prev = w->prev;
    }
    n_linked--;
    PyObject *made = w->wait;
    w->wait = NULL;
    if (made == NULL) {
        return;
    }
    /* A reader made a Wait of it: out of waits.WAITS, keeping any exception being raised. */
    PyObject *exc = PyErr_GetRaisedException();
    PyObject *me = PyLong_FromUnsignedLong(w->ident);
    PyObject *r = me ? PyObject_CallMethodObjArgs(ts_hooks.waits, s_forget, me, ok, NULL) : NULL;
    Py_XDECREF(me);
    if (r == NULL) {
        PyErr_Clear();
    }
    Py_XDECREF(r);
    Py_DECREF(made);
    PyErr_SetRaisedException(exc);
}

static PyObject *
get_waits_dict(void)
{
    if (waits_dict == NULL && ts_hooks.waits != NULL) {
        waits_dict = PyObject_GetAttr(ts_hooks.waits, s_WAITS);
        if (waits_dict != NULL && !PyDict_Check(waits_dict)) {
            Py_CLEAR(waits_dict);
        }
        if (waits_dict == NULL) {
            PyErr_Clear();
        }
    }
    return waits_dict;
}

int
ts_py_waiting(unsigned long ident)
{
    PyObject *d = get_waits_dict();
    if (d == NULL) {
        return 1;  /* not known: let the Python path decide */
    }
    if (PyDict_GET_SIZE(d) == 0) {
        return 0;
    }
    PyObject *key = PyLong_FromUnsignedLong(ident);
    if (key == NULL) {
        PyErr_Clear();
        return 1;
    }
    int r = PyDict_Contains(d, key);
    Py_DECREF(key);
    if (r < 0) {
        PyErr_Clear();
        return 1;
    }
    return r;
}

/* Whether a wait linked later by the same thread hides `w`: a signal handler that ran during
 * `w` and blocks again. Only the thread's latest wait is its wait now. */
static int
shadowed(ts_wait *w)
{
    for (ts_wait *v = head; v != w; v = v->next) {
        if (v->ident == w->ident) {
            return 1;
        }
    }
    return 0;
}

typedef struct {
    uint64_t seq;
    unsigned long ident;
    PyObject *lock;
    int64_t since;
    int64_t timeout_us;
    uint32_t site;
    int what;
} wait_copy;

/* sync_waits(): make the Wait of every linked wait that has none yet (see the design note). */
PyObject *
ts_sync_waits(PyObject *module, PyObject *noargs)
{
    Py_ssize_t n = 0;
    for (ts_wait *w = head; w != NULL; w = w->next) {
        n += w->wait == NULL && !shadowed(w);
    }
    if (n == 0) {
        Py_RETURN_NONE;
    }
    wait_copy *copies = PyMem_Malloc(sizeof(wait_copy) * (size_t)n);
    if (copies == NULL) {
        return PyErr_NoMemory();
    }
    Py_ssize_t k = 0;
    for (ts_wait *w = head; w != NULL && k < n; w = w->next) {
        if (w->wait == NULL && !shadowed(w)) {
            copies[k++] = (wait_copy){w->seq, w->ident, Py_NewRef(w->lock), w->since,
                                      w->timeout_us, w->site, w->what};
        }
    }
    PyObject *d = get_waits_dict();
    PyObject *make = PyObject_GetAttr(ts_hooks.waits, s_native_wait);
    if (make == NULL) {
        PyErr_Clear();  /* nothing is made (the copies' references are given back below) */
    }
    for (Py_ssize_t i = 0; make != NULL && i < k; i++) {
        wait_copy *c = &copies[i];
        int lasti = 0;
        PyObject *code = c->site ? ts_site_code(c->site, &lasti) : NULL;
        PyObject *timeout = c->timeout_us < 0 ? Py_NewRef(Py_None)
                                              : PyFloat_FromDouble((double)c->timeout_us / 1e6);
        PyObject *args = Py_BuildValue(
            "(kOLOiNs)", c->ident, c->lock, (long long)c->since, code ? code : Py_None,
            code ? -1 - lasti : 0, timeout, c->what == TS_WAIT_RESTORE ? "restore" : "acquire");
        PyObject *made = args ? PyObject_Call(make, args, NULL) : NULL;
        Py_XDECREF(args);
        if (made == NULL) {
            PyErr_Clear();  /* a wait nobody can read is still a wait: the next sync tries */
            continue;
        }
        ts_wait *w = head;
        while (w != NULL && w->seq != c->seq) {
            w = w->next;
        }
        if (w == NULL || w->wait != NULL || d == NULL) {
            Py_DECREF(made);  /* ended meanwhile, or made by a reentrant sync */
            continue;
        }
        PyObject *key = PyLong_FromUnsignedLong(c->ident);
        if (key == NULL || PyDict_SetItem(d, key, made) < 0) {
            PyErr_Clear();
            Py_XDECREF(key);
            Py_DECREF(made);
            continue;
        }
        Py_DECREF(key);
        w->wait = made;  /* the slot's reference */
    }
    Py_XDECREF(make);
    for (Py_ssize_t i = 0; i < k; i++) {
        Py_DECREF(copies[i].lock);
    }
    PyMem_Free(copies);
    Py_RETURN_NONE;
}

/* waiting() -> int: how many native waits are linked now. */
PyObject *
ts_native_waiting(PyObject *module, PyObject *noargs)
{
    return PyLong_FromSsize_t(n_linked);
}

/* waits_for(owner, exclude) -> [ident]: the threads natively waiting for a lock that thread
 * `owner` holds, other than `exclude` (the nested-monitor check, without making a Wait of
 * every native wait). */
PyObject *
ts_native_waits_for(PyObject *module, PyObject *args)
{
    unsigned long owner;
    PyObject *exclude;
    if (!PyArg_ParseTuple(args, "kO:waits_for", &owner, &exclude)) {
        return NULL;
    }
    PyObject *out = PyList_New(0);
    for (ts_wait *w = head; out != NULL && w != NULL; w = w->next) {
        if (w->lock == exclude || w->ident == owner || ts_lock_owner(w->lock) != owner) {
            continue;
        }
        PyObject *id = PyLong_FromUnsignedLong(w->ident);
        if (id == NULL || PyList_Append(out, id) < 0) {
            Py_CLEAR(out);
        }
        Py_XDECREF(id);
    }
    return out;
}

void
ts_waits_after_fork(void)
{
    /* The other threads' slots were on stacks that do not exist here; the forking thread
     * was running, not waiting. Their Wait objects are not reachable any more (leaked). */
    head = NULL;
    n_linked = 0;
}

int
ts_waits_init(PyObject *module)
{
    s_forget = PyUnicode_InternFromString("forget");
    s_native_wait = PyUnicode_InternFromString("_native_wait");
    s_WAITS = PyUnicode_InternFromString("WAITS");
    return s_forget && s_native_wait && s_WAITS ? 0 : -1;
}
