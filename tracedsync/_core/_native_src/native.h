/*
 * tracedsync._core._native: the native recorder. Shared declarations.
 *
 * See docs/architecture.md, "The native recorder". Everything here runs with the GIL held,
 * except the renderer (render.c), which works on a snapshot taken under the GIL and touches
 * no Python object while the GIL is released. The build refuses a free-threaded interpreter
 * (the pure-Python twin is used there); the notes in buffers.c say what it would need.
 */
#ifndef TRACEDSYNC_NATIVE_H
#define TRACEDSYNC_NATIVE_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <pythread.h>

#ifdef Py_GIL_DISABLED
#error "tracedsync._core._native needs the GIL; the pure-Python twin serves free-threaded builds"
#endif

#if defined(__GNUC__)
#define LIKELY(x) __builtin_expect(!!(x), 1)
#define UNLIKELY(x) __builtin_expect(!!(x), 0)
/* initial-exec: one %fs-relative load, not a __tls_get_addr() call per access, as the
 * default model of a dlopen()ed library would do (the record path reads it twice per
 * acquire/release pair); glibc keeps static TLS room for such small variables of dlopen()ed
 * modules. */
#define TLS_VAR __thread __attribute__((tls_model("initial-exec")))
#else
#define LIKELY(x) (x)
#define UNLIKELY(x) (x)
#define TLS_VAR _Thread_local
#endif

#if PY_VERSION_HEX < 0x030C0000
/* 3.12's exception API, for 3.10 and 3.11 (lock.c, mplock.c). */
static inline PyObject *
PyErr_GetRaisedException(void)
{
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    if (type == NULL) {
        return NULL;
    }
    PyErr_NormalizeException(&type, &value, &tb);
    if (tb != NULL) {
        PyException_SetTraceback(value, tb);
        Py_DECREF(tb);
    }
    Py_DECREF(type);
    return value;
}

static inline void
PyErr_SetRaisedException(PyObject *exc)
{
    if (exc == NULL) {
        PyErr_Clear();
        return;
    }
    PyObject *type = Py_NewRef((PyObject *)Py_TYPE(exc));
    PyObject *tb = PyException_GetTraceback(exc);
    PyErr_Restore(type, exc, tb);
}
#endif

/* Decimal digits of an integer at `p` (the renderers, no GIL); returns the end. */
static inline char *
ts_put_u64(char *p, uint64_t v)
{
    char tmp[24];
    int n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    while (n) {
        *p++ = tmp[--n];
    }
    return p;
}

static inline char *
ts_put_i64(char *p, int64_t v)
{
    if (v < 0) {
        *p++ = '-';
        return ts_put_u64(p, (uint64_t)(-(v + 1)) + 1);
    }
    return ts_put_u64(p, (uint64_t)v);
}

/* -- levels (the same numbers as tracedsync._core.runtime) ------------------------------- */
#define LEVEL_OFF 0
#define LEVEL_CONTENTION 1
#define LEVEL_FULL 2
extern int ts_level;

/* -- the clock (clock.c) ------------------------------------------------------------------ */
/* Ticks: TSC cycles where the kernel's clocksource is the invariant TSC, else CLOCK_MONOTONIC
 * nanoseconds. Converted to CLOCK_MONOTONIC nanoseconds with the calibration of the moment. */
extern int ts_clock_is_tsc;
int ts_clock_init(void);
uint64_t ts_ticks_slow(void);
static inline uint64_t
ts_ticks(void)
{
#if defined(__x86_64__) || defined(__i386__)
    if (LIKELY(ts_clock_is_tsc)) {
        return __builtin_ia32_rdtsc();
    }
#endif
    return ts_ticks_slow();
}
int64_t ts_mono_ns(void);
/* Calibration: ns = base_ns + (ticks - base_ticks) * ns_per_tick. */
typedef struct {
    uint64_t base_ticks;
    int64_t base_ns;
    double ns_per_tick;
} ts_calib;
void ts_calib_now(ts_calib *c);
static inline int64_t
ts_to_ns(const ts_calib *c, uint64_t ticks)
{
    return c->base_ns + (int64_t)((double)(int64_t)(ticks - c->base_ticks) * c->ns_per_tick);
}
static inline int64_t
ts_ticks_to_ns(const ts_calib *c, uint64_t dticks)
{
    return (int64_t)((double)dticks * c->ns_per_tick);
}
/* The calibration in force (updated by the flusher); for Python-side conversions. */
extern ts_calib ts_current_calib;

/* -- records (buffers.c) ------------------------------------------------------------------ */
enum {
    REC_PAD = 0,       /* an unused slot at the end of a chunk (skipped) */
    REC_ACQUIRE = 1,   /* an acquire with the default arguments: uncontended, or FLAG_CONTENDED
                        * (val: the wait in ticks; an extension record follows: blocked_by) */
    REC_RELEASE = 2,   /* a release; FLAG_HOLD: val is the hold in ticks (depth reached 0) */
    REC_KIND = 3,      /* a declared kind (kinds.c): `depth` is the kind, `flags` its bits */
    REC_PAIR = 4,      /* an uncontended acquire (to depth 1) and the release back to 0 that
                        * came right after it in the same buffer: the acquire's record, turned
                        * into this by the release (lock.c), val the hold in ticks. Rendered as
                        * the two events: the acquire at t, the release at t + val. */
};
#define FLAG_HOLD 1
#define FLAG_CONTENDED 2

/* The second slot of a two-slot record (same 32 bytes, read as words). */
typedef struct {
    uint64_t w[4];
} ts_ext;

typedef struct {
    uint64_t t;         /* ticks */
    uint32_t prim_pid;  /* the primitive's id: "<prim_pid>.<prim_n>" */
    uint32_t prim_n;
    uint32_t site;      /* call-site id (0: unknown) */
    uint8_t op;
    uint8_t flags;
    uint16_t depth;
    uint64_t val;
} ts_rec;

#define CHUNK_BYTES (64 * 1024)

typedef struct ts_chunk {
    struct ts_chunk *next;
    uint32_t n;      /* records written */
    uint32_t cap;
    ts_rec recs[];
} ts_chunk;

/* A get remembered by the read-modify-write rule (mplock.c; rmw.py is the rule's Python
 * twin): which item, where, and whether the caller held the value's lock (which holding). */
typedef struct {
    uint32_t prim_pid, prim_n;
    int64_t key;               /* the normalised index, or RMW_NO_KEY for a Value's value */
    uint32_t site;
    int8_t locked;
    int8_t has_hold;           /* the holding is known (the caller is the lock's owner) */
    int64_t hold;              /* its start (the lock's t_hold) */
} ts_rmw_read;
#define RMW_NO_KEY INT64_MIN
#define RMW_READS 64           /* as rmw.MAX_READS: past it, the remembered gets are forgotten */

typedef struct ts_tbuf {
    struct ts_tbuf *next;      /* every buffer of this process, newest first */
    ts_chunk *head;            /* oldest chunk with records not yet rendered */
    ts_chunk *cur;             /* the chunk being written (NULL: none yet / dropped) */
    uint32_t consumed;         /* records of head already rendered */
    unsigned long ident;       /* threading.get_ident() */
    long native_id;
    uint64_t dropped;          /* records dropped for lack of budget, not yet reported */
    volatile int dead;         /* the thread has exited (pthread-key destructor) */
    char tid_text[24];
    int tid_len;
    ts_chunk *sealed;          /* the current chunk when the last snapshot was taken, and its */
    uint32_t sealed_n;         /* count: records below it there (and before) are the flusher's */
    uint32_t n_reads;          /* the read-modify-write rule's remembered gets (mplock.c) */
    ts_rmw_read reads[RMW_READS];
} ts_tbuf;

extern TLS_VAR ts_tbuf *ts_tls_buf;

/* Slow path: a record slot in the current thread's buffer, or NULL if none can be had
 * (registering the thread failed: a Python error is set; or the budget is spent: the drop is
 * counted, no error). */
ts_rec *ts_rec_slow(void);
void ts_wake_flusher_slow(void);
extern volatile int ts_flusher_idle;

/* A slot for one record; the caller fills it and calls ts_rec_commit(). */
static inline ts_rec *
ts_rec_get(void)
{
    ts_tbuf *b = ts_tls_buf;
    if (LIKELY(b != NULL)) {
        ts_chunk *c = b->cur;
        if (LIKELY(c != NULL && c->n < c->cap)) {
            return &c->recs[c->n];
        }
    }
    return ts_rec_slow();
}

static inline void
ts_rec_commit(void)
{
    ts_tls_buf->cur->n++;
    if (UNLIKELY(ts_flusher_idle)) {
        ts_wake_flusher_slow();
    }
}

/* `n` consecutive slots in one chunk (the end of a chunk is padded), or NULL. */
ts_rec *ts_rec_getn(uint32_t n);
static inline ts_rec *ts_rec_get2(void) { return ts_rec_getn(2); }
static inline void
ts_rec_commitn(uint32_t n)
{
    ts_tls_buf->cur->n += n;
    if (UNLIKELY(ts_flusher_idle)) {
        ts_wake_flusher_slow();
    }
}
static inline void ts_rec_commit2(void) { ts_rec_commitn(2); }

/* -- record kinds (kinds.c) ------------------------------------------------------------- */
typedef struct {
    /* the native id text of thread `ident`; 0 if unknown */
    int (*find)(const void *ctx, unsigned long ident, const char **text, int *len);
    const void *ctx;
} ts_tid_lookup;
#define MAX_KIND_SLOTS 258  /* a kind's record, its extension and 1024 idents */
uint32_t ts_kind_slots(const ts_rec *r);
const char *ts_kind_name(const ts_rec *r, Py_ssize_t *len);
char *ts_kind_fields(char *p, const ts_rec *r, double ns_per_tick, const ts_tid_lookup *look,
                     const char **site, Py_ssize_t *site_len);
size_t ts_kind_max_line(const ts_rec *r);
PyObject *ts_kind_tuple(const ts_rec *r, int64_t ts, unsigned long ident, double ns_per_tick);
int ts_kinds_init(PyObject *module);
/* Write one record of declared kind `kind` (bits, w[0..3], up to 1024 idents); a record that
 * finds no room is dropped (counted). */
void ts_kind_rec(long kind, uint32_t prim_pid, uint32_t prim_n, uint8_t bits, const uint64_t w[4],
                 const unsigned long long *idents, Py_ssize_t nid);
#define K_NOTIFY 0  /* tracedsync._core.native_kinds.K_NOTIFY (exported as K_NOTIFY: tested) */
int ts_cond_init(PyObject *module);
int ts_mplock_init(PyObject *module);

/* The current thread's ident, registering it (its `thread` event) the first time. 0 and a
 * Python error on failure. */
unsigned long ts_thread_ident_slow(void);
static inline unsigned long
ts_thread_ident(void)
{
    ts_tbuf *b = ts_tls_buf;
    if (LIKELY(b != NULL)) {
        return b->ident;
    }
    return ts_thread_ident_slow();
}

int ts_buffers_init(PyObject *module);
PyObject *ts_attach_thread(PyObject *self, PyObject *args);
PyObject *ts_after_fork_child(PyObject *self, PyObject *noargs);
PyObject *ts_wait_for_work(PyObject *self, PyObject *args);
PyObject *ts_wake(PyObject *self, PyObject *noargs);
PyObject *ts_wake_if_idle(PyObject *self, PyObject *noargs);
PyObject *ts_set_budget(PyObject *self, PyObject *args);
PyObject *ts_buffer_info(PyObject *self, PyObject *noargs);

/* The pending-work counter the flusher watches (records committed since its last snapshot
 * are not counted: only chunks filled). */
extern uint64_t ts_filled_chunks;
extern size_t ts_budget, ts_allocated;
ts_chunk *ts_chunk_new(void);
void ts_chunk_free(ts_chunk *c);
extern ts_tbuf *ts_all_bufs;

/* -- call sites (sites.c) ------------------------------------------------------------------ */
/* The site id of the calling Python frame (walking out of tracedsync, threading and
 * multiprocessing frames), 0 if unknown. Never fails (errors are swallowed: a site is
 * optional). */
uint32_t ts_site_of_caller(void);
int ts_sites_init(PyObject *module);
PyObject *ts_site_info(PyObject *self, PyObject *args);
/* The rendered fragment of site `id` (`,"site":"...","func":"..."`), formatted by the
 * flusher under the GIL (ts_sites_format_pending); NULL if none. */
const char *ts_site_fragment(uint32_t id, Py_ssize_t *len);
int ts_sites_format_pending(void);
uint32_t ts_sites_count(void);
PyObject *ts_site_code(uint32_t id, int *lasti);

/* -- the lock types (lock.c) ---------------------------------------------------------------- */
int ts_lock_init(PyObject *module);

/* -- native waits (waits.c) ----------------------------------------------------------------- */
#define TS_WAIT_ACQUIRE 0
#define TS_WAIT_RESTORE 1
/* A thread blocked on a native lock, on that thread's stack while it is linked. */
typedef struct ts_wait {
    struct ts_wait *prev, *next;
    unsigned long ident;
    PyObject *lock;          /* borrowed: the waiting call holds a reference */
    int64_t since;           /* CLOCK_MONOTONIC ns */
    int64_t timeout_us;      /* -1: none */
    uint64_t seq;
    PyObject *wait;          /* its waits.Wait, once a reader made one (owned), else NULL */
    uint32_t site;
    int what;                /* TS_WAIT_ACQUIRE | TS_WAIT_RESTORE */
} ts_wait;
void ts_wait_link(ts_wait *w);
/* Unlink `w` (the blocking call returned); `ok` is how it ended, for waits.forget. */
void ts_wait_done(ts_wait *w, PyObject *ok);
/* The wait linked last by thread `ident`, or NULL. */
ts_wait *ts_wait_find(unsigned long ident);
/* Whether thread `ident` is in the Python wait-for table (1 when that cannot be told). */
int ts_py_waiting(unsigned long ident);
PyObject *ts_sync_waits(PyObject *module, PyObject *noargs);
PyObject *ts_native_waiting(PyObject *module, PyObject *noargs);
void ts_waits_after_fork(void);
PyObject *ts_native_waits_for(PyObject *module, PyObject *args);
/* The holder of a native lock (0: free) (lock.c). */
unsigned long ts_lock_owner(PyObject *lock);
int ts_waits_init(PyObject *module);

/* -- rendering (render.c) ------------------------------------------------------------------- */
int ts_render_init(PyObject *module);

/* -- Python hooks set by install() (module.c) ------------------------------------------------ */
typedef struct {
    PyObject *runtime;          /* tracedsync._core.runtime (emit, register_thread) */
    PyObject *waits;            /* tracedsync._core.waits (wait_lock, wait_restore, forget) */
    PyObject *statistics_cls;   /* tracedsync._core.state.Statistics */
    PyObject *registry_new;     /* registry.new_native(lock, kind, name, site) -> (pid, n, prim) */
    PyObject *report;           /* state.report_stats(st): the `stats` event */
    PyObject *user_site;        /* tracedsync._core.sites.user_site */
} ts_hooks_t;
extern ts_hooks_t ts_hooks;
/* Append a tuple to the Python channel (runtime.emit), stealing `item`. */
int ts_emit_tuple(PyObject *item);
PyObject *ts_now_ns_obj(void);

#endif
