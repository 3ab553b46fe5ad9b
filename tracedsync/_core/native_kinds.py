"""The native recorder's record kinds: which op tuples the primitives record as binary records.

Each kind packs one op tuple of the event schema (`tracedsync._core.schema.OPS`) into a record:
the primitive's id, four 64-bit words (``w0``..``w3``), eight flag bits, the call site, and,
for a notify, the idents of the threads it woke. `PACKINGS` says where each position of the
tuple goes; `install` compiles each kind, from the schema's own decoding rules, into the two
small programs the C side runs (tracedsync/_core/_native_src/kinds.c): rendering the record to
the JSON line the Python decoder would write, and rebuilding the op tuple for the Python path.
A primitive records one with ``rec(kind, prim_pid, prim_n, bits, w0, w1, w2, w3, *idents)``.
"""

from __future__ import annotations

from typing import Any

import orjson

from . import schema

# Value sources (kinds.c: S_*): none, the primitive's id, a word, a flag bit, a list of idents
# whose count is in a word.
S_NONE, S_PRIM = 0, 1
S_W0 = 2
S_BIT0 = 8
S_TIDS = 16
T_INT, T_DUR, T_TID = 0, 1, 2
I_NAME, I_FIELD, I_OPT, I_CONST, I_FLAG, I_SITE, I_KEY = range(7)
_SITE_CODE, _SITE_POS = 255, 254

Source = tuple[int, int, int]
"""``(source, type, present)``: ``present`` is a flag bit that says the value is not None
(-1: always there)."""


def W(i: int, kind: int = T_INT, present: int = -1) -> Source:
    return (S_W0 + i, kind, present)


def B(i: int) -> Source:
    return (S_BIT0 + i, T_INT, -1)


NONE: Source = (S_NONE, T_INT, -1)
PRIM: Source = (S_PRIM, T_INT, -1)


def TIDS(count_word: int) -> Source:
    return (S_TIDS + count_word, T_INT, -1)


(K_NOTIFY, K_SEM_ACQUIRE, K_SEM_RELEASE, K_EVENT_SET, K_EVENT_WAIT, K_VALUE, K_MP_ACQUIRE,
 K_RELEASE) = range(8)

PACKINGS: dict[int, tuple[int, dict[str, Source]]] = {
    # notify(n): bit 0 notify_all; w0 n, w1 waiters, w2 how many woken (their idents follow)
    K_NOTIFY: (schema.OP_NOTIFY, {"prim": PRIM, "n": W(0), "waiters": W(1), "woken": TIDS(2),
                                  "all": B(0)}),
    # an uncontended acquire: bits ok, contended, blocking; w0 wait (ticks), w1 permits, w2 held
    K_SEM_ACQUIRE: (schema.OP_SEM_ACQUIRE, {
        "prim": PRIM, "ok": B(0), "contended": B(1), "wait_ns": W(0, T_DUR), "permits": W(1),
        "held": W(2), "blocking": B(2), "timeout": NONE}),
    K_SEM_RELEASE: (schema.OP_SEM_RELEASE, {
        "prim": PRIM, "n": W(0), "permits": W(1), "held": W(2), "for_others": W(3)}),
    # bit 0: set (else clear), bit 1: it was set
    K_EVENT_SET: (schema.OP_EVENT_SET, {"prim": PRIM, "flag": B(0), "was_set": B(1)}),
    # a wait that found the flag set: bits result, already_set; w0 waited (ticks)
    K_EVENT_WAIT: (schema.OP_EVENT_WAIT, {
        "prim": PRIM, "result": B(0), "already_set": B(1), "waited_ns": W(0, T_DUR),
        "timeout": NONE}),
    # bit 0 set (else get), bit 1: an index in w0 (else the whole value), bit 2 locked
    K_VALUE: (schema.OP_VALUE, {"prim": PRIM, "is_set": B(0), "key": W(0, T_INT, 1),
                                "locked": B(2)}),
    # bits ok, contended, blocking, restored, 4: a holder in w2 (pid), w3 (native tid);
    # w0 depth, w1 wait (ticks)
    K_MP_ACQUIRE: (schema.OP_MP_ACQUIRE, {
        "prim": PRIM, "depth": W(0), "ok": B(0), "contended": B(1), "wait_ns": W(1, T_DUR),
        "by_pid": W(2, T_INT, 4), "by_tid": W(3, T_INT, 4), "blocking": B(2), "timeout": NONE,
        "restored": B(3)}),
    # a release recorded from Python (a multiprocessing lock): w0 depth; bit 0: w1 is the hold
    # (ns; when the depth reached 0)
    K_RELEASE: (schema.OP_RELEASE, {"prim": PRIM, "depth": W(0), "hold_ns": W(1, T_INT, 0)}),
}


def _key(field: str) -> bytes:
    return b',"' + field.encode() + b'":'


def compile_kind(op_code: int, packing: dict[str, Source]) -> tuple[int, list[Any], list[Any]]:
    """``(tids_word, json program, tuple program)`` for kinds.c's ``define_kind``."""
    (op,) = [o for o in schema.OPS if o.code == op_code]
    tuple_prog: list[Any] = []
    for name in op.layout:
        if name == "code":
            tuple_prog.append((_SITE_CODE, T_INT, -1))
        elif name == "lineno":
            tuple_prog.append((_SITE_POS, T_INT, -1))
        else:
            tuple_prog.append(packing[name])
    tids_word = -1
    for src, _type, _present in packing.values():
        if src >= S_TIDS:
            tids_word = src - S_TIDS
    if isinstance(op.event, tuple):
        assert op.select is not None
        select = packing[op.select][0]
        assert S_BIT0 <= select < S_TIDS, "an event name is chosen by a flag bit"
        json: list[Any] = [(I_NAME, select, 0, -1, op.event[0].encode(), op.event[1].encode())]
    else:
        assert op.event is not None
        json = [(I_NAME, S_NONE, 0, -1, op.event.encode(), None)]
    for rule in op.rules:
        how = rule.how
        if how == "site":
            json.append((I_SITE, 0, 0, -1, None, None))
        elif how == "const":
            json.append((I_CONST, 0, 0, -1, _key(rule.field) + orjson.dumps(rule.value), None))
        elif how in ("copy", "timeout", "tids"):
            src, kind, present = packing[rule.src[0]]
            if how == "timeout":
                assert src == S_NONE, "binary records hold no timeout (floats take the tuples)"
            json.append((I_FIELD, src, kind, present, _key(rule.field), None))
        elif how == "tid":
            src, _kind, present = packing[rule.src[0]]
            json.append((I_FIELD, src, T_TID, present, _key(rule.field), None))
        elif how == "opt":
            assert rule.when in (None, rule.src[0]), "opt on another position: not packed"
            src, kind, present = packing[rule.src[0]]
            json.append((I_OPT, src, kind, present, _key(rule.field), None))
        elif how == "flag":
            src = packing[rule.src[0]][0]
            json.append((I_FLAG, src, 0, -1, _key(rule.field), None))
        elif how == "key":
            src, _kind, present = packing[rule.src[0]]
            json.append((I_KEY, src, T_INT, present, _key("index"), None))
        else:
            raise ValueError(f"rule {how!r} of {op.const} cannot be packed")
    return tids_word, json, tuple_prog


def install(native: Any) -> None:
    """Declare every kind to the extension."""
    for kind, (op_code, packing) in PACKINGS.items():
        tids_word, json, tuple_prog = compile_kind(op_code, packing)
        native.define_kind(kind, op_code, tids_word, json, tuple_prog)
