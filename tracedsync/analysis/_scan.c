/*
 * tracedsync.analysis._cscan: the scanner's acquire/release kernel in C (optional).
 *
 * The same kernel as tracedsync/analysis/kernel.py (PyKernel), which is the reference: same
 * methods, same results; the test suite runs both on the same inputs and compares them. This
 * one also parses the lines: `scan` walks a block of whole lines and handles every line that
 * is, beyond doubt, a usable acquire or release written the plain way (the recorder's way).
 * Any other line (another event, a field of an unexpected type, an escape in a string, a
 * number it would have to think about, invalid JSON) goes to the Python callback, which
 * decides with hotdecode.hot_problem and may give it back through `acquire`/`release`.
 *
 * Strings (primitive ids, call sites, functions) are interned once into ids; the statistics
 * live in C structs and become Python objects only in `export`. Wait and hold values are kept
 * raw and folded into log buckets at export, exactly as hist.Histogram.add_values does.
 *
 * Design notes are in kernel.py (hold attribution, lock-order edges and gates, byte ranges
 * and deferred thread prefixes) and caps.py (the smallest site pairs are kept per edge).
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define MAX_EXAMPLES 8
#define TIMELINE_MAX_BUCKETS 2048
#define TIMELINE_SHIFT 20
#define UNKNOWN_ID 0 /* the interned "?" */
#define NONE_ID (-1)

/* ---------------------------------------------------------------------------------------- */
/* growable vectors and a uint64 -> int32 hash map                                          */

typedef struct { int64_t *v; Py_ssize_t n, cap; } I64Vec;

static int
vec_push(I64Vec *a, int64_t x)
{
    if (a->n == a->cap) {
        Py_ssize_t cap = a->cap ? a->cap * 2 : 8;
        int64_t *v = PyMem_Realloc(a->v, (size_t)cap * sizeof(int64_t));
        if (v == NULL) { PyErr_NoMemory(); return -1; }
        a->v = v;
        a->cap = cap;
    }
    a->v[a->n++] = x;
    return 0;
}

typedef struct { uint64_t *keys; int32_t *vals; uint32_t mask; uint32_t n; } Map;

static inline uint64_t
mix64(uint64_t x)
{
    x ^= x >> 33; x *= 0xff51afd7ed558ccdULL; x ^= x >> 33; x *= 0xc4ceb9fe1a85ec53ULL;
    x ^= x >> 33;
    return x;
}

static int
map_init(Map *m, uint32_t cap)
{
    m->keys = PyMem_Malloc(cap * sizeof(uint64_t));
    m->vals = PyMem_Malloc(cap * sizeof(int32_t));
    if (m->keys == NULL || m->vals == NULL) {
        PyMem_Free(m->keys); PyMem_Free(m->vals); m->keys = NULL; m->vals = NULL;
        PyErr_NoMemory();
        return -1;
    }
    memset(m->vals, 0xff, cap * sizeof(int32_t));
    m->mask = cap - 1;
    m->n = 0;
    return 0;
}

static void
map_free(Map *m)
{
    PyMem_Free(m->keys); PyMem_Free(m->vals);
    m->keys = NULL; m->vals = NULL; m->n = 0; m->mask = 0;
}

/* The value for key, or -1. */
static inline int32_t
map_get(const Map *m, uint64_t key)
{
    if (m->keys == NULL) return -1;
    uint32_t i = (uint32_t)mix64(key) & m->mask;
    for (;;) {
        int32_t v = m->vals[i];
        if (v < 0) return -1;
        if (m->keys[i] == key) return v;
        i = (i + 1) & m->mask;
    }
}

static int map_put(Map *m, uint64_t key, int32_t val);

static int
map_grow(Map *m)
{
    Map old = *m;
    if (map_init(m, old.keys ? (old.mask + 1) * 2 : 8) < 0) { *m = old; return -1; }
    if (old.keys) {
        for (uint32_t i = 0; i <= old.mask; i++)
            if (old.vals[i] >= 0) map_put(m, old.keys[i], old.vals[i]);
        map_free(&old);
    }
    return 0;
}

/* Set key -> val (val >= 0); the key must not be there yet. */
static int
map_put(Map *m, uint64_t key, int32_t val)
{
    if (m->keys == NULL || (m->n + 1) * 4 > (m->mask + 1) * 3) {
        if (map_grow(m) < 0) return -1;
    }
    uint32_t i = (uint32_t)mix64(key) & m->mask;
    while (m->vals[i] >= 0) i = (i + 1) & m->mask;
    m->keys[i] = key;
    m->vals[i] = val;
    m->n++;
    return 0;
}

/* A set of int64 (thread ids): a Map whose values are unused. */
static inline int
set_add(Map *s, int64_t x)
{
    if (map_get(s, (uint64_t)x) >= 0) return 0;
    return map_put(s, (uint64_t)x, 0);
}

/* ---------------------------------------------------------------------------------------- */
/* interned strings                                                                         */

typedef struct { size_t off; uint32_t len; } StrEnt;
typedef struct {
    char *arena; size_t alen, acap;
    StrEnt *ents; int32_t n, cap;
    uint32_t *slots; uint32_t mask; /* slot: id + 1, 0 = empty */
    uint64_t *hashes;
} StrTab;

static inline uint64_t
hash_bytes(const char *p, uint32_t n)
{
    uint64_t h = 1469598103934665603ULL ^ n;
    while (n >= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        h = (h ^ w) * 1099511628211ULL;
        h ^= h >> 29;
        p += 8; n -= 8;
    }
    while (n--) h = (h ^ (unsigned char)*p++) * 1099511628211ULL;
    return mix64(h);
}

static inline const char *str_ptr(const StrTab *t, int32_t id) { return t->arena + t->ents[id].off; }
static inline uint32_t str_len(const StrTab *t, int32_t id) { return t->ents[id].len; }

/* Is [p, p+n) valid UTF-8 (no surrogates)? */
static int
utf8_ok(const unsigned char *p, size_t n)
{
    size_t i = 0;
    while (i < n) {
        unsigned char c = p[i];
        if (c < 0x80) { i++; continue; }
        size_t k; uint32_t cp;
        if ((c & 0xe0) == 0xc0) { k = 1; cp = c & 0x1f; }
        else if ((c & 0xf0) == 0xe0) { k = 2; cp = c & 0x0f; }
        else if ((c & 0xf8) == 0xf0) { k = 3; cp = c & 0x07; }
        else return 0;
        if (i + k >= n) return 0;
        for (size_t j = 1; j <= k; j++) {
            if (i + j >= n || (p[i + j] & 0xc0) != 0x80) return 0;
            cp = (cp << 6) | (p[i + j] & 0x3f);
        }
        if ((k == 1 && cp < 0x80) || (k == 2 && cp < 0x800) || (k == 3 && cp < 0x10000)
            || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
            return 0;
        i += k + 1;
    }
    return 1;
}

/* The id of the string [p, p+n): >= 0; -1 on a memory error; -2 if it is not valid UTF-8. */
static int32_t
intern(StrTab *t, const char *p, uint32_t n)
{
    uint64_t h = hash_bytes(p, n);
    if (t->slots != NULL) {
        uint32_t i = (uint32_t)h & t->mask;
        for (;;) {
            uint32_t s = t->slots[i];
            if (s == 0) break;
            int32_t id = (int32_t)s - 1;
            if (t->hashes[id] == h && t->ents[id].len == n && memcmp(str_ptr(t, id), p, n) == 0)
                return id;
            i = (i + 1) & t->mask;
        }
    }
    if (!utf8_ok((const unsigned char *)p, n)) return -2;
    if (t->n == t->cap) {
        int32_t cap = t->cap ? t->cap * 2 : 64;
        StrEnt *e = PyMem_Realloc(t->ents, (size_t)cap * sizeof(StrEnt));
        if (e == NULL) { PyErr_NoMemory(); return -1; }
        t->ents = e;
        uint64_t *hs = PyMem_Realloc(t->hashes, (size_t)cap * sizeof(uint64_t));
        if (hs == NULL) { PyErr_NoMemory(); return -1; }
        t->hashes = hs;
        t->cap = cap;
    }
    if (t->alen + n > t->acap) {
        size_t cap = t->acap ? t->acap : 4096;
        while (cap < t->alen + n) cap *= 2;
        char *a = PyMem_Realloc(t->arena, cap);
        if (a == NULL) { PyErr_NoMemory(); return -1; }
        t->arena = a;
        t->acap = cap;
    }
    if (t->slots == NULL || ((uint32_t)t->n + 1) * 2 > t->mask + 1) {
        uint32_t cap = t->slots ? (t->mask + 1) * 2 : 256;
        uint32_t *slots = PyMem_Calloc(cap, sizeof(uint32_t));
        if (slots == NULL) { PyErr_NoMemory(); return -1; }
        for (int32_t id = 0; id < t->n; id++) {
            uint32_t i = (uint32_t)t->hashes[id] & (cap - 1);
            while (slots[i]) i = (i + 1) & (cap - 1);
            slots[i] = (uint32_t)id + 1;
        }
        PyMem_Free(t->slots);
        t->slots = slots;
        t->mask = cap - 1;
    }
    int32_t id = t->n++;
    memcpy(t->arena + t->alen, p, n);
    t->ents[id].off = t->alen;
    t->ents[id].len = n;
    t->hashes[id] = h;
    t->alen += n;
    uint32_t i = (uint32_t)h & t->mask;
    while (t->slots[i]) i = (i + 1) & t->mask;
    t->slots[i] = (uint32_t)id + 1;
    return id;
}

/* Compare two interned strings (code point order: UTF-8 byte order). */
static int
str_cmp(const StrTab *t, int32_t a, int32_t b)
{
    uint32_t la = str_len(t, a), lb = str_len(t, b);
    int c = memcmp(str_ptr(t, a), str_ptr(t, b), la < lb ? la : lb);
    if (c) return c;
    return la < lb ? -1 : la > lb;
}

/* ---------------------------------------------------------------------------------------- */
/* the kernel's state                                                                       */

typedef struct {
    int32_t prim, site, func;
    int64_t acq, contended, failed, timeouts, restored, max_depth;
    I64Vec waits, holds;
    Map tids;
} Site;

typedef struct { int32_t prim; int32_t site; /* index into sites */ } HeldEnt;

/* One acquire or release, as deferred (byte ranges) or replayed. */
typedef struct {
    uint8_t op; /* 0 acquire, 1 release */
    uint8_t ok, contended, restored, blocking_false, has_depth, has_wait, has_hold;
    uint8_t has_blocked; /* blocked_by: only the trace reads it */
    uint8_t saved;       /* a release with saved_depth (a condition wait's): the trace's */
    int32_t prim, site, func; /* site: interned (UNKNOWN_ID for none), func NONE_ID for none */
    int64_t tid, ts, depth, wait, hold, blocked;
} Rec;

/* What the Perfetto trace keeps per primitive (see trace.py for what is drawn). */
typedef struct {
    PyObject *label; /* bytes: the JSON string of its name, or NULL (its id) */
    int has_rel, has_pending;
    int64_t rel_ts, rel_tid;             /* its last release to depth 0 */
    int64_t p_tid, p_ts, p_wait;         /* a contended acquire still without its hand-off */
    I64Vec dts, dd;                      /* waiting-thread counter: (ts, +1/-1) */
} PrimTrace;

typedef struct {
    int64_t tid;
    HeldEnt *held; int32_t nheld, capheld;
    Rec *recs; int32_t nrecs, caprecs;
    int switched;
    int active; /* has a held table (Python: a key in self.held) */
} Thread;

typedef struct {
    int32_t a, b;
    int64_t count;
    int nsites;
    int32_t sa[MAX_EXAMPLES], sb[MAX_EXAMPLES];
    int64_t sn[MAX_EXAMPLES];
    Map tids;
    int gates_set;
    int32_t *gates; int32_t ngates;
} Edge;

typedef struct { Map map; int64_t (*cells)[2]; int32_t n, cap; } Timeline;

typedef struct {
    PyObject_HEAD
    StrTab strs;
    Site *sites; int32_t nsites, capsites; Map site_map;
    Thread *threads; int32_t nthreads, capthreads; Map thread_map;
    Edge *edges; int32_t nedges, capedges; Map edge_map;
    Timeline *tl; int32_t captl; /* indexed by prim id */
    int shift;
    int defer;
    int32_t defer_events; /* per thread, in defer mode */
    int64_t ts_min, ts_max; int has_ts;
    int64_t lines, events, acquires, releases;
    int32_t last_thread; int64_t last_tid;
    /* the Perfetto trace, when trace_start was called */
    int tracing;
    int64_t trace_pid, trace_offset, next_id;
    char *tbuf; size_t tlen, tcap;
    PrimTrace *pt; int32_t cappt;
    PyObject *cond_cb; /* on_cond(what, tid, lock, ts): a condition wait's lock, for the trace */
    int8_t *plain; int32_t ncache; /* per string: 1 written as is in JSON, 0 escaped, -1 ? */
    /* Condition events parsed here and handed over as arguments (`conds_start`): the
     * Scanner's cond_wait(tid, prim, site), cond_wake(tid, prim, ts, notified, waited_ns, pid)
     * and notify(tid, prim, ts, waiters, site); how many of each (cond_wait, cond_wake,
     * notify); each string's Python object, made once (by id). */
    PyObject *on_wait, *on_wake, *on_notify;
    int64_t nconds[3];
    PyObject **objs; int32_t nobjs;
} Kernel;

static int32_t
site_get(Kernel *k, int32_t prim, int32_t site, const char *func, uint32_t flen)
{
    uint64_t key = ((uint64_t)(uint32_t)prim << 32) | (uint32_t)site;
    int32_t i = map_get(&k->site_map, key);
    if (i >= 0) {
        Site *s = &k->sites[i];
        if (func != NULL) {
            if (s->func == NONE_ID) {
                int32_t f = intern(&k->strs, func, flen);
                if (f < 0) return f;
                s->func = f;
            } else {
                uint32_t sl = str_len(&k->strs, s->func);
                if (!(sl == flen && memcmp(str_ptr(&k->strs, s->func), func, flen) == 0)) {
                    int c = memcmp(func, str_ptr(&k->strs, s->func), flen < sl ? flen : sl);
                    if (c < 0 || (c == 0 && flen < sl)) {
                        int32_t f = intern(&k->strs, func, flen);
                        if (f < 0) return f;
                        s->func = f;
                    }
                }
            }
        }
        return i;
    }
    int32_t f = NONE_ID;
    if (func != NULL) {
        f = intern(&k->strs, func, flen);
        if (f < 0) return f;
    }
    if (k->nsites == k->capsites) {
        int32_t cap = k->capsites ? k->capsites * 2 : 64;
        Site *s = PyMem_Realloc(k->sites, (size_t)cap * sizeof(Site));
        if (s == NULL) { PyErr_NoMemory(); return -1; }
        k->sites = s;
        k->capsites = cap;
    }
    i = k->nsites;
    Site *s = &k->sites[i];
    memset(s, 0, sizeof(Site));
    s->prim = prim; s->site = site; s->func = f;
    if (map_put(&k->site_map, key, i) < 0) return -1;
    k->nsites++;
    return i;
}

static Thread *
thread_get(Kernel *k, int64_t tid)
{
    if (k->last_thread >= 0 && k->last_tid == tid) return &k->threads[k->last_thread];
    int32_t i = map_get(&k->thread_map, (uint64_t)tid);
    if (i < 0) {
        if (k->nthreads == k->capthreads) {
            int32_t cap = k->capthreads ? k->capthreads * 2 : 16;
            Thread *t = PyMem_Realloc(k->threads, (size_t)cap * sizeof(Thread));
            if (t == NULL) { PyErr_NoMemory(); return NULL; }
            k->threads = t;
            k->capthreads = cap;
        }
        i = k->nthreads;
        memset(&k->threads[i], 0, sizeof(Thread));
        k->threads[i].tid = tid;
        if (map_put(&k->thread_map, (uint64_t)tid, i) < 0) return NULL;
        k->nthreads++;
    }
    k->last_thread = i;
    k->last_tid = tid;
    return &k->threads[i];
}

static int
held_find(const Thread *t, int32_t prim)
{
    for (int32_t j = 0; j < t->nheld; j++)
        if (t->held[j].prim == prim) return j;
    return -1;
}

static int
held_push(Thread *t, int32_t prim, int32_t site)
{
    if (t->nheld == t->capheld) {
        int32_t cap = t->capheld ? t->capheld * 2 : 4;
        HeldEnt *h = PyMem_Realloc(t->held, (size_t)cap * sizeof(HeldEnt));
        if (h == NULL) { PyErr_NoMemory(); return -1; }
        t->held = h;
        t->capheld = cap;
    }
    t->held[t->nheld].prim = prim;
    t->held[t->nheld].site = site;
    t->nheld++;
    return 0;
}

static void
held_remove(Thread *t, int j)
{
    memmove(&t->held[j], &t->held[j + 1], (size_t)(t->nheld - j - 1) * sizeof(HeldEnt));
    t->nheld--;
}

/* Every timeline one step coarser (buckets twice as wide). */
static int
tl_rebin(Kernel *k)
{
    for (int32_t p = 0; p < k->captl; p++) {
        Timeline *t = &k->tl[p];
        if (t->n == 0) continue;
        Map nm = {0};
        int64_t (*cells)[2] = PyMem_Malloc((size_t)t->n * sizeof(*cells));
        if (cells == NULL) { PyErr_NoMemory(); return -1; }
        int32_t n = 0;
        for (uint32_t s = 0; s <= t->map.mask; s++) {
            int32_t v = t->map.vals[s];
            if (v < 0) continue;
            int64_t b = ((int64_t)t->map.keys[s]) >> 1;
            int32_t j = map_get(&nm, (uint64_t)b);
            if (j < 0) {
                if (map_put(&nm, (uint64_t)b, n) < 0) { PyMem_Free(cells); return -1; }
                cells[n][0] = t->cells[v][0];
                cells[n][1] = t->cells[v][1];
                n++;
            } else {
                cells[j][0] += t->cells[v][0];
                cells[j][1] += t->cells[v][1];
            }
        }
        map_free(&t->map);
        PyMem_Free(t->cells);
        t->map = nm;
        t->cells = cells;
        t->n = n;
        t->cap = n;
    }
    k->shift++;
    return 0;
}

static int
tl_coarsen(Kernel *k)
{
    for (;;) {
        int over = 0;
        for (int32_t p = 0; p < k->captl; p++)
            if (k->tl[p].n > TIMELINE_MAX_BUCKETS) { over = 1; break; }
        if (!over) return 0;
        if (tl_rebin(k) < 0) return -1;
    }
}

/* Add (n waits, w ns) to bucket b of timeline t. */
static int
tl_cell(Timeline *t, int64_t b, int64_t n, int64_t w)
{
    int32_t j = map_get(&t->map, (uint64_t)b);
    if (j >= 0) {
        t->cells[j][0] += n;
        t->cells[j][1] += w;
        return 0;
    }
    if (t->n == t->cap) {
        int32_t cap = t->cap ? t->cap * 2 : 8;
        int64_t (*c)[2] = PyMem_Realloc(t->cells, (size_t)cap * sizeof(*c));
        if (c == NULL) { PyErr_NoMemory(); return -1; }
        t->cells = c;
        t->cap = cap;
    }
    t->cells[t->n][0] = n;
    t->cells[t->n][1] = w;
    if (map_put(&t->map, (uint64_t)b, t->n) < 0) return -1;
    t->n++;
    return 0;
}

/* A contended wait that ended at ts on the timeline: counted in the bucket where it ended, its
 * time spread over the buckets it covers; a wait longer than the timeline keeps coarsens it
 * first (as kernel.Kernel._tl: the same cells, whatever the order of coarsening). */
static int
tl_add(Kernel *k, int32_t prim, int64_t ts, int64_t wait)
{
    if (prim >= k->captl) {
        int32_t cap = k->captl ? k->captl : 64;
        while (cap <= prim) cap *= 2;
        Timeline *t = PyMem_Realloc(k->tl, (size_t)cap * sizeof(Timeline));
        if (t == NULL) { PyErr_NoMemory(); return -1; }
        memset(t + k->captl, 0, (size_t)(cap - k->captl) * sizeof(Timeline));
        k->tl = t;
        k->captl = cap;
    }
    int64_t start = wait > 0 ? ts - wait : ts;
    while ((ts >> k->shift) - (start >> k->shift) >= TIMELINE_MAX_BUCKETS)
        if (tl_rebin(k) < 0) return -1;
    Timeline *t = &k->tl[prim];
    int64_t last = ts >> k->shift;
    int64_t at = start;
    for (int64_t b = start >> k->shift; b <= last; b++) {
        int64_t edge = b == last ? ts : (b + 1) << k->shift;
        if (tl_cell(t, b, b == last, edge - at) < 0) return -1;
        at = edge;
    }
    if (t->n > TIMELINE_MAX_BUCKETS) return tl_coarsen(k);
    return 0;
}

/* Is site pair (a1, b1) smaller than (a2, b2)? */
static int
pair_less(const StrTab *s, int32_t a1, int32_t b1, int32_t a2, int32_t b2)
{
    int c = a1 == a2 ? 0 : str_cmp(s, a1, a2);
    if (c) return c < 0;
    return b1 != b2 && str_cmp(s, b1, b2) < 0;
}

static int
edge_add_sites(Kernel *k, Edge *e, int32_t sa, int32_t sb, int64_t n)
{
    for (int j = 0; j < e->nsites; j++)
        if (e->sa[j] == sa && e->sb[j] == sb) { e->sn[j] += n; return 0; }
    if (e->nsites < MAX_EXAMPLES) {
        e->sa[e->nsites] = sa; e->sb[e->nsites] = sb; e->sn[e->nsites] = n;
        e->nsites++;
        return 0;
    }
    int worst = 0;
    for (int j = 1; j < e->nsites; j++)
        if (pair_less(&k->strs, e->sa[worst], e->sb[worst], e->sa[j], e->sb[j])) worst = j;
    if (pair_less(&k->strs, sa, sb, e->sa[worst], e->sb[worst])) {
        e->sa[worst] = sa; e->sb[worst] = sb; e->sn[worst] = n;
    }
    return 0;
}

/* Edges held -> prim (acquired at site index si) for thread t. */
static int
add_edges(Kernel *k, Thread *t, int32_t prim, int32_t si, int64_t tid)
{
    int32_t site_b = k->sites[si].site;
    for (int32_t j = 0; j < t->nheld; j++) {
        int32_t a = t->held[j].prim;
        uint64_t key = ((uint64_t)(uint32_t)a << 32) | (uint32_t)prim;
        int32_t ei = map_get(&k->edge_map, key);
        if (ei < 0) {
            if (k->nedges == k->capedges) {
                int32_t cap = k->capedges ? k->capedges * 2 : 32;
                Edge *e = PyMem_Realloc(k->edges, (size_t)cap * sizeof(Edge));
                if (e == NULL) { PyErr_NoMemory(); return -1; }
                k->edges = e;
                k->capedges = cap;
            }
            ei = k->nedges;
            memset(&k->edges[ei], 0, sizeof(Edge));
            k->edges[ei].a = a;
            k->edges[ei].b = prim;
            if (map_put(&k->edge_map, key, ei) < 0) return -1;
            k->nedges++;
        }
        Edge *e = &k->edges[ei];
        e->count++;
        if (edge_add_sites(k, e, k->sites[t->held[j].site].site, site_b, 1) < 0) return -1;
        if (set_add(&e->tids, tid) < 0) return -1;
        if (!e->gates_set) {
            e->gates_set = 1;
            if (t->nheld > 1) {
                e->gates = PyMem_Malloc((size_t)t->nheld * sizeof(int32_t));
                if (e->gates == NULL) { PyErr_NoMemory(); return -1; }
                for (int32_t g = 0; g < t->nheld; g++)
                    if (t->held[g].prim != a) e->gates[e->ngates++] = t->held[g].prim;
            }
        } else if (e->ngates) {
            int32_t w = 0;
            for (int32_t g = 0; g < e->ngates; g++) {
                int32_t x = e->gates[g];
                if (x != a && held_find(t, x) >= 0) e->gates[w++] = x;
            }
            e->ngates = w;
        }
    }
    return 0;
}

/* ---- the trace: JSON text appended to tbuf (format: trace.py) ---- */

static int
tb_reserve(Kernel *k, size_t n)
{
    if (k->tlen + n <= k->tcap) return 0;
    size_t cap = k->tcap ? k->tcap : 1 << 16;
    while (cap < k->tlen + n) cap *= 2;
    char *b = PyMem_Realloc(k->tbuf, cap);
    if (b == NULL) { PyErr_NoMemory(); return -1; }
    k->tbuf = b;
    k->tcap = cap;
    return 0;
}

static int
tb_put(Kernel *k, const char *s, size_t n)
{
    if (tb_reserve(k, n) < 0) return -1;
    memcpy(k->tbuf + k->tlen, s, n);
    k->tlen += n;
    return 0;
}

#define TB_LIT(k, s) tb_put((k), (s), sizeof(s) - 1)

/* Decimal digits of v, written backwards from end; returns the first. */
static inline char *
digits(char *end, uint64_t v)
{
    do { *--end = (char)('0' + v % 10); v /= 10; } while (v);
    return end;
}

static int
tb_int(Kernel *k, int64_t v)
{
    char tmp[24], *e = tmp + sizeof tmp;
    uint64_t a = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
    char *p = digits(e, a);
    if (v < 0) *--p = '-';
    return tb_put(k, p, (size_t)(e - p));
}

/* Nanoseconds as microseconds, exactly: "12.345", "-0.001". */
static int
tb_us(Kernel *k, int64_t ns)
{
    char tmp[32], *e = tmp + sizeof tmp;
    uint64_t a = ns < 0 ? (uint64_t)0 - (uint64_t)ns : (uint64_t)ns;
    uint64_t frac = a % 1000;
    e[-1] = (char)('0' + frac % 10);
    e[-2] = (char)('0' + frac / 10 % 10);
    e[-3] = (char)('0' + frac / 100);
    e[-4] = '.';
    char *p = digits(e - 4, a / 1000);
    if (ns < 0) *--p = '-';
    return tb_put(k, p, (size_t)(e - p));
}

/* An interned string as a JSON string (escaped as json.dumps(ensure_ascii=False) would). */
static int
tb_str(Kernel *k, int32_t id)
{
    const char *p = str_ptr(&k->strs, id);
    uint32_t n = str_len(&k->strs, id);
    if (id >= k->ncache) {
        int32_t cap = k->ncache ? k->ncache : 256;
        while (cap <= id) cap *= 2;
        int8_t *c = PyMem_Realloc(k->plain, (size_t)cap);
        if (c == NULL) { PyErr_NoMemory(); return -1; }
        memset(c + k->ncache, -1, (size_t)(cap - k->ncache));
        k->plain = c;
        k->ncache = cap;
    }
    if (k->plain[id] < 0) {
        k->plain[id] = 1;
        for (uint32_t i = 0; i < n; i++) {
            unsigned char c = (unsigned char)p[i];
            if (c == '"' || c == '\\' || c < 0x20) { k->plain[id] = 0; break; }
        }
    }
    if (k->plain[id]) {
        if (tb_reserve(k, (size_t)n + 2) < 0) return -1;
        char *o = k->tbuf + k->tlen;
        *o = '"';
        memcpy(o + 1, p, n);
        o[n + 1] = '"';
        k->tlen += (size_t)n + 2;
        return 0;
    }
    if (tb_reserve(k, (size_t)n * 6 + 2) < 0) return -1;
    char *o = k->tbuf + k->tlen;
    *o++ = '"';
    for (uint32_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)p[i];
        if (c == '"' || c == '\\') { *o++ = '\\'; *o++ = (char)c; }
        else if (c == '\n') { *o++ = '\\'; *o++ = 'n'; }
        else if (c == '\r') { *o++ = '\\'; *o++ = 'r'; }
        else if (c == '\t') { *o++ = '\\'; *o++ = 't'; }
        else if (c == '\b') { *o++ = '\\'; *o++ = 'b'; }
        else if (c == '\f') { *o++ = '\\'; *o++ = 'f'; }
        else if (c < 0x20) { o += sprintf(o, "\\u%04x", c); }
        else *o++ = (char)c;
    }
    *o++ = '"';
    k->tlen = (size_t)(o - k->tbuf);
    return 0;
}

static PrimTrace *
prim_trace(Kernel *k, int32_t prim)
{
    if (prim >= k->cappt) {
        int32_t cap = k->cappt ? k->cappt : 64;
        while (cap <= prim) cap *= 2;
        PrimTrace *t = PyMem_Realloc(k->pt, (size_t)cap * sizeof(PrimTrace));
        if (t == NULL) { PyErr_NoMemory(); return NULL; }
        memset(t + k->cappt, 0, (size_t)(cap - k->cappt) * sizeof(PrimTrace));
        k->pt = t;
        k->cappt = cap;
    }
    return &k->pt[prim];
}

static int
tb_label(Kernel *k, int32_t prim, const char *prefix, size_t plen)
{
    PrimTrace *t = prim_trace(k, prim);
    if (t == NULL) return -1;
    if (t->label == NULL) {
        if (plen == 0) return tb_str(k, prim);
        /* "wait 500.1": the prefix inside the string */
        if (TB_LIT(k, "\"") < 0 || tb_put(k, prefix, plen) < 0) return -1;
        size_t mark = k->tlen;
        if (tb_str(k, prim) < 0) return -1;
        memmove(k->tbuf + mark, k->tbuf + mark + 1, k->tlen - mark - 1);
        k->tlen--;
        return 0;
    }
    const char *l = PyBytes_AS_STRING(t->label);
    Py_ssize_t n = PyBytes_GET_SIZE(t->label);
    if (plen == 0) return tb_put(k, l, (size_t)n);
    if (TB_LIT(k, "\"") < 0 || tb_put(k, prefix, plen) < 0) return -1;
    return tb_put(k, l + 1, (size_t)n - 1);
}

/* ,\n{"ph":"s","id":ID,"name":"handoff","cat":"handoff","pid":P,"tid":T,"ts":U} (and "f") */
static int
tb_flow(Kernel *k, char ph, int64_t id, int64_t tid, int64_t ts)
{
    if (TB_LIT(k, ",\n{\"ph\":\"") < 0 || tb_put(k, &ph, 1) < 0
        || TB_LIT(k, "\",\"id\":") < 0 || tb_int(k, id) < 0
        || TB_LIT(k, ",\"name\":\"handoff\",\"cat\":\"handoff\",\"pid\":") < 0
        || tb_int(k, k->trace_pid) < 0 || TB_LIT(k, ",\"tid\":") < 0 || tb_int(k, tid) < 0
        || TB_LIT(k, ",\"ts\":") < 0 || tb_us(k, ts + k->trace_offset) < 0)
        return -1;
    if (ph == 'f' && TB_LIT(k, ",\"bp\":\"e\"") < 0) return -1;
    return TB_LIT(k, "}");
}

static int
trace_handoff(Kernel *k, int64_t rel_tid, int64_t rel_ts, int64_t tid, int64_t ts)
{
    int64_t id = ++k->next_id;
    if (tb_flow(k, 's', id, rel_tid, rel_ts - 1) < 0) return -1;
    return tb_flow(k, 'f', id, tid, ts - 1);
}

/* A contended acquire: its wait slice, the counter, the hand-off flow. */
static int
trace_wait(Kernel *k, const Rec *r)
{
    PrimTrace *t = prim_trace(k, r->prim);
    if (t == NULL) return -1;
    int64_t start = r->ts - r->wait;
    if (TB_LIT(k, ",\n{\"ph\":\"X\",\"name\":") < 0 || tb_label(k, r->prim, "wait ", 5) < 0
        || TB_LIT(k, ",\"cat\":\"wait\",\"pid\":") < 0 || tb_int(k, k->trace_pid) < 0
        || TB_LIT(k, ",\"tid\":") < 0 || tb_int(k, r->tid) < 0
        || TB_LIT(k, ",\"ts\":") < 0 || tb_us(k, start + k->trace_offset) < 0
        || TB_LIT(k, ",\"dur\":") < 0 || tb_us(k, r->wait) < 0
        || TB_LIT(k, ",\"args\":{\"site\":") < 0 || tb_str(k, r->site) < 0)
        return -1;
    if (r->has_blocked && (TB_LIT(k, ",\"blocked_by\":") < 0 || tb_int(k, r->blocked) < 0))
        return -1;
    if (TB_LIT(k, "}}") < 0) return -1;
    t = &k->pt[r->prim];
    if (vec_push(&t->dts, start) < 0 || vec_push(&t->dd, 1) < 0 || vec_push(&t->dts, r->ts) < 0
        || vec_push(&t->dd, -1) < 0)
        return -1;
    if (t->has_rel && t->rel_tid != r->tid && start - 1 <= t->rel_ts && t->rel_ts <= r->ts) {
        t->has_pending = 0;
        return trace_handoff(k, t->rel_tid, t->rel_ts, r->tid, r->ts);
    }
    t->has_pending = 1;
    t->p_tid = r->tid;
    t->p_ts = r->ts;
    t->p_wait = r->wait;
    return 0;
}

/* A release to depth 0: its hold slice (an async one when released out of LIFO order), and
 * the hand-off to a contended acquire written before it. */
static int
trace_release(Kernel *k, const Rec *r, int32_t si, int lifo)
{
    PrimTrace *t = prim_trace(k, r->prim);
    if (t == NULL) return -1;
    if (r->has_hold) {
        int64_t start = r->ts - r->hold;
        if (lifo) {
            if (TB_LIT(k, ",\n{\"ph\":\"X\",\"name\":") < 0 || tb_label(k, r->prim, "", 0) < 0
                || TB_LIT(k, ",\"cat\":\"hold\",\"pid\":") < 0 || tb_int(k, k->trace_pid) < 0
                || TB_LIT(k, ",\"tid\":") < 0 || tb_int(k, r->tid) < 0
                || TB_LIT(k, ",\"ts\":") < 0 || tb_us(k, start + k->trace_offset) < 0
                || TB_LIT(k, ",\"dur\":") < 0 || tb_us(k, r->hold) < 0)
                return -1;
        } else {
            int64_t id = ++k->next_id;
            for (int e = 0; e < 2; e++) {
                if (TB_LIT(k, ",\n{\"ph\":") < 0 || tb_put(k, e ? "\"e\"" : "\"b\"", 3) < 0
                    || TB_LIT(k, ",\"id\":") < 0 || tb_int(k, id) < 0
                    || TB_LIT(k, ",\"name\":") < 0 || tb_label(k, r->prim, "", 0) < 0
                    || TB_LIT(k, ",\"cat\":\"hold\",\"pid\":") < 0
                    || tb_int(k, k->trace_pid) < 0 || TB_LIT(k, ",\"tid\":") < 0
                    || tb_int(k, r->tid) < 0 || TB_LIT(k, ",\"ts\":") < 0
                    || tb_us(k, (e ? r->ts : start) + k->trace_offset) < 0)
                    return -1;
                if (e == 0 && TB_LIT(k, "}") < 0) return -1;
            }
        }
        if (TB_LIT(k, ",\"args\":{") < 0) return -1;
        if (si >= 0) {
            if (TB_LIT(k, "\"site\":") < 0 || tb_str(k, k->sites[si].site) < 0
                || TB_LIT(k, ",") < 0)
                return -1;
        }
        if (TB_LIT(k, "\"prim\":") < 0 || tb_str(k, r->prim) < 0 || TB_LIT(k, "}}") < 0)
            return -1;
    }
    t = &k->pt[r->prim];
    t->has_rel = 1;
    t->rel_ts = r->ts;
    t->rel_tid = r->tid;
    if (t->has_pending && t->p_tid != r->tid && t->p_ts - t->p_wait - 1 <= r->ts
        && r->ts <= t->p_ts) {
        t->has_pending = 0;
        return trace_handoff(k, r->tid, r->ts, t->p_tid, t->p_ts);
    }
    return 0;
}

/* Tell the trace that a condition wait released (what 0) or got back (what 1) its lock. */
static int
trace_cond(Kernel *k, int what, int64_t tid, int32_t prim, int64_t ts)
{
    if (k->cond_cb == NULL) return 0;
    PyObject *p = PyUnicode_DecodeUTF8(str_ptr(&k->strs, prim), str_len(&k->strs, prim), NULL);
    if (p == NULL) return -1;
    PyObject *res = PyObject_CallFunction(k->cond_cb, "iLNL", what, (long long)tid, p,
                                          (long long)ts);
    k->last_thread = -1;
    if (res == NULL) return -1;
    Py_DECREF(res);
    return 0;
}

/* Apply one event (in its thread's order). Returns 0 or -1 (exception set). */
static int
apply(Kernel *k, const Rec *r, const char *func, uint32_t flen)
{
    if (r->op == 0) {
        int32_t si;
        if (func != NULL) si = site_get(k, r->prim, r->site, func, flen);
        else if (r->func != NONE_ID)
            si = site_get(k, r->prim, r->site, str_ptr(&k->strs, r->func),
                          str_len(&k->strs, r->func));
        else si = site_get(k, r->prim, r->site, NULL, 0);
        if (si < 0) return -1;
        if (set_add(&k->sites[si].tids, r->tid) < 0) return -1;
        if (r->contended) {
            if (vec_push(&k->sites[si].waits, r->wait) < 0) return -1;
            k->sites[si].contended++;
            if (tl_add(k, r->prim, r->ts, r->wait) < 0) return -1;
            if (k->tracing && r->wait > 0 && trace_wait(k, r) < 0) return -1;
        }
        if (r->ok) {
            Site *s = &k->sites[si];
            s->acq++;
            if (r->depth > s->max_depth) s->max_depth = r->depth;
            Thread *t = thread_get(k, r->tid);
            if (t == NULL) return -1;
            t->active = 1;
            if (held_find(t, r->prim) < 0) {
                /* a try (blocking false, or timeout 0) cannot wait: no edge into it */
                if (t->nheld && !r->blocking_false && add_edges(k, t, r->prim, si, r->tid) < 0)
                    return -1;
                if (held_push(t, r->prim, si) < 0) return -1;
            }
            if (r->restored) {
                k->sites[si].restored++;
                if (k->tracing && trace_cond(k, 1, r->tid, r->prim, r->ts - r->wait) < 0)
                    return -1;
            }
        } else {
            k->sites[si].failed++;
            if (!r->blocking_false) k->sites[si].timeouts++;
        }
        return 0;
    }
    if (r->depth != 0) return 0;
    Thread *t = thread_get(k, r->tid);
    if (t == NULL) return -1;
    t->active = 1;
    int j = held_find(t, r->prim);
    int32_t si = -1;
    int lifo = j < 0 || j == t->nheld - 1;
    if (j >= 0) {
        si = t->held[j].site;
        held_remove(t, j);
    }
    if (k->tracing && trace_release(k, r, si, lifo) < 0) return -1;
    if (k->tracing && r->saved && trace_cond(k, 0, r->tid, r->prim, r->ts) < 0) return -1;
    if (r->has_hold) {
        if (si < 0) {
            si = site_get(k, r->prim, UNKNOWN_ID, NULL, 0);
            if (si < 0) return -1;
        }
        if (vec_push(&k->sites[si].holds, r->hold) < 0) return -1;
    }
    return 0;
}

/* The held state from empty after a thread's records (state only), as site indices. */
static int
simulate_into(Kernel *k, Thread *t)
{
    t->nheld = 0;
    for (int32_t i = 0; i < t->nrecs; i++) {
        const Rec *r = &t->recs[i];
        if (r->op == 0) {
            if (r->ok && held_find(t, r->prim) < 0) {
                int32_t si = site_get(k, r->prim, r->site, NULL, 0);
                if (si < 0 || held_push(t, r->prim, si) < 0) return -1;
            }
        } else if (r->depth == 0) {
            int j = held_find(t, r->prim);
            if (j >= 0) held_remove(t, j);
        }
    }
    return 0;
}

static inline void
seen(Kernel *k, int64_t ts)
{
    if (!k->has_ts) { k->ts_min = k->ts_max = ts; k->has_ts = 1; return; }
    if (ts < k->ts_min) k->ts_min = ts;
    if (ts > k->ts_max) k->ts_max = ts;
}

/* A usable event received: defer it, or apply it. */
static int
receive(Kernel *k, Rec *r, const char *func, uint32_t flen)
{
    seen(k, r->ts);
    if (!k->defer) return apply(k, r, func, flen);
    Thread *t = thread_get(k, r->tid);
    if (t == NULL) return -1;
    if (t->switched) return apply(k, r, func, flen);
    if (func != NULL) {
        int32_t f = intern(&k->strs, func, flen);
        if (f == -1) return -1;
        if (f == -2) { PyErr_SetString(PyExc_ValueError, "func is not valid UTF-8"); return -1; }
        r->func = f;
    }
    if (t->nrecs == t->caprecs) {
        int32_t cap = t->caprecs ? t->caprecs * 2 : 16;
        Rec *rs = PyMem_Realloc(t->recs, (size_t)cap * sizeof(Rec));
        if (rs == NULL) { PyErr_NoMemory(); return -1; }
        t->recs = rs;
        t->caprecs = cap;
    }
    t->recs[t->nrecs++] = *r;
    if (t->nrecs >= k->defer_events) {
        t->switched = 1;
        t->active = 1;
        return simulate_into(k, t);
    }
    return 0;
}

/* ---------------------------------------------------------------------------------------- */
/* parsing one line                                                                         */

typedef struct { const char *p; uint32_t n; int set; /* 0 absent, 1 string, 2 null */ } Str;
#define WOKEN_MAX 32 /* a notify that woke more goes to Python */
typedef struct { int64_t v; int set; /* 0 absent, 1 int, 2 null */ } Int;
typedef struct { int v; int set; /* 0 absent, 1 bool, 2 null */ } Bool;

typedef struct {
    int event; /* 1 acquire, 2 release; with conds: 3 cond_wait, 4 cond_wake, 5 notify */
    int saved; /* saved_depth, not null */
    Int ts, tid, depth, wait, hold, blocked;
    Int pid, waiters, waited, reacquire; /* condition events' */
    Str prim, site, func, lock;
    Bool ok, contended, restored, blocking;
    Bool notified;
    int try_zero; /* timeout 0: a try, read as blocking false (hotdecode.blocking_of) */
    int woken_set; int32_t nwoken; /* a notify's woken threads... */
    int64_t woken[WOKEN_MAX];      /* ...last: parse_line clears what comes before */
} Ev;

#define PUNT 0  /* maybe a usable acquire or release: Python decides */
#define GOOD 1
#define OTHER 2 /* surely another event */

static inline const char *
skip_ws(const char *p, const char *end)
{
    while (p < end && (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n')) p++;
    return p;
}

/* A string starting at p (on the quote): plain (no escape, no control character), returns the
 * position after the closing quote, or NULL. UTF-8 is checked when interned. */
static inline const char *
plain_string(const char *p, const char *end, Str *out)
{
    const char *s = ++p;
    while (p < end) {
        unsigned char c = (unsigned char)*p;
        if (c == '"') {
            out->p = s; out->n = (uint32_t)(p - s); out->set = 1;
            return p + 1;
        }
        if (c == '\\' || c < 0x20) return NULL;
        p++;
    }
    return NULL;
}

static int
hexval(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Any valid JSON string (for values that are skipped). */
static const char *
skip_string(const char *p, const char *end)
{
    p++;
    const char *run = p;
    while (p < end) {
        unsigned char c = (unsigned char)*p;
        if (c == '"') {
            if (!utf8_ok((const unsigned char *)run, (size_t)(p - run))) return NULL;
            return p + 1;
        }
        if (c < 0x20) return NULL;
        if (c == '\\') {
            if (!utf8_ok((const unsigned char *)run, (size_t)(p - run))) return NULL;
            if (p + 1 >= end) return NULL;
            char e = p[1];
            if (e == 'u') {
                if (p + 6 > end) return NULL;
                int v = 0;
                for (int i = 2; i < 6; i++) {
                    int h = hexval(p[i]);
                    if (h < 0) return NULL;
                    v = v * 16 + h;
                }
                if (v >= 0xd800 && v <= 0xdfff) return NULL; /* let Python judge surrogates */
                p += 6;
            } else if (strchr("\"\\/bfnrt", e) != NULL && e != 0) {
                p += 2;
            } else {
                return NULL;
            }
            run = p;
            continue;
        }
        p++;
    }
    return NULL;
}

static const char *
skip_number(const char *p, const char *end)
{
    if (p < end && *p == '-') p++;
    if (p >= end) return NULL;
    if (*p == '0') p++;
    else if (*p >= '1' && *p <= '9') { while (p < end && *p >= '0' && *p <= '9') p++; }
    else return NULL;
    if (p < end && *p == '.') {
        p++;
        if (p >= end || *p < '0' || *p > '9') return NULL;
        while (p < end && *p >= '0' && *p <= '9') p++;
    }
    if (p < end && (*p == 'e' || *p == 'E')) {
        p++;
        if (p < end && (*p == '+' || *p == '-')) p++;
        if (p >= end || *p < '0' || *p > '9') return NULL;
        while (p < end && *p >= '0' && *p <= '9') p++;
    }
    return p;
}

static const char *skip_value(const char *p, const char *end, int depth);

static const char *
skip_container(const char *p, const char *end, int depth, char close, int object)
{
    p = skip_ws(p + 1, end);
    if (p < end && *p == close) return p + 1;
    for (;;) {
        if (object) {
            if (p >= end || *p != '"') return NULL;
            p = skip_string(p, end);
            if (p == NULL) return NULL;
            p = skip_ws(p, end);
            if (p >= end || *p != ':') return NULL;
            p = skip_ws(p + 1, end);
        }
        p = skip_value(p, end, depth + 1);
        if (p == NULL) return NULL;
        p = skip_ws(p, end);
        if (p >= end) return NULL;
        if (*p == close) return p + 1;
        if (*p != ',') return NULL;
        p = skip_ws(p + 1, end);
    }
}

static const char *
skip_value(const char *p, const char *end, int depth)
{
    if (p >= end || depth > 64) return NULL;
    switch (*p) {
    case '"': return skip_string(p, end);
    case '{': return skip_container(p, end, depth, '}', 1);
    case '[': return skip_container(p, end, depth, ']', 0);
    case 't': return (end - p >= 4 && memcmp(p, "true", 4) == 0) ? p + 4 : NULL;
    case 'f': return (end - p >= 5 && memcmp(p, "false", 5) == 0) ? p + 5 : NULL;
    case 'n': return (end - p >= 4 && memcmp(p, "null", 4) == 0) ? p + 4 : NULL;
    default: return skip_number(p, end);
    }
}

/* An integer that fits int64 (no fraction, no exponent), or null. */
static inline const char *
parse_int(const char *p, const char *end, Int *out)
{
    if (p < end && *p == 'n') {
        if (end - p >= 4 && memcmp(p, "null", 4) == 0) { out->set = 2; return p + 4; }
        return NULL;
    }
    int neg = 0;
    if (p < end && *p == '-') { neg = 1; p++; }
    if (p >= end || *p < '0' || *p > '9') return NULL;
    if (*p == '0' && p + 1 < end && p[1] >= '0' && p[1] <= '9') return NULL;
    uint64_t v = 0;
    int digits = 0;
    while (p < end && *p >= '0' && *p <= '9') {
        v = v * 10 + (uint64_t)(*p - '0');
        p++;
        if (++digits > 18) return NULL; /* let Python judge very large values */
    }
    if (p < end && (*p == '.' || *p == 'e' || *p == 'E')) return NULL;
    out->v = neg ? -(int64_t)v : (int64_t)v;
    out->set = 1;
    return p;
}

static inline const char *
parse_bool(const char *p, const char *end, Bool *out)
{
    if (end - p >= 4 && memcmp(p, "true", 4) == 0) { out->v = 1; out->set = 1; return p + 4; }
    if (end - p >= 5 && memcmp(p, "false", 5) == 0) { out->v = 0; out->set = 1; return p + 5; }
    if (end - p >= 4 && memcmp(p, "null", 4) == 0) { out->set = 2; return p + 4; }
    return NULL;
}

static inline const char *
parse_str(const char *p, const char *end, Str *out)
{
    if (p < end && *p == '"') return plain_string(p, end, out);
    if (end - p >= 4 && memcmp(p, "null", 4) == 0) { out->set = 2; return p + 4; }
    return NULL;
}

/* A notify's "woken": a list of at most WOKEN_MAX integers, or null. */
static const char *
parse_woken(const char *p, const char *end, Ev *ev)
{
    if (end - p >= 4 && memcmp(p, "null", 4) == 0) { ev->woken_set = 2; return p + 4; }
    if (p >= end || *p != '[') return NULL;
    p = skip_ws(p + 1, end);
    ev->woken_set = 1;
    if (p < end && *p == ']') return p + 1;
    for (;;) {
        Int v = {0};
        if (ev->nwoken == WOKEN_MAX) return NULL;
        p = parse_int(p, end, &v);
        if (p == NULL || v.set != 1) return NULL;
        ev->woken[ev->nwoken++] = v.v;
        p = skip_ws(p, end);
        if (p < end && *p == ']') return p + 1;
        if (p >= end || *p != ',') return NULL;
        p = skip_ws(p + 1, end);
    }
}

#define KEY(s) (klen == sizeof(s) - 1 && memcmp(key, s, sizeof(s) - 1) == 0)
#define ONCE(f) do { if ((f).set) return PUNT; } while (0)

/* Parse one line; GOOD if it is a plain, usable acquire or release (hotdecode's rule), or,
 * with ``conds``, a plain condition event whose fields the Scanner's handlers take as they are
 * (see conds_take). */
static int
parse_line(const char *p, const char *end, Ev *ev, int conds)
{
    memset(ev, 0, offsetof(Ev, woken)); /* (the woken list: filled up to nwoken) */
    p = skip_ws(p, end);
    if (p >= end || *p != '{') return PUNT;
    p = skip_ws(p + 1, end);
    if (p < end && *p == '}') return PUNT;
    int have_event = 0;
    int nkeys = 0; /* keys before this one (a condition event's own keys follow "event") */
    for (;;) {
        if (p >= end || *p != '"') return PUNT;
        const char *key = p + 1;
        const char *q = key;
        int high = 0;
        while (q < end && *q != '"' && *q != '\\') {
            unsigned char c = (unsigned char)*q++;
            if (c < 0x20) return PUNT;
            high |= c & 0x80;
        }
        if (q >= end || *q == '\\') return PUNT;
        size_t klen = (size_t)(q - key);
        if (high && !utf8_ok((const unsigned char *)key, klen)) return PUNT;
        p = skip_ws(q + 1, end);
        if (p >= end || *p != ':') return PUNT;
        p = skip_ws(p + 1, end);
        switch (klen) {
        case 2:
            if (KEY("ts")) { ONCE(ev->ts); p = parse_int(p, end, &ev->ts); goto next; }
            if (KEY("ok")) { ONCE(ev->ok); p = parse_bool(p, end, &ev->ok); goto next; }
            break;
        case 3:
            if (KEY("tid")) { ONCE(ev->tid); p = parse_int(p, end, &ev->tid); goto next; }
            if (KEY("pid") && ev->event > 2) {
                ONCE(ev->pid); p = parse_int(p, end, &ev->pid); goto next;
            }
            break;
        case 4:
            if (KEY("prim")) { ONCE(ev->prim); p = parse_str(p, end, &ev->prim); goto next; }
            if (KEY("site")) { ONCE(ev->site); p = parse_str(p, end, &ev->site); goto next; }
            if (KEY("func")) { ONCE(ev->func); p = parse_str(p, end, &ev->func); goto next; }
            if (KEY("lock") && ev->event > 2) {
                ONCE(ev->lock); p = parse_str(p, end, &ev->lock); goto next;
            }
            break;
        case 5:
            if (KEY("event")) {
                if (have_event) return PUNT;
                have_event = 1;
                Str s = {0};
                p = parse_str(p, end, &s);
                if (p == NULL || s.set != 1) return PUNT;
                if (s.n == 7 && memcmp(s.p, "acquire", 7) == 0) ev->event = 1;
                else if (s.n == 7 && memcmp(s.p, "release", 7) == 0) ev->event = 2;
                else if (!conds || nkeys) return OTHER; /* every other event is Python's */
                else if (s.n == 9 && memcmp(s.p, "cond_wait", 9) == 0) ev->event = 3;
                else if (s.n == 9 && memcmp(s.p, "cond_wake", 9) == 0) ev->event = 4;
                else if (s.n == 6 && memcmp(s.p, "notify", 6) == 0) ev->event = 5;
                else return OTHER;
                goto next;
            }
            if (KEY("depth")) { ONCE(ev->depth); p = parse_int(p, end, &ev->depth); goto next; }
            if (KEY("woken") && ev->event > 2) {
                if (ev->woken_set) return PUNT;
                p = parse_woken(p, end, ev);
                goto next;
            }
            break;
        case 7:
            if (KEY("wait_ns")) { ONCE(ev->wait); p = parse_int(p, end, &ev->wait); goto next; }
            if (KEY("hold_ns")) { ONCE(ev->hold); p = parse_int(p, end, &ev->hold); goto next; }
            if (KEY("waiters") && ev->event > 2) {
                ONCE(ev->waiters); p = parse_int(p, end, &ev->waiters); goto next;
            }
            if (KEY("timeout")) {
                /* only a zero matters; any other value is skipped below */
                if (p < end && *p == '0') {
                    const char *z = p + 1;
                    if (z < end && *z == '.') { z++; while (z < end && *z == '0') z++; }
                    const char *w = skip_ws(z, end);
                    if (w < end && (*w == ',' || *w == '}')) ev->try_zero = 1;
                }
            }
            break;
        case 8:
            if (KEY("restored")) {
                ONCE(ev->restored); p = parse_bool(p, end, &ev->restored); goto next;
            }
            if (KEY("blocking")) {
                ONCE(ev->blocking); p = parse_bool(p, end, &ev->blocking); goto next;
            }
            if (KEY("notified") && ev->event > 2) {
                ONCE(ev->notified); p = parse_bool(p, end, &ev->notified); goto next;
            }
            break;
        case 10:
            if (KEY("blocked_by")) {
                Int b = {0};
                const char *q2 = parse_int(p, end, &b);
                if (q2 != NULL) { ev->blocked = b; p = q2; goto next; }
                break; /* anything else: skipped (only the trace reads it) */
            }
            break;
        case 9:
            if (KEY("contended")) {
                ONCE(ev->contended); p = parse_bool(p, end, &ev->contended); goto next;
            }
            if (KEY("waited_ns") && ev->event > 2) {
                ONCE(ev->waited); p = parse_int(p, end, &ev->waited); goto next;
            }
            break;
        case 12:
            if (KEY("reacquire_ns") && ev->event > 2) {
                ONCE(ev->reacquire); p = parse_int(p, end, &ev->reacquire); goto next;
            }
            break;
        case 11:
            if (KEY("saved_depth")) {
                if (!(end - p >= 4 && memcmp(p, "null", 4) == 0)) ev->saved = 1;
            }
            break;
        default:
            break;
        }
        p = skip_value(p, end, 1);
    next:
        nkeys++;
        if (p == NULL) return PUNT;
        p = skip_ws(p, end);
        if (p >= end) return PUNT;
        if (*p == '}') { p++; break; }
        if (*p != ',') return PUNT;
        p = skip_ws(p + 1, end);
    }
    if (skip_ws(p, end) != end) return PUNT;
    if (!have_event || ev->ts.set != 1 || ev->tid.set != 1 || ev->prim.set != 1) return PUNT;
    if (ev->event > 2) return GOOD; /* its fields' types are checked above: conds_take */
    if (ev->event == 1) {
        if (ev->ok.set != 1 || ev->contended.set != 1) return PUNT;
        if (ev->contended.v && ev->wait.set != 1) return PUNT;
        if (ev->ok.v && ev->depth.set != 1) return PUNT;
    } else if (ev->depth.set != 1) {
        return PUNT;
    }
    return GOOD;
}

/* A parsed line into a record (strings interned). 1 done, 0 punt (bad UTF-8), -1 error. */
static int
to_rec(Kernel *k, const Ev *ev, Rec *r)
{
    memset(r, 0, sizeof(Rec));
    r->op = ev->event == 1 ? 0 : 1;
    r->tid = ev->tid.v;
    r->ts = ev->ts.v;
    r->prim = intern(&k->strs, ev->prim.p, ev->prim.n);
    if (r->prim == -2) return 0;
    if (r->prim < 0) return -1;
    r->func = NONE_ID;
    r->depth = ev->depth.v;
    r->has_depth = ev->depth.set == 1;
    if (r->op == 0) {
        if (ev->site.set == 1 && ev->site.n > 0) {
            r->site = intern(&k->strs, ev->site.p, ev->site.n);
            if (r->site == -2) return 0;
            if (r->site < 0) return -1;
        } else {
            r->site = UNKNOWN_ID;
        }
        if (ev->func.set == 1 && !utf8_ok((const unsigned char *)ev->func.p, ev->func.n)) return 0;
        r->ok = (uint8_t)ev->ok.v;
        r->contended = (uint8_t)ev->contended.v;
        r->wait = ev->wait.set == 1 ? ev->wait.v : 0;
        r->has_wait = ev->wait.set == 1;
        r->restored = ev->restored.set == 1 && ev->restored.v;
        r->blocking_false = (ev->blocking.set == 1 && !ev->blocking.v) || ev->try_zero;
        r->has_blocked = ev->blocked.set == 1;
        r->blocked = ev->blocked.v;
    } else {
        if (ev->site.set == 1 && !utf8_ok((const unsigned char *)ev->site.p, ev->site.n)) return 0;
        if (ev->func.set == 1 && !utf8_ok((const unsigned char *)ev->func.p, ev->func.n)) return 0;
        r->hold = ev->hold.v;
        r->has_hold = ev->hold.set == 1;
        r->saved = (uint8_t)ev->saved;
    }
    return 1;
}

/* ---------------------------------------------------------------------------------------- */
/* Python methods                                                                           */

static PyObject *
Kernel_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"defer", "defer_events", NULL};
    int defer = 0;
    int defer_events = 1024;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "|pi", kwlist, &defer, &defer_events))
        return NULL;
    if (defer_events < 1) {
        PyErr_SetString(PyExc_ValueError, "defer_events must be >= 1");
        return NULL;
    }
    Kernel *k = (Kernel *)type->tp_alloc(type, 0);
    if (k == NULL) return NULL;
    k->shift = TIMELINE_SHIFT;
    k->defer = defer;
    k->defer_events = defer_events;
    k->last_thread = -1;
    if (intern(&k->strs, "?", 1) != UNKNOWN_ID) { Py_DECREF(k); return NULL; }
    return (PyObject *)k;
}

static void
thread_clear(Thread *t)
{
    PyMem_Free(t->held); PyMem_Free(t->recs);
    t->held = NULL; t->recs = NULL; t->nheld = t->capheld = t->nrecs = t->caprecs = 0;
}

static void
Kernel_dealloc(Kernel *k)
{
    PyMem_Free(k->strs.arena); PyMem_Free(k->strs.ents); PyMem_Free(k->strs.slots);
    PyMem_Free(k->strs.hashes);
    for (int32_t i = 0; i < k->nsites; i++) {
        PyMem_Free(k->sites[i].waits.v); PyMem_Free(k->sites[i].holds.v);
        map_free(&k->sites[i].tids);
    }
    PyMem_Free(k->sites); map_free(&k->site_map);
    for (int32_t i = 0; i < k->nthreads; i++) thread_clear(&k->threads[i]);
    PyMem_Free(k->threads); map_free(&k->thread_map);
    for (int32_t i = 0; i < k->nedges; i++) {
        map_free(&k->edges[i].tids); PyMem_Free(k->edges[i].gates);
    }
    PyMem_Free(k->edges); map_free(&k->edge_map);
    for (int32_t i = 0; i < k->captl; i++) { map_free(&k->tl[i].map); PyMem_Free(k->tl[i].cells); }
    PyMem_Free(k->tl);
    for (int32_t i = 0; i < k->cappt; i++) {
        Py_XDECREF(k->pt[i].label);
        PyMem_Free(k->pt[i].dts.v); PyMem_Free(k->pt[i].dd.v);
    }
    PyMem_Free(k->pt);
    PyMem_Free(k->tbuf);
    PyMem_Free(k->plain);
    Py_XDECREF(k->cond_cb);
    Py_XDECREF(k->on_wait); Py_XDECREF(k->on_wake); Py_XDECREF(k->on_notify);
    for (int32_t i = 0; i < k->nobjs; i++) Py_XDECREF(k->objs[i]);
    PyMem_Free(k->objs);
    Py_TYPE(k)->tp_free((PyObject *)k);
}

/* The Python object of an interned string (made once; a new reference). */
static PyObject *
str_obj(Kernel *k, int32_t id)
{
    if (id >= k->nobjs) {
        int32_t n = k->nobjs ? k->nobjs : 64;
        while (n <= id) n *= 2;
        PyObject **objs = PyMem_Realloc(k->objs, (size_t)n * sizeof(PyObject *));
        if (objs == NULL) { PyErr_NoMemory(); return NULL; }
        memset(objs + k->nobjs, 0, (size_t)(n - k->nobjs) * sizeof(PyObject *));
        k->objs = objs;
        k->nobjs = n;
    }
    if (k->objs[id] == NULL) {
        k->objs[id] = PyUnicode_DecodeUTF8(str_ptr(&k->strs, id), str_len(&k->strs, id), NULL);
        if (k->objs[id] == NULL) return NULL;
    }
    return Py_NewRef(k->objs[id]);
}

static PyObject *
int_or_none(const Int *v)
{
    return v->set == 1 ? PyLong_FromLongLong((long long)v->v) : Py_NewRef(Py_None);
}

/* A condition event parsed by parse_line, to the Scanner's handler for it, with its fields as
 * the handler would have read them from the event's dict (a string, int or bool, or None for
 * null or absent; a notify's woken threads as a tuple). 1 done, 0 punt (a string that is not
 * UTF-8), -1 error. */
static int
conds_take(Kernel *k, const Ev *ev)
{
    int32_t prim = intern(&k->strs, ev->prim.p, ev->prim.n);
    if (prim == -2) return 0;
    if (prim < 0) return -1;
    int32_t site = NONE_ID;
    if (ev->site.set == 1) {
        site = intern(&k->strs, ev->site.p, ev->site.n);
        if (site == -2) return 0;
        if (site < 0) return -1;
    }
    int32_t lock = NONE_ID;
    if (ev->event == 3 && ev->lock.set == 1) {
        lock = intern(&k->strs, ev->lock.p, ev->lock.n);
        if (lock == -2) return 0;
        if (lock < 0) return -1;
    }
    PyObject *args[8] = {NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL};
    size_t nargs;
    PyObject *cb;
    args[0] = PyLong_FromLongLong((long long)ev->tid.v);
    args[1] = str_obj(k, prim);
    if (ev->event == 3) { /* cond_wait(tid, prim, site, ts, lock) */
        cb = k->on_wait;
        nargs = 5;
        args[2] = site == NONE_ID ? Py_NewRef(Py_None) : str_obj(k, site);
        args[3] = PyLong_FromLongLong((long long)ev->ts.v);
        args[4] = lock == NONE_ID ? Py_NewRef(Py_None) : str_obj(k, lock);
    } else if (ev->event == 4) {
        /* cond_wake(tid, prim, ts, notified, waited_ns, pid, reacquire_ns, site) */
        cb = k->on_wake;
        nargs = 8;
        args[2] = PyLong_FromLongLong((long long)ev->ts.v);
        args[3] = ev->notified.set == 1 ? PyBool_FromLong(ev->notified.v) : Py_NewRef(Py_None);
        args[4] = int_or_none(&ev->waited);
        args[5] = int_or_none(&ev->pid);
        args[6] = int_or_none(&ev->reacquire);
        args[7] = site == NONE_ID ? Py_NewRef(Py_None) : str_obj(k, site);
    } else { /* notify(tid, prim, ts, waiters, site, woken) */
        cb = k->on_notify;
        nargs = 6;
        args[2] = PyLong_FromLongLong((long long)ev->ts.v);
        args[3] = int_or_none(&ev->waiters);
        args[4] = site == NONE_ID ? Py_NewRef(Py_None) : str_obj(k, site);
        if (ev->woken_set == 1) {
            args[5] = PyTuple_New(ev->nwoken);
            for (int32_t j = 0; args[5] != NULL && j < ev->nwoken; j++) {
                PyObject *w = PyLong_FromLongLong((long long)ev->woken[j]);
                if (w == NULL) { Py_CLEAR(args[5]); break; }
                PyTuple_SET_ITEM(args[5], j, w);
            }
        } else {
            args[5] = Py_NewRef(Py_None);
        }
    }
    PyObject *res = NULL;
    size_t i;
    for (i = 0; i < nargs && args[i] != NULL; i++) {}
    if (i == nargs) res = PyObject_Vectorcall(cb, args, nargs, NULL);
    for (i = 0; i < nargs; i++) Py_XDECREF(args[i]);
    k->last_thread = -1; /* the handler may have changed the threads */
    if (res == NULL) return -1;
    Py_DECREF(res);
    seen(k, ev->ts.v);
    k->nconds[ev->event - 3]++;
    k->events++;
    return 1;
}

/* conds(on_wait, on_wake, on_notify): condition events to these (conds_take) from now on;
 * conds(None, None, None): to on_line again. */
static PyObject *
Kernel_conds(Kernel *k, PyObject *args)
{
    PyObject *w, *x, *n;
    if (!PyArg_ParseTuple(args, "OOO", &w, &x, &n)) return NULL;
    int none = w == Py_None && x == Py_None && n == Py_None;
    if (!none && (!PyCallable_Check(w) || !PyCallable_Check(x) || !PyCallable_Check(n))) {
        PyErr_SetString(PyExc_TypeError, "conds needs three callables, or three Nones");
        return NULL;
    }
    Py_CLEAR(k->on_wait); Py_CLEAR(k->on_wake); Py_CLEAR(k->on_notify);
    if (!none) {
        k->on_wait = Py_NewRef(w); k->on_wake = Py_NewRef(x); k->on_notify = Py_NewRef(n);
    }
    Py_RETURN_NONE;
}

/* scan(data, length, on_line): the whole lines of data[:length]. */
static PyObject *
Kernel_scan(Kernel *k, PyObject *args)
{
    Py_buffer view;
    Py_ssize_t length;
    PyObject *on_line;
    if (!PyArg_ParseTuple(args, "y*nO", &view, &length, &on_line)) return NULL;
    if (length < 0 || length > view.len) {
        PyBuffer_Release(&view);
        PyErr_SetString(PyExc_ValueError, "bad length");
        return NULL;
    }
    const char *p = view.buf, *stop = p + length;
    while (p < stop) {
        const char *nl = memchr(p, '\n', (size_t)(stop - p));
        const char *end = nl ? nl : stop;
        k->lines++;
        const char *q = skip_ws(p, end);
        if (q < end) {
            Ev ev;
            Rec r;
            int done = 0;
            int kind = parse_line(q, end, &ev, k->on_wait != NULL);
            if (kind == GOOD && ev.event > 2) {
                int got = conds_take(k, &ev);
                if (got < 0) goto fail;
                done = got;
            }
            else if (kind == GOOD) {
                int got = to_rec(k, &ev, &r);
                if (got < 0) goto fail;
                if (got == 1) {
                    if (receive(k, &r, ev.func.set == 1 ? ev.func.p : NULL, ev.func.n) < 0)
                        goto fail;
                    k->events++;
                    if (r.op == 0) k->acquires++;
                    else k->releases++;
                    done = 1;
                }
            }
            if (!done) {
                PyObject *raw = PyBytes_FromStringAndSize(p, end - p);
                if (raw == NULL) goto fail;
                PyObject *res = PyObject_CallFunction(on_line, "NLO", raw, (long long)k->lines,
                                                      kind == OTHER ? Py_False : Py_True);
                k->last_thread = -1; /* the callback may have changed the threads */
                if (res == NULL) goto fail;
                Py_DECREF(res);
            }
        }
        p = nl ? nl + 1 : stop;
    }
    PyBuffer_Release(&view);
    Py_RETURN_NONE;
fail:
    PyBuffer_Release(&view);
    return NULL;
}

static int
py_int64(PyObject *o, int64_t *out, const char *what)
{
    long long v = PyLong_AsLongLong(o);
    if (v == -1 && PyErr_Occurred()) return -1;
    (void)what;
    *out = v;
    return 0;
}

/* A str argument as UTF-8 (NULL and no error for None). */
static const char *
py_str(PyObject *o, Py_ssize_t *n)
{
    if (o == Py_None) { *n = 0; return NULL; }
    if (!PyUnicode_Check(o)) { PyErr_SetString(PyExc_TypeError, "expected str"); return NULL; }
    return PyUnicode_AsUTF8AndSize(o, n);
}

static int
intern_obj(Kernel *k, PyObject *o, int32_t *id)
{
    Py_ssize_t n;
    const char *s = py_str(o, &n);
    if (s == NULL) return -1;
    int32_t i = intern(&k->strs, s, (uint32_t)n);
    if (i == -2) { PyErr_SetString(PyExc_ValueError, "not valid UTF-8"); return -1; }
    if (i < 0) return -1;
    *id = i;
    return 0;
}

/* acquire(tid, prim, site, func, ts, ok, depth, contended, wait_ns, restored, blocking) */
static PyObject *
Kernel_acquire(Kernel *k, PyObject *args)
{
    PyObject *tid, *prim, *site, *func, *ts, *ok, *depth, *cont, *wait, *restored, *blocking;
    PyObject *blocked = Py_None;
    if (!PyArg_ParseTuple(args, "OOOOOOOOOOO|O", &tid, &prim, &site, &func, &ts, &ok, &depth,
                          &cont, &wait, &restored, &blocking, &blocked))
        return NULL;
    Rec r;
    memset(&r, 0, sizeof r);
    r.op = 0;
    if (py_int64(tid, &r.tid, "tid") < 0 || py_int64(ts, &r.ts, "ts") < 0) return NULL;
    if (intern_obj(k, prim, &r.prim) < 0) return NULL;
    r.site = UNKNOWN_ID;
    if (site != Py_None && PyObject_IsTrue(site)) {
        if (intern_obj(k, site, &r.site) < 0) return NULL;
    }
    r.func = NONE_ID;
    r.ok = (uint8_t)PyObject_IsTrue(ok);
    r.contended = (uint8_t)PyObject_IsTrue(cont);
    if (depth != Py_None) {
        if (py_int64(depth, &r.depth, "depth") < 0) return NULL;
        r.has_depth = 1;
    }
    if (wait != Py_None) {
        if (py_int64(wait, &r.wait, "wait_ns") < 0) return NULL;
        r.has_wait = 1;
    }
    r.restored = restored != Py_None && PyObject_IsTrue(restored);
    r.blocking_false = blocking == Py_False;
    if (PyLong_CheckExact(blocked)) {
        int overflow = 0;
        long long b = PyLong_AsLongLongAndOverflow(blocked, &overflow);
        if (!overflow && b > -1000000000000000000LL && b < 1000000000000000000LL) {
            r.has_blocked = 1;
            r.blocked = b;
        }
    }
    const char *f = NULL;
    Py_ssize_t flen = 0;
    if (func != Py_None) {
        f = py_str(func, &flen);
        if (f == NULL) return NULL;
    }
    if (receive(k, &r, f, (uint32_t)flen) < 0) return NULL;
    Py_RETURN_NONE;
}

/* release(tid, prim, depth, hold_ns, ts) */
static PyObject *
Kernel_release(Kernel *k, PyObject *args)
{
    PyObject *tid, *prim, *depth, *hold, *ts, *saved = Py_None;
    if (!PyArg_ParseTuple(args, "OOOOO|O", &tid, &prim, &depth, &hold, &ts, &saved))
        return NULL;
    Rec r;
    memset(&r, 0, sizeof r);
    r.op = 1;
    r.func = NONE_ID;
    if (py_int64(tid, &r.tid, "tid") < 0 || py_int64(ts, &r.ts, "ts") < 0
        || py_int64(depth, &r.depth, "depth") < 0)
        return NULL;
    r.has_depth = 1;
    r.saved = saved != Py_None;
    if (intern_obj(k, prim, &r.prim) < 0) return NULL;
    if (hold != Py_None) {
        if (py_int64(hold, &r.hold, "hold_ns") < 0) return NULL;
        r.has_hold = 1;
    }
    if (receive(k, &r, NULL, 0) < 0) return NULL;
    Py_RETURN_NONE;
}

/* apply(record): a record as export() gives them, applied (not deferred, not counted). */
static PyObject *
Kernel_apply(Kernel *k, PyObject *rec)
{
    if (!PyTuple_Check(rec) || PyTuple_GET_SIZE(rec) < 6) {
        PyErr_SetString(PyExc_TypeError, "expected a record tuple");
        return NULL;
    }
    long op = PyLong_AsLong(PyTuple_GET_ITEM(rec, 0));
    if (op == -1 && PyErr_Occurred()) return NULL;
    Rec r;
    memset(&r, 0, sizeof r);
    r.func = NONE_ID;
    if (py_int64(PyTuple_GET_ITEM(rec, 1), &r.tid, "tid") < 0) return NULL;
    if (intern_obj(k, PyTuple_GET_ITEM(rec, 2), &r.prim) < 0) return NULL;
    const char *f = NULL;
    Py_ssize_t flen = 0;
    if (op == 0) {
        if (PyTuple_GET_SIZE(rec) != 12) {
            PyErr_SetString(PyExc_TypeError, "bad acquire record");
            return NULL;
        }
        PyObject *site = PyTuple_GET_ITEM(rec, 3);
        r.site = UNKNOWN_ID;
        if (site != Py_None && PyObject_IsTrue(site) && intern_obj(k, site, &r.site) < 0)
            return NULL;
        PyObject *func = PyTuple_GET_ITEM(rec, 4);
        if (func != Py_None) {
            f = py_str(func, &flen);
            if (f == NULL) return NULL;
        }
        if (py_int64(PyTuple_GET_ITEM(rec, 5), &r.ts, "ts") < 0) return NULL;
        r.ok = (uint8_t)PyObject_IsTrue(PyTuple_GET_ITEM(rec, 6));
        PyObject *depth = PyTuple_GET_ITEM(rec, 7);
        if (depth != Py_None && py_int64(depth, &r.depth, "depth") < 0) return NULL;
        r.contended = (uint8_t)PyObject_IsTrue(PyTuple_GET_ITEM(rec, 8));
        PyObject *wait = PyTuple_GET_ITEM(rec, 9);
        if (wait != Py_None && py_int64(wait, &r.wait, "wait") < 0) return NULL;
        PyObject *restored = PyTuple_GET_ITEM(rec, 10);
        r.restored = restored != Py_None && PyObject_IsTrue(restored);
        r.blocking_false = PyTuple_GET_ITEM(rec, 11) == Py_False;
    } else {
        r.op = 1;
        if (py_int64(PyTuple_GET_ITEM(rec, 3), &r.depth, "depth") < 0) return NULL;
        PyObject *hold = PyTuple_GET_ITEM(rec, 4);
        if (hold != Py_None) {
            if (py_int64(hold, &r.hold, "hold") < 0) return NULL;
            r.has_hold = 1;
        }
        if (py_int64(PyTuple_GET_ITEM(rec, 5), &r.ts, "ts") < 0) return NULL;
    }
    if (apply(k, &r, f, (uint32_t)flen) < 0) return NULL;
    Py_RETURN_NONE;
}

static PyObject *
held_list(Kernel *k, const Thread *t)
{
    PyObject *out = PyList_New(t->nheld);
    if (out == NULL) return NULL;
    for (int32_t j = 0; j < t->nheld; j++) {
        int32_t p = t->held[j].prim, s = k->sites[t->held[j].site].site;
        PyObject *item = Py_BuildValue(
            "(s#s#)", str_ptr(&k->strs, p), (Py_ssize_t)str_len(&k->strs, p),
            str_ptr(&k->strs, s), (Py_ssize_t)str_len(&k->strs, s));
        if (item == NULL) { Py_DECREF(out); return NULL; }
        PyList_SET_ITEM(out, j, item);
    }
    return out;
}

static PyObject *
Kernel_forget(Kernel *k, PyObject *prim)
{
    int32_t id;
    if (intern_obj(k, prim, &id) < 0) return NULL;
    for (int32_t i = 0; i < k->nthreads; i++) {
        int j = held_find(&k->threads[i], id);
        if (j >= 0) held_remove(&k->threads[i], j);
    }
    Py_RETURN_NONE;
}

static PyObject *
Kernel_take_held(Kernel *k, PyObject *Py_UNUSED(ignored))
{
    PyObject *out = PyDict_New();
    if (out == NULL) return NULL;
    for (int32_t i = 0; i < k->nthreads; i++) {
        Thread *t = &k->threads[i];
        if (t->active && t->nheld) {
            PyObject *h = held_list(k, t);
            PyObject *key = PyLong_FromLongLong(t->tid);
            if (h == NULL || key == NULL || PyDict_SetItem(out, key, h) < 0) {
                Py_XDECREF(h); Py_XDECREF(key); Py_DECREF(out);
                return NULL;
            }
            Py_DECREF(h); Py_DECREF(key);
        }
        if (t->active) {
            t->nheld = 0;
            t->active = 0;
        }
    }
    return out;
}

static PyObject *
Kernel_held_of(Kernel *k, PyObject *tid)
{
    int64_t t;
    if (py_int64(tid, &t, "tid") < 0) return NULL;
    int32_t i = map_get(&k->thread_map, (uint64_t)t);
    if (i < 0 || !k->threads[i].active) return PyList_New(0);
    return held_list(k, &k->threads[i]);
}

static PyObject *
Kernel_set_held(Kernel *k, PyObject *args)
{
    PyObject *tid, *held;
    if (!PyArg_ParseTuple(args, "OO", &tid, &held)) return NULL;
    int64_t tv;
    if (py_int64(tid, &tv, "tid") < 0) return NULL;
    PyObject *seq = PySequence_Fast(held, "held must be a sequence");
    if (seq == NULL) return NULL;
    Thread *t = thread_get(k, tv);
    if (t == NULL) { Py_DECREF(seq); return NULL; }
    int32_t ti = k->last_thread;
    k->threads[ti].nheld = 0;
    k->threads[ti].active = 1;
    for (Py_ssize_t j = 0; j < PySequence_Fast_GET_SIZE(seq); j++) {
        PyObject *item = PySequence_Fast_GET_ITEM(seq, j);
        int32_t p, s;
        if (!PyTuple_Check(item) || PyTuple_GET_SIZE(item) != 2
            || intern_obj(k, PyTuple_GET_ITEM(item, 0), &p) < 0
            || intern_obj(k, PyTuple_GET_ITEM(item, 1), &s) < 0) {
            if (!PyErr_Occurred()) PyErr_SetString(PyExc_TypeError, "bad held entry");
            Py_DECREF(seq);
            return NULL;
        }
        int32_t si = site_get(k, p, s, NULL, 0);
        if (si < 0 || held_push(&k->threads[ti], p, si) < 0) { Py_DECREF(seq); return NULL; }
    }
    Py_DECREF(seq);
    Py_RETURN_NONE;
}

/* ---------------------------------------------------------------------------------------- */
/* export                                                                                   */

static inline int64_t
bucket_of(int64_t v)
{
    if (v < 32) return v > 0 ? v : 0;
    int b = 64 - __builtin_clzll((uint64_t)v);
    int shift = b - 4 - 1;
    return (int64_t)(shift + 1) * 16 + ((v >> shift) - 16);
}

/* (count, total, min, max, {bucket: n}) of raw values, as hist.Histogram keeps them. */
static PyObject *
summary(const I64Vec *a)
{
    if (a->n == 0) return Py_BuildValue("(iiii{})", 0, 0, 0, 0);
    int64_t lo = a->v[0], hi = a->v[0];
    for (Py_ssize_t i = 1; i < a->n; i++) {
        if (a->v[i] < lo) lo = a->v[i];
        if (a->v[i] > hi) hi = a->v[i];
    }
    int64_t blo = bucket_of(lo), bhi = bucket_of(hi);
    int64_t *counts = PyMem_Calloc((size_t)(bhi - blo + 1), sizeof(int64_t));
    if (counts == NULL) return PyErr_NoMemory();
    PyObject *total = PyLong_FromLong(0), *buckets = PyDict_New();
    int64_t acc = 0;
    if (total == NULL || buckets == NULL) goto fail;
    for (Py_ssize_t i = 0; i < a->n; i++) {
        int64_t v = a->v[i];
        counts[bucket_of(v) - blo]++;
        if (__builtin_add_overflow(acc, v, &acc)) {
            PyObject *part = PyLong_FromLongLong(acc - v);
            if (part == NULL) goto fail;
            PyObject *t2 = PyNumber_Add(total, part);
            Py_DECREF(part);
            if (t2 == NULL) goto fail;
            Py_SETREF(total, t2);
            acc = v;
        }
    }
    for (int64_t b = 0; b <= bhi - blo; b++) {
        if (!counts[b]) continue;
        PyObject *key = PyLong_FromLongLong(b + blo), *val = PyLong_FromLongLong(counts[b]);
        if (key == NULL || val == NULL || PyDict_SetItem(buckets, key, val) < 0) {
            Py_XDECREF(key); Py_XDECREF(val);
            goto fail;
        }
        Py_DECREF(key); Py_DECREF(val);
    }
    PyObject *last = PyLong_FromLongLong(acc);
    if (last == NULL) goto fail;
    PyObject *t2 = PyNumber_Add(total, last);
    Py_DECREF(last);
    if (t2 == NULL) goto fail;
    Py_SETREF(total, t2);
    PyMem_Free(counts);
    return Py_BuildValue("(nNLLN)", a->n, total, (long long)lo, (long long)hi, buckets);
fail:
    PyMem_Free(counts);
    Py_XDECREF(total);
    Py_XDECREF(buckets);
    return NULL;
}

static PyObject *
tids_list(const Map *m)
{
    PyObject *out = PyList_New(0);
    if (out == NULL || m->keys == NULL) return out;
    for (uint32_t i = 0; i <= m->mask; i++) {
        if (m->vals[i] < 0) continue;
        PyObject *v = PyLong_FromLongLong((long long)(int64_t)m->keys[i]);
        if (v == NULL || PyList_Append(out, v) < 0) { Py_XDECREF(v); Py_DECREF(out); return NULL; }
        Py_DECREF(v);
    }
    return out;
}

static PyObject *
rec_tuple(Kernel *k, const Rec *r, PyObject *strings)
{
#define S(id) ((id) == NONE_ID ? Py_None : PyList_GET_ITEM(strings, (id)))
    if (r->op == 0)
        return Py_BuildValue("(iLOOOLONONOO)", 0, (long long)r->tid, S(r->prim), S(r->site),
                             S(r->func), (long long)r->ts, r->ok ? Py_True : Py_False,
                             r->has_depth ? PyLong_FromLongLong(r->depth) : Py_NewRef(Py_None),
                             r->contended ? Py_True : Py_False,
                             r->has_wait ? PyLong_FromLongLong(r->wait) : Py_NewRef(Py_None),
                             r->restored ? Py_True : Py_None,
                             r->blocking_false ? Py_False : Py_None);
    return Py_BuildValue("(iLOLNL)", 1, (long long)r->tid, S(r->prim), (long long)r->depth,
                         r->has_hold ? PyLong_FromLongLong(r->hold) : Py_NewRef(Py_None),
                         (long long)r->ts);
#undef S
}

static PyObject *
Kernel_export(Kernel *k, PyObject *Py_UNUSED(ignored))
{
    PyObject *strings = NULL, *sites = NULL, *edges = NULL, *tl = NULL, *held = NULL,
             *prefix = NULL, *switched = NULL, *out = NULL;
    strings = PyList_New(k->strs.n);
    if (strings == NULL) goto fail;
    for (int32_t i = 0; i < k->strs.n; i++) {
        PyObject *s = PyUnicode_DecodeUTF8(str_ptr(&k->strs, i), str_len(&k->strs, i), "strict");
        if (s == NULL) goto fail;
        PyList_SET_ITEM(strings, i, s);
    }
    sites = PyList_New(0);
    if (sites == NULL) goto fail;
    for (int32_t i = 0; i < k->nsites; i++) {
        Site *s = &k->sites[i];
        PyObject *w = summary(&s->waits), *h = summary(&s->holds), *t = tids_list(&s->tids);
        if (w == NULL || h == NULL || t == NULL) {
            Py_XDECREF(w); Py_XDECREF(h); Py_XDECREF(t);
            goto fail;
        }
        PyObject *item = Py_BuildValue("(iiiLLLLLLNNN)", s->prim, s->site, s->func,
                                       (long long)s->acq, (long long)s->contended,
                                       (long long)s->failed, (long long)s->timeouts,
                                       (long long)s->restored, (long long)s->max_depth, w, h, t);
        if (item == NULL || PyList_Append(sites, item) < 0) { Py_XDECREF(item); goto fail; }
        Py_DECREF(item);
    }
    edges = PyList_New(0);
    if (edges == NULL) goto fail;
    for (int32_t i = 0; i < k->nedges; i++) {
        Edge *e = &k->edges[i];
        PyObject *pairs = PyList_New(e->nsites);
        if (pairs == NULL) goto fail;
        for (int j = 0; j < e->nsites; j++)
            PyList_SET_ITEM(pairs, j, Py_BuildValue("(iiL)", e->sa[j], e->sb[j],
                                                    (long long)e->sn[j]));
        PyObject *gates;
        if (!e->gates_set) {
            gates = Py_NewRef(Py_None);
        } else {
            gates = PyList_New(e->ngates);
            if (gates == NULL) { Py_DECREF(pairs); goto fail; }
            for (int32_t g = 0; g < e->ngates; g++)
                PyList_SET_ITEM(gates, g, PyLong_FromLong(e->gates[g]));
        }
        PyObject *t = tids_list(&e->tids);
        if (t == NULL) { Py_DECREF(pairs); Py_DECREF(gates); goto fail; }
        PyObject *item = Py_BuildValue("(iiLNNN)", e->a, e->b, (long long)e->count, pairs, t,
                                       gates);
        if (item == NULL || PyList_Append(edges, item) < 0) { Py_XDECREF(item); goto fail; }
        Py_DECREF(item);
    }
    tl = PyList_New(0);
    if (tl == NULL) goto fail;
    for (int32_t p = 0; p < k->captl; p++) {
        Timeline *t = &k->tl[p];
        if (t->n == 0) continue;
        PyObject *cells = PyDict_New();
        if (cells == NULL) goto fail;
        for (uint32_t s = 0; s <= t->map.mask; s++) {
            int32_t v = t->map.vals[s];
            if (v < 0) continue;
            PyObject *key = PyLong_FromLongLong((long long)(int64_t)t->map.keys[s]);
            PyObject *c = Py_BuildValue("[LL]", (long long)t->cells[v][0],
                                        (long long)t->cells[v][1]);
            if (key == NULL || c == NULL || PyDict_SetItem(cells, key, c) < 0) {
                Py_XDECREF(key); Py_XDECREF(c); Py_DECREF(cells); goto fail;
            }
            Py_DECREF(key); Py_DECREF(c);
        }
        PyObject *item = Py_BuildValue("(iN)", p, cells);
        if (item == NULL || PyList_Append(tl, item) < 0) { Py_XDECREF(item); goto fail; }
        Py_DECREF(item);
    }
    held = PyList_New(0);
    prefix = PyList_New(0);
    switched = PyList_New(0);
    if (held == NULL || prefix == NULL || switched == NULL) goto fail;
    for (int32_t i = 0; i < k->nthreads; i++) {
        Thread *t = &k->threads[i];
        if (k->defer) {
            PyObject *recs = PyList_New(t->nrecs);
            if (recs == NULL) goto fail;
            for (int32_t j = 0; j < t->nrecs; j++) {
                PyObject *r = rec_tuple(k, &t->recs[j], strings);
                if (r == NULL) { Py_DECREF(recs); goto fail; }
                PyList_SET_ITEM(recs, j, r);
            }
            PyObject *item = Py_BuildValue("(LN)", (long long)t->tid, recs);
            if (item == NULL || PyList_Append(prefix, item) < 0) { Py_XDECREF(item); goto fail; }
            Py_DECREF(item);
            if (t->switched) {
                /* the state assumed at the switch: replay the prefix from empty */
                Thread tmp;
                memset(&tmp, 0, sizeof tmp);
                tmp.recs = t->recs;
                tmp.nrecs = t->nrecs;
                if (simulate_into(k, &tmp) < 0) { PyMem_Free(tmp.held); goto fail; }
                PyObject *h = held_list(k, &tmp);
                PyMem_Free(tmp.held);
                if (h == NULL) goto fail;
                PyObject *it = Py_BuildValue("(LN)", (long long)t->tid, h);
                if (it == NULL || PyList_Append(switched, it) < 0) { Py_XDECREF(it); goto fail; }
                Py_DECREF(it);
            }
        }
        if (t->active && (k->defer ? t->switched : t->nheld > 0)) {
            PyObject *h = held_list(k, t);
            if (h == NULL) goto fail;
            PyObject *item = Py_BuildValue("(LN)", (long long)t->tid, h);
            if (item == NULL || PyList_Append(held, item) < 0) { Py_XDECREF(item); goto fail; }
            Py_DECREF(item);
        }
    }
    out = Py_BuildValue(
        "{sOsOsOsisOsOsOsOsNsLsLsLsLs(LLL)}", "strings", strings, "sites", sites,
        "edges", edges,
        "shift", k->shift, "timeline", tl, "held", held, "prefix", prefix, "switched", switched,
        "ts", k->has_ts ? Py_BuildValue("(LL)", (long long)k->ts_min, (long long)k->ts_max)
                        : Py_NewRef(Py_None),
        "lines", (long long)k->lines, "events", (long long)k->events,
        "acquires", (long long)k->acquires, "releases", (long long)k->releases,
        "conds", (long long)k->nconds[0], (long long)k->nconds[1], (long long)k->nconds[2]);
fail:
    Py_XDECREF(strings); Py_XDECREF(sites); Py_XDECREF(edges); Py_XDECREF(tl);
    Py_XDECREF(held); Py_XDECREF(prefix); Py_XDECREF(switched);
    return out;
}

/* trace_start(pid, offset_ns, first_id): draw the trace from now on (trace.py). */
static PyObject *
Kernel_trace_start(Kernel *k, PyObject *args)
{
    long long pid, offset, first_id;
    PyObject *cb = NULL;
    if (!PyArg_ParseTuple(args, "LLL|O", &pid, &offset, &first_id, &cb)) return NULL;
    Py_XINCREF(cb);
    Py_XSETREF(k->cond_cb, cb);
    k->tracing = 1;
    k->trace_pid = pid;
    k->trace_offset = offset;
    k->next_id = first_id;
    Py_RETURN_NONE;
}

/* set_label(prim, label): label is the JSON string (bytes, quotes included) of its name. */
static PyObject *
Kernel_set_label(Kernel *k, PyObject *args)
{
    PyObject *prim, *label;
    if (!PyArg_ParseTuple(args, "OO!", &prim, &PyBytes_Type, &label)) return NULL;
    int32_t id;
    if (intern_obj(k, prim, &id) < 0) return NULL;
    PrimTrace *t = prim_trace(k, id);
    if (t == NULL) return NULL;
    Py_INCREF(label);
    Py_XSETREF(t->label, label);
    Py_RETURN_NONE;
}

/* trace_take(): the trace text drawn so far (and forget it). */
static PyObject *
Kernel_trace_take(Kernel *k, PyObject *Py_UNUSED(ignored))
{
    PyObject *out = PyBytes_FromStringAndSize(k->tbuf, (Py_ssize_t)k->tlen);
    k->tlen = 0;
    return out;
}

static int
cmp_pair(const void *a, const void *b)
{
    const int64_t *x = a, *y = b;
    if (x[0] != y[0]) return x[0] < y[0] ? -1 : 1;
    return (x[1] > y[1]) - (x[1] < y[1]);
}

/* trace_counters(): the waiting-thread counters of every lock, in time order, drawn. */
static const StrTab *sort_strs; /* for qsort's comparison (the GIL is held) */

static int
cmp_prim(const void *a, const void *b)
{
    return str_cmp(sort_strs, *(const int32_t *)a, *(const int32_t *)b);
}

static PyObject *
Kernel_trace_counters(Kernel *k, PyObject *Py_UNUSED(ignored))
{
    int32_t *order = PyMem_Malloc((size_t)(k->cappt ? k->cappt : 1) * sizeof(int32_t));
    if (order == NULL) return PyErr_NoMemory();
    int32_t no = 0;
    for (int32_t p = 0; p < k->cappt; p++)
        if (k->pt[p].dts.n) order[no++] = p;
    sort_strs = &k->strs;
    qsort(order, (size_t)no, sizeof(int32_t), cmp_prim);
    for (int32_t oi = 0; oi < no; oi++) {
        int32_t p = order[oi];
        PrimTrace *t = &k->pt[p];
        Py_ssize_t n = t->dts.n;
        if (n == 0) continue;
        int64_t (*pairs)[2] = PyMem_Malloc((size_t)n * sizeof(*pairs));
        if (pairs == NULL) { PyMem_Free(order); return PyErr_NoMemory(); }
        for (Py_ssize_t i = 0; i < n; i++) { pairs[i][0] = t->dts.v[i]; pairs[i][1] = t->dd.v[i]; }
        qsort(pairs, (size_t)n, sizeof(*pairs), cmp_pair);
        int64_t c = 0;
        for (Py_ssize_t i = 0; i < n; i++) {
            c += pairs[i][1];
            if (c < 0) c = 0;
            if (TB_LIT(k, ",\n{\"ph\":\"C\",\"name\":") < 0
                || tb_label(k, p, "waiting: ", 9) < 0 || TB_LIT(k, ",\"pid\":") < 0
                || tb_int(k, k->trace_pid) < 0 || TB_LIT(k, ",\"ts\":") < 0
                || tb_us(k, pairs[i][0] + k->trace_offset) < 0
                || TB_LIT(k, ",\"args\":{\"threads\":") < 0 || tb_int(k, c) < 0
                || TB_LIT(k, "}}") < 0) {
                PyMem_Free(pairs);
                PyMem_Free(order);
                return NULL;
            }
        }
        PyMem_Free(pairs);
        t->dts.n = t->dd.n = 0;
    }
    PyMem_Free(order);
    return Kernel_trace_take(k, NULL);
}

static PyObject *
Kernel_get_next_id(Kernel *k, void *c) { (void)c; return PyLong_FromLongLong(k->next_id); }

static PyObject *
Kernel_get_lines(Kernel *k, void *c) { (void)c; return PyLong_FromLongLong(k->lines); }

static int
Kernel_set_lines(Kernel *k, PyObject *v, void *c)
{
    (void)c;
    if (v == NULL) { PyErr_SetString(PyExc_AttributeError, "cannot delete lines"); return -1; }
    long long n = PyLong_AsLongLong(v);
    if (n == -1 && PyErr_Occurred()) return -1;
    k->lines = n;
    return 0;
}

static PyObject *
Kernel_get_ts_max(Kernel *k, void *c)
{
    (void)c;
    if (!k->has_ts) Py_RETURN_NONE;
    return PyLong_FromLongLong(k->ts_max);
}

static PyObject *
Kernel_get_events(Kernel *k, void *c)
{
    (void)c;
    return PyLong_FromLongLong((long long)k->events);
}

static PyMethodDef Kernel_methods[] = {
    {"scan", (PyCFunction)Kernel_scan, METH_VARARGS,
     "scan(data, length, on_line): the whole lines of data[:length]"},
    {"acquire", (PyCFunction)Kernel_acquire, METH_VARARGS, "one usable acquire"},
    {"release", (PyCFunction)Kernel_release, METH_VARARGS, "one usable release"},
    {"apply", (PyCFunction)Kernel_apply, METH_O, "apply one record"},
    {"forget", (PyCFunction)Kernel_forget, METH_O, "nobody holds this primitive any more"},
    {"take_held", (PyCFunction)Kernel_take_held, METH_NOARGS, "what threads hold; then forget"},
    {"held_of", (PyCFunction)Kernel_held_of, METH_O, "what one thread holds"},
    {"set_held", (PyCFunction)Kernel_set_held, METH_VARARGS, "set what one thread holds"},
    {"export_raw", (PyCFunction)Kernel_export, METH_NOARGS, "statistics and state, raw"},
    {"conds", (PyCFunction)Kernel_conds, METH_VARARGS, "condition events to these handlers"},
    {"trace_start", (PyCFunction)Kernel_trace_start, METH_VARARGS, "draw the trace"},
    {"set_label", (PyCFunction)Kernel_set_label, METH_VARARGS, "a primitive's name"},
    {"trace_take", (PyCFunction)Kernel_trace_take, METH_NOARGS, "the trace drawn so far"},
    {"trace_counters", (PyCFunction)Kernel_trace_counters, METH_NOARGS, "counters, drawn"},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef Kernel_getset[] = {
    {"lines", (getter)Kernel_get_lines, (setter)Kernel_set_lines, "lines read by scan", NULL},
    {"ts_max", (getter)Kernel_get_ts_max, NULL, "the largest ts received", NULL},
    {"events", (getter)Kernel_get_events, NULL, "usable events the kernel parsed itself", NULL},
    {"next_id", (getter)Kernel_get_next_id, NULL, "the last trace id used", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject KernelType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "tracedsync.analysis._cscan.RawKernel",
    .tp_basicsize = sizeof(Kernel),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE,
    .tp_doc = "The acquire/release kernel (see kernel.py).",
    .tp_new = Kernel_new,
    .tp_dealloc = (destructor)Kernel_dealloc,
    .tp_methods = Kernel_methods,
    .tp_getset = Kernel_getset,
};

/* add_counts(dst, src): dst[k] = dst.get(k, 0) + v for every k, v of src (dicts of ints). */
static PyObject *
add_counts(PyObject *mod, PyObject *args)
{
    (void)mod;
    PyObject *dst, *src;
    if (!PyArg_ParseTuple(args, "O!O!", &PyDict_Type, &dst, &PyDict_Type, &src)) return NULL;
    Py_ssize_t pos = 0;
    PyObject *key, *val;
    while (PyDict_Next(src, &pos, &key, &val)) {
        PyObject *cur = PyDict_GetItemWithError(dst, key);
        if (cur == NULL) {
            if (PyErr_Occurred() || PyDict_SetItem(dst, key, val) < 0) return NULL;
            continue;
        }
        PyObject *sum = PyNumber_Add(cur, val);
        if (sum == NULL) return NULL;
        int rc = PyDict_SetItem(dst, key, sum);
        Py_DECREF(sum);
        if (rc < 0) return NULL;
    }
    Py_RETURN_NONE;
}

/* Sums of dicts of counts keyed by small ints (histogram buckets): the counts of keys
 * 0..DENSE-1 are added in an array, anything else in the output dict itself. */
#define DENSE 4096

static int
dense_add(int64_t *dense, PyObject *out, PyObject *d)
{
    if (!PyDict_Check(d)) { PyErr_SetString(PyExc_TypeError, "expected dicts"); return -1; }
    Py_ssize_t pos = 0;
    PyObject *key, *val;
    while (PyDict_Next(d, &pos, &key, &val)) {
        if (PyLong_CheckExact(key) && PyLong_CheckExact(val)) {
            int of1 = 0, of2 = 0;
            long long k = PyLong_AsLongLongAndOverflow(key, &of1);
            long long v = PyLong_AsLongLongAndOverflow(val, &of2);
            if (!of1 && !of2 && k >= 0 && k < DENSE && v >= 0 && v < (1LL << 53)) {
                dense[k] += v;
                continue;
            }
        }
        PyObject *cur = PyDict_GetItemWithError(out, key);
        if (cur == NULL && PyErr_Occurred()) return -1;
        PyObject *sum = cur ? PyNumber_Add(cur, val) : Py_NewRef(val);
        if (sum == NULL) return -1;
        int rc = PyDict_SetItem(out, key, sum);
        Py_DECREF(sum);
        if (rc < 0) return -1;
    }
    return 0;
}

/* The array's counts into the dict (added to what it holds for the same key). */
static int
dense_flush(const int64_t *dense, PyObject *out)
{
    for (int64_t k = 0; k < DENSE; k++) {
        if (!dense[k]) continue;
        PyObject *key = PyLong_FromLongLong(k), *val = PyLong_FromLongLong(dense[k]);
        PyObject *cur = key ? PyDict_GetItemWithError(out, key) : NULL;
        if (key == NULL || val == NULL || (cur == NULL && PyErr_Occurred())) {
            Py_XDECREF(key); Py_XDECREF(val);
            return -1;
        }
        if (cur != NULL) {
            PyObject *sum = PyNumber_Add(cur, val);
            Py_DECREF(val);
            if (sum == NULL) { Py_DECREF(key); return -1; }
            val = sum;
        }
        int rc = PyDict_SetItem(out, key, val);
        Py_DECREF(key); Py_DECREF(val);
        if (rc < 0) return -1;
    }
    return 0;
}

/* A sum's sequence (PySequence_Fast), array and output dict; -1 (an error set) if not had. */
static int
dense_open(PyObject *seq_in, const char *what, PyObject **seq, int64_t **dense, PyObject **out)
{
    *seq = PySequence_Fast(seq_in, what);
    if (*seq == NULL) return -1;
    *dense = PyMem_Calloc(DENSE, sizeof(int64_t));
    *out = PyDict_New();
    if (*dense == NULL || *out == NULL) {
        if (*dense == NULL) PyErr_NoMemory();
        PyMem_Free(*dense); Py_XDECREF(*out); Py_DECREF(*seq);
        return -1;
    }
    return 0;
}

/* sum_counts(dicts): one dict, the sum of dicts of counts. */
static PyObject *
sum_counts(PyObject *mod, PyObject *seq_in)
{
    (void)mod;
    PyObject *seq, *out;
    int64_t *dense;
    if (dense_open(seq_in, "sum_counts needs a sequence of dicts", &seq, &dense, &out) < 0)
        return NULL;
    for (Py_ssize_t i = 0; i < PySequence_Fast_GET_SIZE(seq); i++)
        if (dense_add(dense, out, PySequence_Fast_GET_ITEM(seq, i)) < 0) goto fail;
    if (dense_flush(dense, out) < 0) goto fail;
    PyMem_Free(dense);
    Py_DECREF(seq);
    return out;
fail:
    PyMem_Free(dense);
    Py_DECREF(out);
    Py_DECREF(seq);
    return NULL;
}

/* An int attribute of a histogram as int64; 0 ok, 1 not a plain int64, -1 error. */
static int
attr_i64(PyObject *o, PyObject *name, int64_t *out)
{
    PyObject *v = PyObject_GetAttr(o, name);
    if (v == NULL) return -1;
    int rc = 1;
    if (PyLong_CheckExact(v)) {
        int of = 0;
        long long x = PyLong_AsLongLongAndOverflow(v, &of);
        if (!of) { *out = x; rc = 0; }
        else if (PyErr_Occurred()) rc = -1;
    }
    Py_DECREF(v);
    return rc;
}

/* sum_hists(hists): (count, total, min, max, buckets) of the histograms (hist.Histogram)
 * that are not empty, in one pass; None when a figure does not fit in 64 bits (the caller
 * sums them in Python then). */
static PyObject *
sum_hists(PyObject *mod, PyObject *seq_in)
{
    (void)mod;
    static PyObject *s_count, *s_total, *s_min, *s_max, *s_buckets;
    if (s_buckets == NULL) {
        s_count = PyUnicode_InternFromString("count");
        s_total = PyUnicode_InternFromString("total");
        s_min = PyUnicode_InternFromString("min");
        s_max = PyUnicode_InternFromString("max");
        s_buckets = PyUnicode_InternFromString("buckets");
        if (!s_count || !s_total || !s_min || !s_max || !s_buckets) return NULL;
    }
    PyObject *seq, *out;
    int64_t *dense;
    if (dense_open(seq_in, "sum_hists needs a sequence of histograms", &seq, &dense, &out) < 0)
        return NULL;
    int64_t count = 0, total = 0, lo = 0, hi = 0;
    int any = 0, rc = 0;
    for (Py_ssize_t i = 0; i < PySequence_Fast_GET_SIZE(seq); i++) {
        PyObject *h = PySequence_Fast_GET_ITEM(seq, i);
        int64_t c, t, a, b;
        if ((rc = attr_i64(h, s_count, &c)) != 0) break;
        if (c == 0) continue;
        if ((rc = attr_i64(h, s_total, &t)) != 0 || (rc = attr_i64(h, s_min, &a)) != 0
            || (rc = attr_i64(h, s_max, &b)) != 0)
            break;
        if (__builtin_add_overflow(count, c, &count) || __builtin_add_overflow(total, t, &total)) {
            rc = 1;
            break;
        }
        if (!any || a < lo) lo = a;
        if (!any || b > hi) hi = b;
        any = 1;
        PyObject *d = PyObject_GetAttr(h, s_buckets);
        if (d == NULL) { rc = -1; break; }
        rc = dense_add(dense, out, d);
        Py_DECREF(d);
        if (rc != 0) break;
    }
    PyObject *res = NULL;
    if (rc == 0 && dense_flush(dense, out) == 0)
        res = Py_BuildValue("LLLLO", (long long)count, (long long)total, (long long)lo,
                            (long long)hi, out);
    else if (rc == 1)
        res = Py_NewRef(Py_None);
    PyMem_Free(dense);
    Py_DECREF(out);
    Py_DECREF(seq);
    return res;
}

static PyMethodDef module_methods[] = {
    {"add_counts", add_counts, METH_VARARGS, "dst[k] += src[k] for dicts of counts"},
    {"sum_counts", sum_counts, METH_O, "the sum of dicts of counts"},
    {"sum_hists", sum_hists, METH_O, "count, total, min, max and buckets of histograms"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_cscan", "The scanner's acquire/release kernel in C.", -1,
    module_methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC
PyInit__cscan(void)
{
    if (PyType_Ready(&KernelType) < 0) return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m == NULL) return NULL;
    Py_INCREF(&KernelType);
    if (PyModule_AddObject(m, "RawKernel", (PyObject *)&KernelType) < 0) {
        Py_DECREF(&KernelType);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
