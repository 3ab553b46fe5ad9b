/*
 * tracedsync._core._native: module initialisation and the settings the hot path reads.
 *
 * The pieces: clock.c (ticks and their calibration), buffers.c (per-thread records, the
 * budget, the flusher's sleep), sites.c (call sites), lock.c (the Lock and RLock types),
 * waits.c (contended waits, for the wait-for graph), cond.c (a Condition's books and notify),
 * kinds.c (the other primitives' records), mplock.c (multiprocessing's locks), render.c (the
 * flusher's snapshot and the JSON renderer). The Python side that drives them is
 * tracedsync/_core/native.py.
 */
#include "native.h"

int ts_level = LEVEL_FULL;

/* set_level(level) */
static PyObject *
set_level(PyObject *module, PyObject *arg)
{
    long level = PyLong_AsLong(arg);
    if (level == -1 && PyErr_Occurred()) {
        return NULL;
    }
    if (level < LEVEL_OFF || level > LEVEL_FULL) {
        PyErr_SetString(PyExc_ValueError, "level must be 0, 1 or 2");
        return NULL;
    }
    ts_level = (int)level;
    Py_RETURN_NONE;
}

/* now_ns() -> the recorder's clock now, in CLOCK_MONOTONIC ns. */
static PyObject *
now_ns(PyObject *module, PyObject *noargs)
{
    return PyLong_FromLongLong(ts_mono_ns());
}

/* clock() -> ("tsc", ns_per_tick) | ("monotonic", 1.0) */
static PyObject *
clock_info(PyObject *module, PyObject *noargs)
{
    return Py_BuildValue("(sd)", ts_clock_is_tsc ? "tsc" : "monotonic",
                         ts_current_calib.ns_per_tick);
}

static PyMethodDef module_methods[] = {
    {"set_level", set_level, METH_O, "Set the recording level (0 off, 1 contention, 2 full)."},
    {"now_ns", now_ns, METH_NOARGS, "CLOCK_MONOTONIC now, in ns."},
    {"clock", clock_info, METH_NOARGS, "The clock in use and its rate."},
    {"attach_thread", ts_attach_thread, METH_VARARGS,
     "attach_thread(ident, native_id): give the calling thread its record buffer."},
    {"after_fork_child", ts_after_fork_child, METH_NOARGS,
     "In a forked child: forget every buffer (their records are the parent's)."},
    {"wait_for_work", ts_wait_for_work, METH_VARARGS,
     "wait_for_work(timeout | None, idle=False): the flusher's sleep."},
    {"wake", ts_wake, METH_NOARGS, "End the flusher's sleep now."},
    {"wake_if_idle", ts_wake_if_idle, METH_NOARGS,
     "End the flusher's sleep if it sleeps until woken."},
    {"sync_waits", ts_sync_waits, METH_NOARGS,
     "Enter every native wait that has no waits.Wait yet in waits.WAITS."},
    {"waiting", ts_native_waiting, METH_NOARGS, "How many native waits there are now."},
    {"waits_for", ts_native_waits_for, METH_VARARGS,
     "waits_for(owner, exclude): idents natively waiting for a lock owner holds."},
    {"set_budget", ts_set_budget, METH_VARARGS, "set_budget(bytes): the records' memory."},
    {"buffer_info", ts_buffer_info, METH_NOARGS, "Counts, for tests and benchmarks."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef moduledef = {
    PyModuleDef_HEAD_INIT, "tracedsync._core._native",
    "The native recorder: traced Lock and RLock, per-thread binary records, the C renderer.",
    -1, module_methods,
};

PyMODINIT_FUNC
PyInit__native(void)
{
    PyObject *m = PyModule_Create(&moduledef);
    if (m == NULL) {
        return NULL;
    }
    if (ts_clock_init() < 0 || ts_buffers_init(m) < 0 || ts_sites_init(m) < 0 ||
        ts_lock_init(m) < 0 || ts_render_init(m) < 0 || ts_kinds_init(m) < 0 ||
        ts_mplock_init(m) < 0 || ts_waits_init(m) < 0 || ts_cond_init(m) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    if (PyModule_AddIntConstant(m, "RECORD_BYTES", (long)sizeof(ts_rec)) < 0 ||
        PyModule_AddIntConstant(m, "CHUNK_BYTES", CHUNK_BYTES) < 0 ||
        PyModule_AddIntConstant(m, "K_NOTIFY", K_NOTIFY) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
