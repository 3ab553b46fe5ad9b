/*
 * Record kinds: binary records for the other primitives' common paths, declared in Python.
 *
 * Design note. A Semaphore, an Event, a Condition's notify, a Value's get and set, a
 * multiprocessing lock: each records events whose fields are small integers, booleans, the
 * primitive's id, a call site and, for a notify, the threads it woke. Rather than a C function
 * per event, a *kind* describes one op tuple packed into a record: four 64-bit words
 * (`val` and the first three words of an extension slot), eight flag bits, the primitive's id
 * and the site; a notify's woken threads follow in further extension slots, four idents each.
 * tracedsync/_core/native_kinds.py compiles each kind from the event schema's own rules (the
 * ones the Python decoder is generated from) into two small programs that this file runs: one
 * renders the record to the decoder's JSON line, byte for byte; one rebuilds the op tuple for
 * the Python path. So the three cannot drift apart (tests/test_native.py checks them too).
 *
 * Writing: `rec(kind, prim_pid, prim_n, bits, w0, w1, w2, w3, *idents)`, called from Python on
 * the primitives' paths at level full: its arguments are objects that already exist, so a
 * record costs no Python object; the time and the call site are read here.
 */
#include "native.h"
#include <string.h>

#define MAX_KINDS 32
#define MAX_INSTR 24

enum { I_NAME, I_FIELD, I_OPT, I_CONST, I_FLAG, I_SITE, I_KEY };
/* value sources */
enum { S_NONE = 0, S_PRIM = 1, S_W0 = 2, S_W1, S_W2, S_W3, S_BIT0 = 8, S_TIDS = 16 };
/* how a value is written: as an int, ticks converted to ns, a thread (ident -> native id) */
enum { T_INT = 0, T_DUR = 1, T_TID = 2 };

typedef struct {
    uint8_t instr;
    uint8_t src;        /* S_* (S_BIT0 + i: flag bit i; S_TIDS + w: idents, count in word w) */
    uint8_t type;       /* T_* */
    int8_t present;     /* -1, or a flag bit that must be set for the value to be present */
    char *text;         /* the key fragment `,"name":`, or a whole constant / name */
    Py_ssize_t len;
    char *text2;        /* I_NAME: the name when the select bit is set */
    Py_ssize_t len2;
} kinstr;

typedef struct {
    int defined;
    long op_code;
    int tids_word;      /* the word holding the count of idents that follow, or -1 */
    kinstr json[MAX_INSTR];
    int njson;
    uint8_t tuple_src[MAX_INSTR];    /* the op tuple after (op, ts, ident) */
    uint8_t tuple_type[MAX_INSTR];
    int8_t tuple_present[MAX_INSTR];
    int ntuple;
} kind_t;

static kind_t kinds[MAX_KINDS];

static inline uint64_t
word(const ts_rec *r, int w)
{
    if (w == 0) {
        return r->val;
    }
    return ((const ts_ext *)(r + 1))->w[w - 1];
}

uint32_t
ts_kind_slots(const ts_rec *r)
{
    uint16_t k = r->depth;
    if (k >= MAX_KINDS || !kinds[k].defined || kinds[k].tids_word < 0) {
        return 2;
    }
    uint64_t n = word(r, kinds[k].tids_word);
    return 2 + (uint32_t)((n + 3) / 4);
}

static inline uint64_t
ident_at(const ts_rec *r, uint64_t i)
{
    const ts_ext *x = (const ts_ext *)(r + 2 + i / 4);
    return x->w[i % 4];
}

/* Is the value of source `src` (guarded by `present`) None? */
static inline int
is_none(const ts_rec *r, int src, int present)
{
    if (src == S_NONE) {
        return 1;
    }
    return present >= 0 && !(r->flags & (1u << present));
}

/* -- rendering (no GIL) ------------------------------------------------------------------- */

static char *
put_tid(char *p, uint64_t ident, const ts_tid_lookup *look)
{
    const char *text;
    int len;
    if (look->find(look->ctx, (unsigned long)ident, &text, &len)) {
        memcpy(p, text, len);
        return p + len;
    }
    return ts_put_u64(p, ident);  /* as the decoder: the ident, when no thread event names it */
}

static char *
put_value(char *p, const ts_rec *r, const kinstr *in, double ns_per_tick,
          const ts_tid_lookup *look)
{
    int src = in->src;
    if (is_none(r, src, in->present)) {
        return memcpy(p, "null", 4), p + 4;
    }
    if (src == S_PRIM) {
        *p++ = '"';
        p = ts_put_u64(p, r->prim_pid);
        *p++ = '.';
        p = ts_put_u64(p, r->prim_n);
        *p++ = '"';
        return p;
    }
    if (src >= S_BIT0 && src < S_TIDS) {
        if (r->flags & (1u << (src - S_BIT0))) {
            return memcpy(p, "true", 4), p + 4;
        }
        return memcpy(p, "false", 5), p + 5;
    }
    if (src >= S_TIDS) {
        uint64_t n = word(r, src - S_TIDS);
        *p++ = '[';
        for (uint64_t i = 0; i < n; i++) {
            if (i) {
                *p++ = ',';
            }
            p = put_tid(p, ident_at(r, i), look);
        }
        *p++ = ']';
        return p;
    }
    uint64_t v = word(r, src - S_W0);
    if (in->type == T_DUR) {
        return ts_put_i64(p, (int64_t)((double)v * ns_per_tick));
    }
    if (in->type == T_TID) {
        return put_tid(p, v, look);
    }
    return ts_put_i64(p, (int64_t)v);
}

/* The line's event name; NULL for an unknown kind. */
const char *
ts_kind_name(const ts_rec *r, Py_ssize_t *len)
{
    uint16_t k = r->depth;
    if (k >= MAX_KINDS || !kinds[k].defined) {
        return NULL;
    }
    const kinstr *in = &kinds[k].json[0];
    if (in->src != S_NONE && (r->flags & (1u << (in->src - S_BIT0)))) {
        *len = in->len2;
        return in->text2;
    }
    *len = in->len;
    return in->text;
}

/* The fields after the common header (`,"prim":...` on); room: MAX_KIND_LINE bytes. Returns
 * the end, and in *site the site fragment (written last by the caller). */
char *
ts_kind_fields(char *p, const ts_rec *r, double ns_per_tick, const ts_tid_lookup *look,
               const char **site, Py_ssize_t *site_len)
{
    kind_t *k = &kinds[r->depth];
    *site = NULL;
    for (int i = 1; i < k->njson; i++) {
        const kinstr *in = &k->json[i];
        switch (in->instr) {
        case I_FIELD:
            memcpy(p, in->text, in->len);
            p = put_value(p + in->len, r, in, ns_per_tick, look);
            break;
        case I_OPT:
            if (!is_none(r, in->src, in->present)) {
                memcpy(p, in->text, in->len);
                p = put_value(p + in->len, r, in, ns_per_tick, look);
            }
            break;
        case I_CONST:
            memcpy(p, in->text, in->len);
            p += in->len;
            break;
        case I_FLAG:
            if (r->flags & (1u << (in->src - S_BIT0))) {
                memcpy(p, in->text, in->len);
                p += in->len;
                p = (memcpy(p, "true", 4), p + 4);
            }
            break;
        case I_KEY:
            if (!is_none(r, in->src, in->present)) {
                memcpy(p, in->text, in->len);
                p = ts_put_i64(p + in->len, (int64_t)word(r, in->src - S_W0));
            }
            break;
        case I_SITE:
            *site = ts_site_fragment(r->site, site_len);
            break;
        }
    }
    return p;
}

size_t
ts_kind_max_line(const ts_rec *r)
{
    /* the fixed part, plus 24 bytes a woken thread */
    size_t n = 1024;
    if (r->depth < MAX_KINDS && kinds[r->depth].tids_word >= 0) {
        n += 24 * (size_t)word(r, kinds[r->depth].tids_word);
    }
    return n;
}

/* -- the op tuple (GIL held) -------------------------------------------------------------- */
PyObject *
ts_kind_tuple(const ts_rec *r, int64_t ts, unsigned long ident, double ns_per_tick)
{
    kind_t *k = &kinds[r->depth];
    PyObject *t = PyTuple_New(3 + k->ntuple);
    if (t == NULL) {
        return NULL;
    }
    PyTuple_SET_ITEM(t, 0, PyLong_FromLong(k->op_code));
    PyTuple_SET_ITEM(t, 1, PyLong_FromLongLong(ts));
    PyTuple_SET_ITEM(t, 2, PyLong_FromUnsignedLong(ident));
    int lasti = 0;
    PyObject *code = NULL;
    for (int i = 0; i < k->ntuple; i++) {
        int src = k->tuple_src[i];
        PyObject *v;
        if (src == 255) {          /* the site's code */
            code = ts_site_code(r->site, &lasti);
            v = Py_NewRef(code ? code : Py_None);
        }
        else if (src == 254) {     /* the site's position */
            v = PyLong_FromLong(code ? -1 - lasti : 0);
        }
        else if (is_none(r, src, k->tuple_present[i])) {
            v = Py_NewRef(Py_None);
        }
        else if (src == S_PRIM) {
            v = PyUnicode_FromFormat("%u.%u", r->prim_pid, r->prim_n);
        }
        else if (src >= S_BIT0 && src < S_TIDS) {
            v = PyBool_FromLong(r->flags & (1u << (src - S_BIT0)));
        }
        else if (src >= S_TIDS) {
            uint64_t n = word(r, src - S_TIDS);
            v = PyTuple_New((Py_ssize_t)n);
            for (uint64_t j = 0; v != NULL && j < n; j++) {
                PyObject *x = PyLong_FromUnsignedLongLong(ident_at(r, j));
                if (x == NULL) {
                    Py_CLEAR(v);
                    break;
                }
                PyTuple_SET_ITEM(v, (Py_ssize_t)j, x);
            }
        }
        else if (k->tuple_type[i] == T_DUR) {
            v = PyLong_FromLongLong((long long)((double)word(r, src - S_W0) * ns_per_tick));
        }
        else {
            v = PyLong_FromLongLong((long long)word(r, src - S_W0));
        }
        if (v == NULL) {
            Py_DECREF(t);
            return NULL;
        }
        PyTuple_SET_ITEM(t, 3 + i, v);
    }
    return t;
}

/* -- writing ------------------------------------------------------------------------------ */
/* One record of a declared kind (kinds above: no check here), with up to 1024 idents. */
void
ts_kind_rec(long kind, uint32_t prim_pid, uint32_t prim_n, uint8_t bits, const uint64_t w[4],
            const unsigned long long *idents, Py_ssize_t nid)
{
    if (nid > 1024) {
        nid = 1024;  /* (a notify_all of more threads names the first 1024) */
    }
    if (ts_tls_buf == NULL && ts_thread_ident_slow() == 0) {
        PyErr_Clear();
        return;
    }
    uint32_t slots = 2 + (uint32_t)((nid + 3) / 4);
    ts_rec *r = ts_rec_getn(slots);
    if (r == NULL) {
        return;  /* dropped (counted) */
    }
    r->t = ts_ticks();
    r->prim_pid = prim_pid;
    r->prim_n = prim_n;
    r->site = ts_site_of_caller();
    r->op = REC_KIND;
    r->flags = bits;
    r->depth = (uint16_t)kind;
    r->val = w[0];
    ts_ext *x = (ts_ext *)(r + 1);
    x->w[0] = w[1];
    x->w[1] = w[2];
    x->w[2] = w[3];
    x->w[3] = 0;
    for (Py_ssize_t i = 0; i < nid; i++) {
        ((ts_ext *)(r + 2 + i / 4))->w[i % 4] = idents[i];
    }
    ts_rec_commitn(slots);
}

/* rec(kind, prim_pid, prim_n, bits, w0, w1, w2, w3, *idents) */
static PyObject *
rec(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs < 8) {
        PyErr_SetString(PyExc_TypeError, "rec() takes at least 8 arguments");
        return NULL;
    }
    long long v[8];
    for (int i = 0; i < 8; i++) {
        v[i] = PyLong_AsLongLong(args[i]);
        if (v[i] == -1 && PyErr_Occurred()) {
            return NULL;
        }
    }
    long kind = (long)v[0];
    if (kind < 0 || kind >= MAX_KINDS || !kinds[kind].defined) {
        PyErr_SetString(PyExc_ValueError, "rec(): unknown kind");
        return NULL;
    }
    Py_ssize_t nid = nargs - 8;
    if (nid > 1024) {
        nid = 1024;
    }
    unsigned long long ids[1024];
    for (Py_ssize_t i = 0; i < nid; i++) {
        unsigned long long id = PyLong_AsUnsignedLongLong(args[8 + i]);
        if (id == (unsigned long long)-1 && PyErr_Occurred()) {
            PyErr_Clear();
            id = 0;
        }
        ids[i] = id;
    }
    uint64_t w[4] = {(uint64_t)v[4], (uint64_t)v[5], (uint64_t)v[6], (uint64_t)v[7]};
    ts_kind_rec(kind, (uint32_t)v[1], (uint32_t)v[2], (uint8_t)v[3], w, ids, nid);
    Py_RETURN_NONE;
}

/* -- declaring kinds ----------------------------------------------------------------------- */
static char *
copy_bytes(PyObject *b, Py_ssize_t *len)
{
    if (b == Py_None) {
        *len = 0;
        return NULL;
    }
    char *s;
    if (PyBytes_AsStringAndSize(b, &s, len) < 0) {
        return NULL;
    }
    char *d = (char *)PyMem_RawMalloc(*len + 1);
    if (d != NULL) {
        memcpy(d, s, *len);
        d[*len] = 0;
    }
    return d;
}

/* define_kind(kind, op_code, tids_word, json, tuple)
 *   json: [(instr, src, type, present, text: bytes|None, text2: bytes|None), ...], the first
 *         an I_NAME (src: the select bit's S_BIT0 + i, or S_NONE);
 *   tuple: [(src, type, present), ...] (src 255/254: the site's code/position). */
static PyObject *
define_kind(PyObject *module, PyObject *args)
{
    int kind, tids_word;
    long op_code;
    PyObject *json, *tuple;
    if (!PyArg_ParseTuple(args, "iliO!O!:define_kind", &kind, &op_code, &tids_word,
                          &PyList_Type, &json, &PyList_Type, &tuple)) {
        return NULL;
    }
    if (kind < 0 || kind >= MAX_KINDS || PyList_GET_SIZE(json) > MAX_INSTR ||
        PyList_GET_SIZE(tuple) > MAX_INSTR) {
        PyErr_SetString(PyExc_ValueError, "define_kind: out of range");
        return NULL;
    }
    kind_t *k = &kinds[kind];
    memset(k, 0, sizeof *k);
    k->op_code = op_code;
    k->tids_word = tids_word;
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(json); i++) {
        int instr, src, type, present;
        PyObject *text, *text2;
        if (!PyArg_ParseTuple(PyList_GET_ITEM(json, i), "iiiiOO", &instr, &src, &type,
                              &present, &text, &text2)) {
            return NULL;
        }
        kinstr *in = &k->json[k->njson++];
        in->instr = (uint8_t)instr;
        in->src = (uint8_t)src;
        in->type = (uint8_t)type;
        in->present = (int8_t)present;
        in->text = copy_bytes(text, &in->len);
        in->text2 = copy_bytes(text2, &in->len2);
        if (PyErr_Occurred()) {
            return NULL;
        }
    }
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(tuple); i++) {
        int src, type, present;
        if (!PyArg_ParseTuple(PyList_GET_ITEM(tuple, i), "iii", &src, &type, &present)) {
            return NULL;
        }
        k->tuple_src[k->ntuple] = (uint8_t)src;
        k->tuple_type[k->ntuple] = (uint8_t)type;
        k->tuple_present[k->ntuple] = (int8_t)present;
        k->ntuple++;
    }
    k->defined = 1;
    Py_RETURN_NONE;
}

static PyMethodDef kind_methods[] = {
    {"rec", (PyCFunction)(void (*)(void))rec, METH_FASTCALL,
     "rec(kind, prim_pid, prim_n, bits, w0, w1, w2, w3, *idents): write one record."},
    {"define_kind", define_kind, METH_VARARGS, "Declare a record kind (native_kinds.py)."},
    {NULL},
};

int
ts_kinds_init(PyObject *module)
{
    return PyModule_AddFunctions(module, kind_methods);
}
