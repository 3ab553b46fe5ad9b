/*
 * Per-thread record buffers: chunks, the memory budget, thread registration, waking the
 * flusher, fork.
 *
 * Design note (the concurrency reasoning).
 *
 * Each thread writes records only into its own buffer (`ts_tls_buf`, a C thread-local), so
 * writing takes no lock: a record is filled, then the chunk's count is incremented; both happen
 * with the GIL held. The flusher takes a snapshot of every buffer (chunk list and counts) with
 * the GIL held too, so every record it sees is complete (the GIL orders the writes before the
 * snapshot); it then renders the snapshot with the GIL released while the threads go on
 * appending *after* the counts it saw, never over them. Chunks leave a buffer only from its
 * head, once rendered, under the GIL; the writer only ever touches its current chunk. A full
 * chunk is followed by a new one (from the free list, or allocated while the budget allows);
 * past the budget, records are dropped and counted per thread, and the next flush reports them
 * (a `dropped` event): the recording thread never flushes and never waits.
 *
 * A thread's buffer outlives the thread: a pthread-key destructor marks it dead at thread exit
 * (touching nothing else: the interpreter is gone from that thread by then), and the flusher
 * frees it once it has rendered everything in it.
 *
 * Free-threaded builds (not supported: native.h refuses them) would need the count published
 * with release/acquire atomics and chunks handed to the flusher through an atomic list; the
 * layout here (one writer per buffer, the flusher reading only below a published count) is
 * chosen so that this is all they would need.
 */
#include "native.h"
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

TLS_VAR ts_tbuf *ts_tls_buf = NULL;
ts_tbuf *ts_all_bufs = NULL;
size_t ts_budget = 64u * 1024u * 1024u;
size_t ts_allocated = 0;
uint64_t ts_filled_chunks = 0;
volatile int ts_flusher_idle = 0;

static ts_chunk *free_chunks = NULL;
static int n_free_chunks = 0;
#define MAX_FREE_CHUNKS 16

static pthread_key_t tbuf_key;
static PyThread_type_lock wake_lock = NULL;
static int flusher_waiting = 0;
static uint64_t filled_at_wait = 0;
static uint64_t wake_after_chunks = 16;   /* 1 MiB of records wakes a flusher that waits */
static uint64_t dropped_total = 0;
/* Set while the flusher is between two sleeps (collecting, rendering, writing): a recording
 * thread that fills a chunk while records pile up past a quarter of the budget then yields the
 * GIL once (see ts_rec_slow), so that the flusher is not starved by busy threads. */
static volatile int flusher_busy = 0;

static void
tbuf_thread_exit(void *p)
{
    /* Runs at thread exit, without the GIL and without a thread state: only mark it. */
    ((ts_tbuf *)p)->dead = 1;
}

ts_chunk *
ts_chunk_new(void)
{
    size_t in_use = ts_allocated - (size_t)n_free_chunks * CHUNK_BYTES;
    if (in_use + CHUNK_BYTES > ts_budget) {
        return NULL;
    }
    ts_chunk *c = free_chunks;
    if (c != NULL) {
        free_chunks = c->next;
        n_free_chunks--;
    }
    else {
        c = (ts_chunk *)malloc(CHUNK_BYTES);
        if (c == NULL) {
            return NULL;
        }
        ts_allocated += CHUNK_BYTES;
        c->cap = (uint32_t)((CHUNK_BYTES - sizeof(ts_chunk)) / sizeof(ts_rec));
    }
    c->next = NULL;
    c->n = 0;
    return c;
}

void
ts_chunk_free(ts_chunk *c)
{
    if (n_free_chunks < MAX_FREE_CHUNKS && ts_allocated <= ts_budget) {
        c->next = free_chunks;
        free_chunks = c;
        n_free_chunks++;
        return;
    }
    ts_allocated -= CHUNK_BYTES;
    free(c);
}

static void
wake_flusher(void)
{
    if (flusher_waiting) {
        flusher_waiting = 0;
        PyThread_release_lock(wake_lock);
    }
}

void
ts_wake_flusher_slow(void)
{
    ts_flusher_idle = 0;
    wake_flusher();
}

static ts_tbuf *
new_tbuf(unsigned long ident, long native_id)
{
    ts_tbuf *b = (ts_tbuf *)calloc(1, sizeof(ts_tbuf));
    if (b == NULL) {
        return NULL;
    }
    b->ident = ident;
    b->native_id = native_id;
    b->tid_len = snprintf(b->tid_text, sizeof b->tid_text, "%ld", native_id);
    b->next = ts_all_bufs;
    ts_all_bufs = b;
    ts_tls_buf = b;
    pthread_setspecific(tbuf_key, b);
    return b;
}

/* attach_thread(ident, native_id): give the calling thread its buffer (called by
 * runtime.register_thread, which wrote its `thread` event). Idempotent. */
PyObject *
ts_attach_thread(PyObject *self, PyObject *args)
{
    unsigned long ident;
    long native_id;
    if (!PyArg_ParseTuple(args, "kl:attach_thread", &ident, &native_id)) {
        return NULL;
    }
    if (ts_tls_buf == NULL && new_tbuf(ident, native_id) == NULL) {
        return PyErr_NoMemory();
    }
    Py_RETURN_NONE;
}

unsigned long
ts_thread_ident_slow(void)
{
    /* runtime.register_thread() names the thread in the log and calls attach_thread. */
    PyObject *r = PyObject_CallMethod(ts_hooks.runtime, "register_thread", NULL);
    if (r == NULL) {
        return 0;
    }
    Py_DECREF(r);
    if (ts_tls_buf == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "tracedsync: the thread was not attached");
        return 0;
    }
    return ts_tls_buf->ident;
}

ts_rec *
ts_rec_slow(void)
{
    ts_tbuf *b = ts_tls_buf;
    if (b == NULL) {
        if (ts_thread_ident_slow() == 0) {
            /* Recording must never break the program: the record is lost, not the call. */
            PyErr_Clear();
            return NULL;
        }
        b = ts_tls_buf;
    }
    ts_chunk *c = b->cur;
    if (c != NULL && c->n < c->cap) {
        return &c->recs[c->n];
    }
    ts_chunk *fresh = ts_chunk_new();
    if (fresh == NULL) {
        b->dropped++;
        dropped_total++;
        wake_flusher();
        return NULL;
    }
    if (c == NULL) {
        if (b->head == NULL) {
            b->head = fresh;
            b->consumed = 0;
        }
        else {
            /* the head chain ends at the last chunk; find it (rare: after a drop) */
            ts_chunk *last = b->head;
            while (last->next != NULL) {
                last = last->next;
            }
            last->next = fresh;
        }
    }
    else {
        c->next = fresh;
        ts_filled_chunks++;
        if (flusher_waiting && ts_filled_chunks - filled_at_wait >= wake_after_chunks) {
            wake_flusher();
        }
    }
    b->cur = fresh;
    size_t in_use = ts_allocated - (size_t)n_free_chunks * CHUNK_BYTES;
    if (flusher_busy && in_use > ts_budget / 4) {
        /* Back-pressure without blocking on us: let a waiting flusher have the GIL once, as
         * the interpreter itself would at its next switch. */
        Py_BEGIN_ALLOW_THREADS
        Py_END_ALLOW_THREADS
    }
    return &fresh->recs[0];
}

ts_rec *
ts_rec_getn(uint32_t n)
{
    ts_rec *r = ts_rec_get();
    if (r == NULL) {
        return NULL;
    }
    ts_chunk *c = ts_tls_buf->cur;
    if (c->n + n <= c->cap) {
        return r;
    }
    if (n > c->cap) {
        return NULL;
    }
    /* Not enough room left: pad the rest, then start the next chunk. */
    while (c->n < c->cap) {
        c->recs[c->n].op = REC_PAD;
        c->recs[c->n].t = 0;
        c->n++;
    }
    return ts_rec_slow();  /* a fresh chunk: room for n */
}

/* wait_for_work(timeout, idle=False): the flusher's sleep, at most `timeout` seconds (None:
 * no bound), or until enough chunks have filled. With `idle` (a flush found nothing), the next
 * record wakes it too: an idle program costs nothing. Returns None. */
PyObject *
ts_wait_for_work(PyObject *self, PyObject *args)
{
    PyObject *arg;
    int idle = 0;
    if (!PyArg_ParseTuple(args, "O|p:wait_for_work", &arg, &idle)) {
        return NULL;
    }
    PY_TIMEOUT_T us = -1;
    if (arg != Py_None) {
        double secs = PyFloat_AsDouble(arg);
        if (secs == -1.0 && PyErr_Occurred()) {
            return NULL;
        }
        us = secs <= 0 ? 0 : (PY_TIMEOUT_T)(secs * 1e6);
    }
    if (idle) {
        ts_flusher_idle = 1;
    }
    flusher_busy = 0;
    flusher_waiting = 1;
    filled_at_wait = ts_filled_chunks;
    PyLockStatus r;
    Py_BEGIN_ALLOW_THREADS
    r = PyThread_acquire_lock_timed(wake_lock, us, 0);
    Py_END_ALLOW_THREADS
    if (r != PY_LOCK_ACQUIRED) {
        if (!flusher_waiting) {
            /* A waker released the lock after our timeout: consume it. */
            PyThread_acquire_lock(wake_lock, 0);
        }
        flusher_waiting = 0;
    }
    ts_flusher_idle = 0;
    flusher_busy = 1;
    Py_RETURN_NONE;
}

/* wake(): end the flusher's wait now (a flush, shutting down). */
PyObject *
ts_wake(PyObject *self, PyObject *noargs)
{
    ts_flusher_idle = 0;
    wake_flusher();
    Py_RETURN_NONE;
}

/* wake_if_idle(): end the flusher's sleep only if it sleeps until woken (a wait began: the
 * watchdog has something to watch); a flusher on its interval is left alone. */
PyObject *
ts_wake_if_idle(PyObject *self, PyObject *noargs)
{
    if (ts_flusher_idle) {
        ts_flusher_idle = 0;
        wake_flusher();
    }
    Py_RETURN_NONE;
}

/* set_budget(bytes) */
PyObject *
ts_set_budget(PyObject *self, PyObject *args)
{
    Py_ssize_t b;
    if (!PyArg_ParseTuple(args, "n:set_budget", &b)) {
        return NULL;
    }
    if (b < CHUNK_BYTES) {
        b = CHUNK_BYTES;
    }
    ts_budget = (size_t)b;
    /* Give back free chunks the new budget has no room for. */
    while (free_chunks != NULL && ts_allocated > ts_budget) {
        ts_chunk *c = free_chunks;
        free_chunks = c->next;
        n_free_chunks--;
        ts_allocated -= CHUNK_BYTES;
        free(c);
    }
    Py_RETURN_NONE;
}

/* buffer_info() -> dict: for tests and benchmarks. */
PyObject *
ts_buffer_info(PyObject *self, PyObject *noargs)
{
    Py_ssize_t threads = 0, dead = 0, pending = 0;
    for (ts_tbuf *b = ts_all_bufs; b != NULL; b = b->next) {
        threads++;
        dead += b->dead != 0;
        uint32_t from = b->consumed;
        for (ts_chunk *c = b->head; c != NULL; c = c->next) {
            pending += c->n - from;
            from = 0;
        }
    }
    return Py_BuildValue("{s:n,s:n,s:n,s:n,s:n,s:K,s:n,s:i,s:i}",
                         "threads", threads, "dead", dead, "pending", pending,
                         "allocated", (Py_ssize_t)ts_allocated, "budget", (Py_ssize_t)ts_budget,
                         "dropped", (unsigned long long)dropped_total,
                         "free_chunks", (Py_ssize_t)n_free_chunks,
                         "idle", (int)ts_flusher_idle, "tsc", ts_clock_is_tsc);
}

static void
free_tbuf_chunks(ts_tbuf *b)
{
    ts_chunk *c = b->head;
    while (c != NULL) {
        ts_chunk *next = c->next;
        ts_chunk_free(c);
        c = next;
    }
    b->head = b->cur = NULL;
    b->consumed = 0;
}

/* after_fork_child(): in a forked child, before anything is recorded. Every buffer but the
 * forking thread's belongs to a thread that does not exist here; the forking thread's records
 * are the parent's to write. So all are freed, and this thread registers again (it has a new
 * native id) at its next record. */
PyObject *
ts_after_fork_child(PyObject *self, PyObject *noargs)
{
    ts_tbuf *b = ts_all_bufs;
    while (b != NULL) {
        ts_tbuf *next = b->next;
        free_tbuf_chunks(b);
        free(b);
        b = next;
    }
    ts_all_bufs = NULL;
    ts_tls_buf = NULL;
    ts_waits_after_fork();
    pthread_setspecific(tbuf_key, NULL);
    ts_filled_chunks = 0;
    dropped_total = 0;
    flusher_waiting = 0;
    ts_flusher_idle = 0;
    /* The wake lock may be in any state (the parent's flusher may have been waiting on it). */
    wake_lock = PyThread_allocate_lock();
    if (wake_lock == NULL) {
        return PyErr_NoMemory();
    }
    PyThread_acquire_lock(wake_lock, 1);
    Py_RETURN_NONE;
}

int
ts_buffers_init(PyObject *module)
{
    if (pthread_key_create(&tbuf_key, tbuf_thread_exit) != 0) {
        PyErr_SetString(PyExc_RuntimeError, "tracedsync: pthread_key_create failed");
        return -1;
    }
    wake_lock = PyThread_allocate_lock();
    if (wake_lock == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    PyThread_acquire_lock(wake_lock, 1);  /* held: waiters block until a wake releases it */
    return 0;
}
