/*
 * Call sites, interned by (code object, instruction offset).
 *
 * The hot path reads the calling frame's code object and current instruction straight from
 * the interpreter's frame (no frame object is materialised: PyEval_GetFrame would allocate one
 * per fresh frame on 3.11+) and looks the pair up in an open-addressed table; a hit is a few
 * nanoseconds. The table keeps a strong reference to each code object, so an address in it can
 * never be reused by another one. A site whose code belongs to tracedsync, `threading` or
 * `multiprocessing` is marked `skip` (the one skip policy: see tracedsync/_core/sites.py) and
 * the walk goes on to the calling frame. Entries live in fixed pages that never move, so the
 * renderer can read the fragments of the sites its snapshot references without the GIL; the
 * flusher formats new sites (`,"site":"file:line","func":"name"`) under the GIL, once each.
 * At most MAX_SITES sites are interned; beyond that, records carry no site.
 */
#include "native.h"
#include <string.h>

#if PY_VERSION_HEX >= 0x030B0000
#define Py_BUILD_CORE 1
#include "internal/pycore_frame.h"
#undef Py_BUILD_CORE
#else
#include <frameobject.h>
#endif

#define PAGE_BITS 10
#define PAGE_SIZE (1u << PAGE_BITS)
#define MAX_PAGES 256
#define MAX_SITES (PAGE_SIZE * MAX_PAGES)

typedef struct {
    PyObject *code;      /* strong reference */
    int lasti;           /* byte offset of the call instruction */
    uint8_t skip;        /* a frame of tracedsync/threading/multiprocessing: walk on */
    uint8_t formatted;
    char *frag;          /* `,"site":"...","func":"..."` (NULL: not formatted, or no site) */
    Py_ssize_t frag_len;
} site_entry;

static site_entry *pages[MAX_PAGES];
static uint32_t n_sites = 1;          /* id 0: no site */
static uint32_t formatted_upto = 1;

typedef struct {
    void *code;
    int lasti;
    uint32_t id;
} slot_t;

static slot_t *table = NULL;
static size_t table_cap = 0;          /* a power of two */
static size_t table_used = 0;

static PyObject *skip_prefixes = NULL;  /* tuple of str: file-name prefixes walked out of */
static PyObject *skip_files = NULL;     /* frozenset of str: exact file names walked out of */

static inline site_entry *
entry(uint32_t id)
{
    return &pages[id >> PAGE_BITS][id & (PAGE_SIZE - 1)];
}

static inline size_t
hash_key(void *code, int lasti)
{
    uintptr_t h = (uintptr_t)code ^ ((uintptr_t)lasti * 0x9E3779B97F4A7C15ull);
    h ^= h >> 29;
    h *= 0xBF58476D1CE4E5B9ull;
    h ^= h >> 32;
    return (size_t)h;
}

static int
table_grow(void)
{
    size_t cap = table_cap ? table_cap * 2 : 4096;
    slot_t *t = (slot_t *)PyMem_RawCalloc(cap, sizeof(slot_t));
    if (t == NULL) {
        return -1;
    }
    for (size_t i = 0; i < table_cap; i++) {
        if (table[i].id) {
            size_t j = hash_key(table[i].code, table[i].lasti) & (cap - 1);
            while (t[j].id) {
                j = (j + 1) & (cap - 1);
            }
            t[j] = table[i];
        }
    }
    PyMem_RawFree(table);
    table = t;
    table_cap = cap;
    return 0;
}

static int
is_skipped(PyObject *code)
{
    PyObject *filename = ((PyCodeObject *)code)->co_filename;
    if (filename == NULL || !PyUnicode_Check(filename)) {
        return 0;
    }
    if (skip_files != NULL) {
        int r = PySet_Contains(skip_files, filename);
        if (r != 0) {
            if (r < 0) PyErr_Clear();
            return r > 0;
        }
    }
    if (skip_prefixes != NULL) {
        Py_ssize_t n = PyTuple_GET_SIZE(skip_prefixes);
        for (Py_ssize_t i = 0; i < n; i++) {
            Py_ssize_t r = PyUnicode_Tailmatch(filename, PyTuple_GET_ITEM(skip_prefixes, i), 0,
                                               PY_SSIZE_T_MAX, -1);
            if (r > 0) {
                return 1;
            }
            if (r < 0) {
                PyErr_Clear();
            }
        }
    }
    return 0;
}

/* Intern (code, lasti); returns its id or 0 (table full, or out of memory). */
static uint32_t
intern_site(PyObject *code, int lasti)
{
    if (n_sites >= MAX_SITES) {
        return 0;
    }
    if ((table_used + 1) * 2 > table_cap && table_grow() < 0) {
        return 0;
    }
    uint32_t id = n_sites;
    if (pages[id >> PAGE_BITS] == NULL) {
        pages[id >> PAGE_BITS] = (site_entry *)PyMem_RawCalloc(PAGE_SIZE, sizeof(site_entry));
        if (pages[id >> PAGE_BITS] == NULL) {
            return 0;
        }
    }
    site_entry *e = entry(id);
    Py_INCREF(code);
    e->code = code;
    e->lasti = lasti;
    e->skip = (uint8_t)is_skipped(code);
    e->formatted = 0;
    e->frag = NULL;
    e->frag_len = 0;
    size_t j = hash_key(code, lasti) & (table_cap - 1);
    while (table[j].id) {
        j = (j + 1) & (table_cap - 1);
    }
    table[j].code = code;
    table[j].lasti = lasti;
    table[j].id = id;
    table_used++;
    n_sites = id + 1;
    return id;
}

static inline uint32_t
lookup(PyObject *code, int lasti)
{
    if (table_cap == 0) {
        return 0;
    }
    size_t j = hash_key(code, lasti) & (table_cap - 1);
    for (;;) {
        slot_t *s = &table[j];
        if (s->id == 0) {
            return 0;
        }
        if (s->code == (void *)code && s->lasti == lasti) {
            return s->id;
        }
        j = (j + 1) & (table_cap - 1);
    }
}

/* -- reading the interpreter's frames ---------------------------------------------------- */
#if PY_VERSION_HEX >= 0x030D0000
typedef _PyInterpreterFrame frame_t;
static inline frame_t *current_frame(PyThreadState *ts) { return ts->current_frame; }
static inline int
frame_site(frame_t *f, PyObject **code, int *lasti)
{
    if (f->owner == FRAME_OWNED_BY_CSTACK) {
        return 0;
    }
    PyObject *c = f->f_executable;
    if (c == NULL || !PyCode_Check(c)) {
        return 0;
    }
    *code = c;
    *lasti = (int)((char *)f->instr_ptr - (char *)_PyCode_CODE((PyCodeObject *)c));
    return 1;
}
static inline frame_t *previous(frame_t *f) { return f->previous; }
#elif PY_VERSION_HEX >= 0x030B0000
typedef _PyInterpreterFrame frame_t;
static inline frame_t *current_frame(PyThreadState *ts) { return ts->cframe->current_frame; }
static inline int
frame_site(frame_t *f, PyObject **code, int *lasti)
{
#if PY_VERSION_HEX >= 0x030C0000
    if (f->owner == FRAME_OWNED_BY_CSTACK) {
        return 0;
    }
#endif
    PyCodeObject *c = f->f_code;
    if (c == NULL) {
        return 0;
    }
    *code = (PyObject *)c;
    *lasti = (int)((char *)f->prev_instr - (char *)_PyCode_CODE(c));
    return 1;
}
static inline frame_t *previous(frame_t *f) { return f->previous; }
#else
typedef PyFrameObject frame_t;
static inline frame_t *current_frame(PyThreadState *ts) { return ts->frame; }
static inline int
frame_site(frame_t *f, PyObject **code, int *lasti)
{
    *code = (PyObject *)f->f_code;
    *lasti = f->f_lasti * (int)sizeof(_Py_CODEUNIT);
    return 1;
}
static inline frame_t *previous(frame_t *f) { return f->f_back; }
#endif

uint32_t
ts_site_of_caller(void)
{
    PyThreadState *ts = PyThreadState_GET();
    frame_t *f = current_frame(ts);
    for (int depth = 0; f != NULL && depth < 64; depth++, f = previous(f)) {
        PyObject *code;
        int lasti;
        if (!frame_site(f, &code, &lasti)) {
            continue;
        }
        uint32_t id = lookup(code, lasti);
        if (UNLIKELY(id == 0)) {
            id = intern_site(code, lasti);
            if (id == 0) {
                return 0;
            }
        }
        if (LIKELY(!entry(id)->skip)) {
            return id;
        }
    }
    return 0;
}

/* -- formatting (flusher, GIL held) ------------------------------------------------------ */
/* JSON-escape UTF-8 `s` into `out` the way orjson does; returns the length written. `out`
 * must have room for 6 * len + 2 bytes. */
static Py_ssize_t
json_string(char *out, const char *s, Py_ssize_t len)
{
    static const char hex[] = "0123456789abcdef";
    char *p = out;
    *p++ = '"';
    for (Py_ssize_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)s[i];
        switch (ch) {
        case '"': *p++ = '\\'; *p++ = '"'; break;
        case '\\': *p++ = '\\'; *p++ = '\\'; break;
        case '\n': *p++ = '\\'; *p++ = 'n'; break;
        case '\r': *p++ = '\\'; *p++ = 'r'; break;
        case '\t': *p++ = '\\'; *p++ = 't'; break;
        case '\b': *p++ = '\\'; *p++ = 'b'; break;
        case '\f': *p++ = '\\'; *p++ = 'f'; break;
        default:
            if (ch < 0x20) {
                *p++ = '\\'; *p++ = 'u'; *p++ = '0'; *p++ = '0';
                *p++ = hex[ch >> 4]; *p++ = hex[ch & 15];
            }
            else {
                *p++ = (char)ch;
            }
        }
    }
    *p++ = '"';
    return p - out;
}

static int
format_entry(site_entry *e)
{
    e->formatted = 1;
    if (e->skip) {
        return 0;
    }
    PyCodeObject *code = (PyCodeObject *)e->code;
    int line = PyCode_Addr2Line(code, e->lasti);
    if (line < 0) {
        line = 0;
    }
    PyObject *func = PyObject_GetAttrString((PyObject *)code, "co_qualname");
    if (func == NULL) {
        PyErr_Clear();
        func = code->co_name;
        Py_XINCREF(func);
    }
    PyObject *where = PyUnicode_FromFormat("%U:%d", code->co_filename, line);
    if (where == NULL || func == NULL || !PyUnicode_Check(func)) {
        Py_XDECREF(where);
        Py_XDECREF(func);
        return -1;
    }
    Py_ssize_t wlen, flen;
    const char *w = PyUnicode_AsUTF8AndSize(where, &wlen);
    const char *fn = w ? PyUnicode_AsUTF8AndSize(func, &flen) : NULL;
    if (w == NULL || fn == NULL) {
        Py_DECREF(where);
        Py_DECREF(func);
        return -1;
    }
    char *buf = (char *)PyMem_RawMalloc(6 * (wlen + flen) + 32);
    if (buf == NULL) {
        Py_DECREF(where);
        Py_DECREF(func);
        PyErr_NoMemory();
        return -1;
    }
    char *p = buf;
    memcpy(p, ",\"site\":", 8);
    p += 8;
    p += json_string(p, w, wlen);
    memcpy(p, ",\"func\":", 8);
    p += 8;
    p += json_string(p, fn, flen);
    e->frag = buf;
    e->frag_len = p - buf;
    Py_DECREF(where);
    Py_DECREF(func);
    return 0;
}

int
ts_sites_format_pending(void)
{
    for (; formatted_upto < n_sites; formatted_upto++) {
        if (format_entry(entry(formatted_upto)) < 0) {
            /* A site that cannot be formatted (a code object with an odd file name) is left
             * without one; the rest go on. */
            PyErr_Clear();
        }
    }
    return 0;
}

uint32_t
ts_sites_count(void)
{
    return n_sites;
}

const char *
ts_site_fragment(uint32_t id, Py_ssize_t *len)
{
    if (id == 0 || id >= formatted_upto) {
        return NULL;
    }
    site_entry *e = entry(id);
    *len = e->frag_len;
    return e->frag;
}

PyObject *
ts_site_code(uint32_t id, int *lasti)
{
    if (id == 0 || id >= n_sites || entry(id)->skip) {
        return NULL;
    }
    *lasti = entry(id)->lasti;
    return entry(id)->code;
}

/* site_info(id) -> (code, lasti, skip) | None: for tests. */
PyObject *
ts_site_info(PyObject *self, PyObject *args)
{
    unsigned int id;
    if (!PyArg_ParseTuple(args, "I:site_info", &id)) {
        return NULL;
    }
    if (id == 0 || id >= n_sites) {
        Py_RETURN_NONE;
    }
    site_entry *e = entry(id);
    return Py_BuildValue("(Oii)", e->code, e->lasti, (int)e->skip);
}

/* set_skip(prefixes: tuple[str], files: frozenset[str]): the skip policy (sites.py). */
static PyObject *
set_skip(PyObject *self, PyObject *args)
{
    PyObject *prefixes, *files;
    if (!PyArg_ParseTuple(args, "O!O!:set_skip", &PyTuple_Type, &prefixes, &PyFrozenSet_Type,
                          &files)) {
        return NULL;
    }
    Py_INCREF(prefixes);
    Py_XSETREF(skip_prefixes, prefixes);
    Py_INCREF(files);
    Py_XSETREF(skip_files, files);
    Py_RETURN_NONE;
}

static PyMethodDef site_methods[] = {
    {"set_skip", set_skip, METH_VARARGS, "Set the skip policy (prefixes, files)."},
    {"site_info", ts_site_info, METH_VARARGS, "(code, lasti, skip) of a site id, for tests."},
    {NULL, NULL, 0, NULL},
};

int
ts_sites_init(PyObject *module)
{
    return PyModule_AddFunctions(module, site_methods);
}
