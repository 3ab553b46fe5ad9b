/*
 * The flusher's side: a snapshot of every thread's records, rendered to JSON lines in C.
 *
 * Design note. `collect()` runs under the GIL (and the recorder's write lock): it formats the
 * call sites interned since the last flush, and notes for each thread buffer where its
 * unrendered records start and where they end right now; it also takes a calibration pair so
 * that ticks convert to CLOCK_MONOTONIC nanoseconds by interpolating between the previous
 * flush's pair and this one. `Snapshot.render()` then merges the records of all threads and the
 * Python channel's lines (already rendered, with their times) by time, formats the records as
 * the Python decoder would (byte for byte: the tests compare the two), and writes to the file
 * descriptor, all with the GIL released: it reads only records below the counts noted (which no
 * thread writes any more), site fragments that never move, and its own copies of everything
 * else. `release()` (under the GIL) gives the rendered chunks back and frees the buffers of
 * threads that have exited and been rendered in full. One snapshot at a time.
 */
#include "native.h"
#include <errno.h>
#include <string.h>
#include <unistd.h>

typedef struct {
    ts_tbuf *b;
    ts_chunk *c0;      /* first chunk with records to render */
    uint32_t i0;
    ts_chunk *c1;      /* last chunk */
    uint32_t n1;       /* records of c1 to render up to */
    int skip;          /* the flusher's own records: consumed, not rendered */
    unsigned long ident;
    char tid_text[24];
    int tid_len;
} seg_t;

typedef struct {
    PyObject_HEAD
    seg_t *segs;
    Py_ssize_t nseg;
    ts_calib from;
    char pid_text[24];
    int pid_len;
    int released;
    Py_ssize_t slots;    /* record slots to render (extensions included) */
    Py_ssize_t events;   /* the events they stand for (-1: not counted yet) */
    PyObject *dropped;  /* list of (ident, native_id, count) */
} Snapshot;

static PyTypeObject SnapshotType;
static int outstanding = 0;
static ts_calib last_calib;        /* the previous flush's pair */
static ts_calib first_calib;       /* the first pair: the long-run rate */
static int have_calib = 0;
static long op_acquire_code = 2, op_release_code = 3;

/* ticks -> ns: linear between the previous flush's calibration pair and this one's. Every
 * record of a snapshot was written between the two (both are taken under the GIL, as records
 * are), so this is exact at both ends. */
static inline int64_t
to_ns(const Snapshot *s, uint64_t t)
{
    return s->from.base_ns + (int64_t)((double)(int64_t)(t - s->from.base_ticks) *
                                       s->from.ns_per_tick);
}

static inline int64_t
dur_ns(const Snapshot *s, uint64_t ticks)
{
    return (int64_t)((double)ticks * s->from.ns_per_tick);
}

static void
take_calibration(Snapshot *s)
{
    ts_calib now;
    now.ns_per_tick = ts_current_calib.ns_per_tick;
    ts_calib_now(&now);
    if (!ts_clock_is_tsc) {
        s->from = now;
        return;
    }
    if (!have_calib) {
        first_calib = last_calib = ts_current_calib;
        have_calib = 1;
    }
    double rate = now.ns_per_tick;
    if (now.base_ticks > last_calib.base_ticks + 100000) {
        rate = (double)(now.base_ns - last_calib.base_ns) /
               (double)(now.base_ticks - last_calib.base_ticks);
    }
    s->from = last_calib;
    s->from.ns_per_tick = rate;
    if (now.base_ticks > first_calib.base_ticks + 100000000ull) {
        now.ns_per_tick = (double)(now.base_ns - first_calib.base_ns) /
                          (double)(now.base_ticks - first_calib.base_ticks);
    }
    last_calib = now;
    ts_current_calib = now;
}

/* collect(skip_ident) -> Snapshot */
static PyObject *
collect(PyObject *module, PyObject *args)
{
    unsigned long skip_ident = 0;
    if (!PyArg_ParseTuple(args, "|k:collect", &skip_ident)) {
        return NULL;
    }
    if (outstanding) {
        PyErr_SetString(PyExc_RuntimeError, "tracedsync: a snapshot is already being written");
        return NULL;
    }
    ts_sites_format_pending();
    Snapshot *s = PyObject_New(Snapshot, &SnapshotType);
    if (s == NULL) {
        return NULL;
    }
    s->segs = NULL;
    s->nseg = 0;
    s->released = 0;
    s->slots = 0;
    s->events = -1;
    s->dropped = PyList_New(0);
    Py_ssize_t n = 0;
    for (ts_tbuf *b = ts_all_bufs; b != NULL; b = b->next) {
        n++;
    }
    s->segs = (seg_t *)PyMem_RawCalloc(n ? n : 1, sizeof(seg_t));
    if (s->segs == NULL || s->dropped == NULL) {
        Py_DECREF(s);
        return PyErr_NoMemory();
    }
    for (ts_tbuf *b = ts_all_bufs; b != NULL; b = b->next) {
        if (b->dropped) {
            PyObject *t = Py_BuildValue("(klK)", b->ident, b->native_id,
                                        (unsigned long long)b->dropped);
            if (t == NULL || PyList_Append(s->dropped, t) < 0) {
                Py_XDECREF(t);
                Py_DECREF(s);
                return NULL;
            }
            Py_DECREF(t);
            b->dropped = 0;
        }
        b->sealed = b->cur;  /* (lock.c turns no record below this into a pair any more) */
        b->sealed_n = b->cur ? b->cur->n : 0;
        seg_t *g = &s->segs[s->nseg++];
        g->b = b;
        g->c0 = b->head;
        g->i0 = b->consumed;
        g->c1 = b->cur;
        g->n1 = b->cur ? b->cur->n : 0;
        g->skip = skip_ident != 0 && b->ident == skip_ident;
        g->ident = b->ident;
        memcpy(g->tid_text, b->tid_text, sizeof g->tid_text);
        g->tid_len = b->tid_len;
        Py_ssize_t recs = 0;
        uint32_t from = g->i0;
        for (ts_chunk *c = g->c0; c != NULL; c = c->next) {
            uint32_t to = c == g->c1 ? g->n1 : c->n;
            recs += to - from;
            from = 0;
            if (c == g->c1) {
                break;
            }
        }
        if (!g->skip) {
            s->slots += recs;
        }
    }
    s->pid_len = snprintf(s->pid_text, sizeof s->pid_text, "%ld", (long)getpid());
    take_calibration(s);
    outstanding = 1;
    return (PyObject *)s;
}

/* How many slots the record at `r` takes (its extensions included). */
static inline uint32_t
rec_slots(const ts_rec *r)
{
    if (r->op == REC_KIND) {
        return ts_kind_slots(r);
    }
    return r->op == REC_ACQUIRE && (r->flags & FLAG_CONTENDED) ? 2 : 1;  /* (a pair: 1) */
}

/* The native id text of thread `ident`, from the snapshot's buffers; NULL if unknown. */
static const seg_t *
seg_of_ident(const Snapshot *s, unsigned long ident)
{
    for (Py_ssize_t k = 0; k < s->nseg; k++) {
        if (s->segs[k].ident == ident) {
            return &s->segs[k];
        }
    }
    return NULL;
}

static int
find_tid(const void *ctx, unsigned long ident, const char **text, int *len)
{
    const seg_t *g = seg_of_ident((const Snapshot *)ctx, ident);
    if (g == NULL) {
        return 0;
    }
    *text = g->tid_text;
    *len = g->tid_len;
    return 1;
}

/* -- formatting -------------------------------------------------------------------------- */

#define PUT(p, lit) (memcpy((p), (lit), sizeof(lit) - 1), (p) + sizeof(lit) - 1)

/* One record as a JSON line; `p` has room for MAX_LINE bytes. */
#define MAX_LINE 256
static char *
format_rec(char *p, const Snapshot *s, const seg_t *g, const ts_rec *r, int64_t ns,
           Py_ssize_t *extra_len, const char **extra)
{
    *extra = NULL;
    if (r->op == REC_KIND) {
        Py_ssize_t nlen;
        const char *name = ts_kind_name(r, &nlen);
        p = PUT(p, "{\"event\":\"");
        memcpy(p, name, nlen);
        p += nlen;
        p = PUT(p, "\",\"ts\":");
    }
    else if (r->op == REC_ACQUIRE) {
        p = PUT(p, "{\"event\":\"acquire\",\"ts\":");
    }
    else {
        p = PUT(p, "{\"event\":\"release\",\"ts\":");
    }
    p = ts_put_i64(p, ns);
    p = PUT(p, ",\"pid\":");
    memcpy(p, s->pid_text, s->pid_len);
    p += s->pid_len;
    p = PUT(p, ",\"tid\":");
    memcpy(p, g->tid_text, g->tid_len);
    p += g->tid_len;
    if (r->op == REC_KIND) {
        ts_tid_lookup look = {find_tid, s};
        return ts_kind_fields(p, r, s->from.ns_per_tick, &look, extra, extra_len);
    }
    p = PUT(p, ",\"prim\":\"");
    p = ts_put_u64(p, r->prim_pid);
    *p++ = '.';
    p = ts_put_u64(p, r->prim_n);
    p = PUT(p, "\",\"depth\":");
    p = ts_put_u64(p, r->depth);
    if (r->op == REC_ACQUIRE && (r->flags & FLAG_CONTENDED)) {
        const ts_ext *x = (const ts_ext *)(r + 1);
        p = PUT(p, ",\"ok\":true,\"contended\":true,\"wait_ns\":");
        p = ts_put_i64(p, dur_ns(s, r->val));
        p = PUT(p, ",\"blocked_by\":");
        if (x->w[0] == 0) {
            p = PUT(p, "null");
        }
        else {
            const seg_t *o = seg_of_ident(s, (unsigned long)x->w[0]);
            if (o != NULL) {
                memcpy(p, o->tid_text, o->tid_len);
                p += o->tid_len;
            }
            else {
                p = ts_put_u64(p, x->w[0]);  /* as the decoder: the ident, when no thread event */
            }
        }
        p = PUT(p, ",\"blocking\":true,\"timeout\":null");
        *extra = ts_site_fragment(r->site, extra_len);
    }
    else if (r->op == REC_ACQUIRE) {
        p = PUT(p, ",\"ok\":true,\"contended\":false,\"wait_ns\":0,\"blocked_by\":null,"
                   "\"blocking\":true,\"timeout\":null");
        *extra = ts_site_fragment(r->site, extra_len);
    }
    else if (r->flags & FLAG_HOLD) {
        p = PUT(p, ",\"hold_ns\":");
        p = ts_put_i64(p, dur_ns(s, r->val));
    }
    return p;
}

/* -- the merge --------------------------------------------------------------------------- */
typedef struct {
    int64_t ns;           /* the head's time */
    int kind;             /* 0: a thread's records, 1: the Python lines */
    const seg_t *g;
    ts_chunk *c;
    uint32_t i, end;      /* position in c, and where c ends for this snapshot */
    int half;             /* at a REC_PAIR: 0 its acquire next, 1 its release */
} stream_t;

/* The event a stream's head stands for: the record itself, or one half of a pair as the
 * acquire or release record it was made from (written to `tmp`). */
static inline const ts_rec *
stream_rec(const stream_t *st, ts_rec *tmp)
{
    const ts_rec *r = &st->c->recs[st->i];
    if (r->op != REC_PAIR) {
        return r;
    }
    *tmp = *r;
    if (st->half == 0) {
        tmp->op = REC_ACQUIRE;
        tmp->val = 0;
    }
    else {
        tmp->op = REC_RELEASE;
        tmp->flags = FLAG_HOLD;
        tmp->depth = 0;
        tmp->site = 0;
        tmp->t = r->t + r->val;
    }
    return tmp;
}

/* Past the head's event: the release half of a pair next, or the next record. */
static int stream_load(const Snapshot *s, stream_t *st);
static inline int
stream_next(const Snapshot *s, stream_t *st, const ts_rec *r)
{
    const ts_rec *at = &st->c->recs[st->i];
    if (at->op == REC_PAIR && st->half == 0) {
        st->half = 1;
        st->ns = to_ns(s, at->t + at->val);
        return 1;
    }
    st->half = 0;
    st->i += rec_slots(r);
    return stream_load(s, st);
}

static int
stream_load(const Snapshot *s, stream_t *st)
{
    /* Move to the next record (st->i may be at the end of a chunk); 0 when exhausted. */
    for (;;) {
        if (st->c == NULL) {
            return 0;
        }
        if (st->i < st->end) {
            const ts_rec *r = &st->c->recs[st->i];
            if (r->op == REC_PAD) {
                st->i++;
                continue;
            }
            st->ns = to_ns(s, r->t);
            return 1;
        }
        if (st->c == st->g->c1) {
            return 0;
        }
        st->c = st->c->next;
        st->i = 0;
        st->end = st->c == NULL ? 0 : (st->c == st->g->c1 ? st->g->n1 : st->c->n);
    }
}

typedef struct {
    int fd;
    char *buf;
    size_t len, cap;
    int err;
    long long written;
    Py_ssize_t pending;         /* events in buf */
    Py_ssize_t events_written;  /* events whose bytes all reached the file */
} out_t;

static void
out_flush(out_t *o)
{
    size_t off = 0;
    Py_ssize_t pending = o->pending;
    o->pending = 0;
    while (off < o->len && !o->err) {
        ssize_t w = write(o->fd, o->buf + off, o->len - off);
        if (w < 0) {
            if (errno == EINTR) {
                continue;
            }
            o->err = errno;
            break;
        }
        off += (size_t)w;
        o->written += w;
    }
    if (!o->err) {
        o->events_written += pending;
    }
    o->len = 0;
}

static inline char *
out_reserve(out_t *o, size_t need)
{
    if (o->len + need > o->cap) {
        out_flush(o);
        if (need > o->cap) {
            char *nb = (char *)realloc(o->buf, need);
            if (nb == NULL) {
                return NULL;
            }
            o->buf = nb;
            o->cap = need;
        }
    }
    return o->buf + o->len;
}

static void
heap_down(stream_t **h, Py_ssize_t n, Py_ssize_t i)
{
    for (;;) {
        Py_ssize_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < n && h[l]->ns < h[m]->ns) m = l;
        if (r < n && h[r]->ns < h[m]->ns) m = r;
        if (m == i) return;
        stream_t *t = h[i]; h[i] = h[m]; h[m] = t;
        i = m;
    }
}

/* render(lines, fd) -> (events written, bytes written, errno). `lines`: a list of (ts_ns, bytes), the Python
 * channel's events in their order, each bytes one or more complete lines. */
static PyObject *
snapshot_render(Snapshot *s, PyObject *args)
{
    PyObject *lines;
    int fd;
    if (!PyArg_ParseTuple(args, "O!i:render", &PyList_Type, &lines, &fd)) {
        return NULL;
    }
    if (s->released) {
        PyErr_SetString(PyExc_RuntimeError, "snapshot already released");
        return NULL;
    }
    /* Copy what the GIL protects: the Python lines' times and bytes. */
    Py_ssize_t nl = PyList_GET_SIZE(lines);
    int64_t *lts = (int64_t *)PyMem_RawMalloc((nl ? nl : 1) * sizeof(int64_t));
    const char **lptr = (const char **)PyMem_RawMalloc((nl ? nl : 1) * sizeof(char *));
    Py_ssize_t *llen = (Py_ssize_t *)PyMem_RawMalloc((nl ? nl : 1) * sizeof(Py_ssize_t));
    PyObject *keep = PyList_New(nl);  /* keeps the bytes alive while the GIL is released */
    if (lts == NULL || lptr == NULL || llen == NULL || keep == NULL) {
        PyMem_RawFree(lts); PyMem_RawFree(lptr); PyMem_RawFree(llen); Py_XDECREF(keep);
        return PyErr_NoMemory();
    }
    for (Py_ssize_t i = 0; i < nl; i++) {
        PyObject *item = PyList_GET_ITEM(lines, i);
        PyObject *ts, *data;
        if (!PyTuple_Check(item) || PyTuple_GET_SIZE(item) != 2 ||
            !PyBytes_Check(data = PyTuple_GET_ITEM(item, 1))) {
            PyErr_SetString(PyExc_TypeError, "render: lines must be (ts, bytes) pairs");
            goto fail;
        }
        ts = PyTuple_GET_ITEM(item, 0);
        lts[i] = PyLong_AsLongLong(ts);
        if (lts[i] == -1 && PyErr_Occurred()) {
            goto fail;
        }
        Py_INCREF(data);
        PyList_SET_ITEM(keep, i, data);
        lptr[i] = PyBytes_AS_STRING(data);
        llen[i] = PyBytes_GET_SIZE(data);
    }

    Py_ssize_t nstreams = s->nseg + 1;
    stream_t *streams = (stream_t *)PyMem_RawCalloc(nstreams, sizeof(stream_t));
    stream_t **heap = (stream_t **)PyMem_RawCalloc(nstreams, sizeof(stream_t *));
    out_t o = {fd, (char *)malloc(1 << 20), 0, 1 << 20, 0, 0, 0, 0};
    if (streams == NULL || heap == NULL || o.buf == NULL) {
        PyMem_RawFree(streams); PyMem_RawFree(heap); free(o.buf);
        PyErr_NoMemory();
        goto fail;
    }
    Py_ssize_t events = 0;
    Py_BEGIN_ALLOW_THREADS
    Py_ssize_t nh = 0;
    for (Py_ssize_t k = 0; k < s->nseg; k++) {
        const seg_t *g = &s->segs[k];
        if (g->skip || g->c0 == NULL) {
            continue;
        }
        stream_t *st = &streams[k];
        st->kind = 0;
        st->g = g;
        st->c = g->c0;
        st->i = g->i0;
        st->end = g->c0 == g->c1 ? g->n1 : g->c0->n;
        if (stream_load(s, st)) {
            heap[nh++] = st;
        }
    }
    stream_t *py = &streams[s->nseg];
    py->kind = 1;
    py->i = 0;
    if (nl > 0) {
        py->ns = lts[0];
        heap[nh++] = py;
    }
    for (Py_ssize_t i = nh / 2 - 1; i >= 0; i--) {
        heap_down(heap, nh, i);
    }
    while (nh > 0 && !o.err) {
        stream_t *st = heap[0];
        int more;
        if (st->kind == 1) {
            Py_ssize_t i = st->i;
            char *p = out_reserve(&o, (size_t)llen[i]);
            if (p == NULL) { o.err = ENOMEM; break; }
            memcpy(p, lptr[i], llen[i]);
            o.len += llen[i];
            o.pending++;
            events++;
            st->i++;
            more = (Py_ssize_t)st->i < nl;
            if (more) {
                st->ns = lts[st->i];
            }
        }
        else {
            ts_rec tmp;
            const ts_rec *r = stream_rec(st, &tmp);
            Py_ssize_t xlen = 0;
            const char *extra;
            size_t room = MAX_LINE + 2048 + (r->op == REC_KIND ? ts_kind_max_line(r) : 0);
            char *p = out_reserve(&o, room);
            if (p == NULL) { o.err = ENOMEM; break; }
            char *e = format_rec(p, s, st->g, r, st->ns, &xlen, &extra);
            if (extra != NULL) {
                if (xlen > 2048 - 4) {
                    char *q = out_reserve(&o, (size_t)(e - p) + (size_t)xlen + 4);
                    if (q == NULL) { o.err = ENOMEM; break; }
                    if (q != p) {  /* flushed: the line was moved to the start */
                        memmove(q, p, (size_t)(e - p));
                        e = q + (e - p);
                        p = q;
                    }
                }
                memcpy(e, extra, xlen);
                e += xlen;
            }
            *e++ = '}';
            *e++ = '\n';
            o.len += (size_t)(e - p);
            o.pending++;
            events++;
            more = stream_next(s, st, r);
        }
        if (more) {
            heap_down(heap, nh, 0);
        }
        else {
            heap[0] = heap[--nh];
            heap_down(heap, nh, 0);
        }
    }
    if (!o.err) {
        out_flush(&o);
    }
    Py_END_ALLOW_THREADS
    free(o.buf);
    PyMem_RawFree(streams);
    PyMem_RawFree(heap);
    PyMem_RawFree(lts);
    PyMem_RawFree(lptr);
    PyMem_RawFree(llen);
    Py_DECREF(keep);
    (void)events;
    return Py_BuildValue("(nLi)", o.events_written, o.written, o.err);
fail:
    PyMem_RawFree(lts);
    PyMem_RawFree(lptr);
    PyMem_RawFree(llen);
    Py_DECREF(keep);
    return NULL;
}

/* as_tuples() -> list of (ts_ns, op tuple): the records in the Python channel's tuple layouts,
 * merged by time, for the decoder (structlog processors, a logger, captures). */
static PyObject *
snapshot_as_tuples(Snapshot *s, PyObject *Py_UNUSED(ignored))
{
    PyObject *out = PyList_New(0);
    if (out == NULL) {
        return NULL;
    }
    Py_ssize_t nstreams = s->nseg;
    stream_t *streams = (stream_t *)PyMem_RawCalloc(nstreams ? nstreams : 1, sizeof(stream_t));
    stream_t **heap = (stream_t **)PyMem_RawCalloc(nstreams ? nstreams : 1, sizeof(stream_t *));
    if (streams == NULL || heap == NULL) {
        PyMem_RawFree(streams);
        PyMem_RawFree(heap);
        Py_DECREF(out);
        return PyErr_NoMemory();
    }
    Py_ssize_t nh = 0;
    for (Py_ssize_t k = 0; k < s->nseg; k++) {
        const seg_t *g = &s->segs[k];
        if (g->skip || g->c0 == NULL) {
            continue;
        }
        stream_t *st = &streams[k];
        st->g = g;
        st->c = g->c0;
        st->i = g->i0;
        st->end = g->c0 == g->c1 ? g->n1 : g->c0->n;
        if (stream_load(s, st)) {
            heap[nh++] = st;
        }
    }
    for (Py_ssize_t i = nh / 2 - 1; i >= 0; i--) {
        heap_down(heap, nh, i);
    }
    while (nh > 0) {
        stream_t *st = heap[0];
        ts_rec tmp;
        const ts_rec *r = stream_rec(st, &tmp);
        PyObject *prim = PyUnicode_FromFormat("%u.%u", r->prim_pid, r->prim_n);
        PyObject *tup = NULL;
        if (prim != NULL) {
            if (r->op == REC_KIND) {
                Py_DECREF(prim);
                tup = ts_kind_tuple(r, st->ns, st->g->ident, s->from.ns_per_tick);
            }
            else if (r->op == REC_ACQUIRE) {
                int lasti = 0;
                PyObject *code = ts_site_code(r->site, &lasti);
                int contended = (r->flags & FLAG_CONTENDED) != 0;
                unsigned long by = contended ? (unsigned long)((const ts_ext *)(r + 1))->w[0] : 0;
                PyObject *by_obj = by ? PyLong_FromUnsignedLong(by) : Py_NewRef(Py_None);
                tup = by_obj == NULL ? NULL : Py_BuildValue(
                    "(lLkNkOOLNOiOi)", op_acquire_code, (long long)st->ns, st->g->ident, prim,
                    (unsigned long)r->depth, Py_True, contended ? Py_True : Py_False,
                    (long long)(contended ? dur_ns(s, r->val) : 0), by_obj, Py_True, -1,
                    code ? code : Py_None, code ? -1 - lasti : 0);
            }
            else if (r->flags & FLAG_HOLD) {
                tup = Py_BuildValue("(lLkNkL)", op_release_code, (long long)st->ns,
                                    st->g->ident, prim, (unsigned long)r->depth,
                                    (long long)dur_ns(s, r->val));
            }
            else {
                tup = Py_BuildValue("(lLkNkO)", op_release_code, (long long)st->ns,
                                    st->g->ident, prim, (unsigned long)r->depth, Py_None);
            }
        }
        PyObject *pair = tup ? Py_BuildValue("(LN)", (long long)st->ns, tup) : NULL;
        if (pair == NULL || PyList_Append(out, pair) < 0) {
            Py_XDECREF(pair);
            Py_DECREF(out);
            out = NULL;
            break;
        }
        Py_DECREF(pair);
        if (stream_next(s, st, r)) {
            heap_down(heap, nh, 0);
        }
        else {
            heap[0] = heap[--nh];
            heap_down(heap, nh, 0);
        }
    }
    PyMem_RawFree(streams);
    PyMem_RawFree(heap);
    return out;
}

/* release(): the rendered records are consumed (GIL held). */
static PyObject *
snapshot_release(Snapshot *s, PyObject *Py_UNUSED(ignored))
{
    if (s->released) {
        Py_RETURN_NONE;
    }
    s->released = 1;
    outstanding = 0;
    for (Py_ssize_t k = 0; k < s->nseg; k++) {
        seg_t *g = &s->segs[k];
        ts_tbuf *b = g->b;
        if (g->c0 == NULL) {
            continue;
        }
        /* free every chunk before c1; then c1 itself if it is full and not current */
        ts_chunk *c = b->head;
        while (c != NULL && c != g->c1) {
            ts_chunk *next = c->next;
            ts_chunk_free(c);
            c = next;
        }
        b->head = g->c1;
        b->consumed = g->n1;
        if (g->c1 != NULL && g->c1 != b->cur && g->n1 == g->c1->n) {
            b->head = g->c1->next;
            b->consumed = 0;
            ts_chunk_free(g->c1);
        }
    }
    /* Buffers of threads that have exited, rendered in full, are freed. */
    ts_tbuf **link = &ts_all_bufs;
    while (*link != NULL) {
        ts_tbuf *b = *link;
        int empty = b->head == NULL || (b->head == b->cur && b->consumed == b->cur->n);
        if (b->dead && empty && b != ts_tls_buf) {
            *link = b->next;
            if (b->head != NULL) {
                ts_chunk_free(b->head);
            }
            free(b);
        }
        else {
            link = &b->next;
        }
    }
    Py_RETURN_NONE;
}

static PyObject *
snapshot_get_slots(Snapshot *s, void *c)
{
    return PyLong_FromSsize_t(s->slots);
}

/* The events the records stand for (a pair is two), counted once, when first asked (a write
 * that failed says how many it lost): the records of a snapshot no longer change. */
static PyObject *
snapshot_get_records(Snapshot *s, void *c)
{
    if (s->events < 0) {
        Py_ssize_t n = 0;
        for (Py_ssize_t k = 0; k < s->nseg; k++) {
            const seg_t *g = &s->segs[k];
            if (g->skip || g->c0 == NULL) {
                continue;
            }
            stream_t st = {0};
            st.g = g;
            st.c = g->c0;
            st.i = g->i0;
            st.end = g->c0 == g->c1 ? g->n1 : g->c0->n;
            while (stream_load(s, &st)) {
                const ts_rec *r = &st.c->recs[st.i];
                n += r->op == REC_PAIR ? 2 : 1;
                st.i += rec_slots(r);
            }
        }
        s->events = n;
    }
    return PyLong_FromSsize_t(s->events);
}

static PyObject *
snapshot_get_dropped(Snapshot *s, void *c)
{
    return Py_NewRef(s->dropped);
}

static void
snapshot_dealloc(Snapshot *s)
{
    if (!s->released && Py_IsInitialized()) {
        PyObject *r = snapshot_release(s, NULL);
        Py_XDECREF(r);
    }
    PyMem_RawFree(s->segs);
    Py_XDECREF(s->dropped);
    PyObject_Free(s);
}

static PyMethodDef snapshot_methods[] = {
    {"render", (PyCFunction)snapshot_render, METH_VARARGS,
     "render(lines, fd) -> (events, bytes, errno): merge, format and write."},
    {"as_tuples", (PyCFunction)snapshot_as_tuples, METH_NOARGS,
     "The records as (ts, op tuple) pairs, merged by time."},
    {"release", (PyCFunction)snapshot_release, METH_NOARGS, "The records are consumed."},
    {NULL},
};

static PyGetSetDef snapshot_getset[] = {
    {"records", (getter)snapshot_get_records, NULL, "events to render", NULL},
    {"slots", (getter)snapshot_get_slots, NULL, "record slots to render (0: nothing)", NULL},
    {"dropped", (getter)snapshot_get_dropped, NULL, "(ident, native_id, count) per thread", NULL},
    {NULL},
};

static PyTypeObject SnapshotType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "tracedsync._core._native.Snapshot",
    .tp_basicsize = sizeof(Snapshot),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_dealloc = (destructor)snapshot_dealloc,
    .tp_methods = snapshot_methods,
    .tp_getset = snapshot_getset,
};

/* set_ops(acquire, release): the op codes of the decoder's tuples. */
static PyObject *
set_ops(PyObject *module, PyObject *args)
{
    if (!PyArg_ParseTuple(args, "ll:set_ops", &op_acquire_code, &op_release_code)) {
        return NULL;
    }
    Py_RETURN_NONE;
}

/* render_reset_after_fork(): no snapshot is outstanding in a new child. */
static PyObject *
render_after_fork(PyObject *module, PyObject *noargs)
{
    outstanding = 0;
    have_calib = 0;
    Py_RETURN_NONE;
}

static PyMethodDef render_methods[] = {
    {"collect", collect, METH_VARARGS, "collect(skip_ident=0) -> Snapshot (GIL held)."},
    {"set_ops", set_ops, METH_VARARGS, NULL},
    {"render_after_fork", render_after_fork, METH_NOARGS, NULL},
    {NULL},
};

int
ts_render_init(PyObject *module)
{
    if (PyType_Ready(&SnapshotType) < 0) {
        return -1;
    }
    return PyModule_AddFunctions(module, render_methods);
}
