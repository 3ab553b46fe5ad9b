"""Hot-path op tuples → schema events, by decoders generated from the schema's op table.

The application thread records a plain tuple whose first item is an ``OP_*`` code; all naming
(native thread ids, call-site strings, event names) happens here, in the flusher. How each
tuple is laid out and how its positions become fields is declared once, in
`tracedsync._core.schema.OPS`; this module turns each entry into one small Python function,
compiled once per process: unpack the tuple, build the event as one dict literal, add the few
fields that are sometimes absent. That is the code one would write by hand for each op, and runs
as fast (the flusher's CPU per event is what it costs; interpreting the rules per event would
cost several function calls per field). `source` shows the code generated for an op.
"""

from __future__ import annotations

import keyword
import os
from collections.abc import Callable
from typing import Any

from .._core.schema import OPS, Op, Rule
from .._core.sites import SiteFormatter

Event = dict[str, Any]
OpDecoder = Callable[[tuple[Any, ...]], Event]
_Factory = Callable[[dict[int, int], int, SiteFormatter, Callable[[Event, Any], None]], OpDecoder]
# What the generated code sees, besides the tuple's positions: the ident → native id map, the
# process id, the call-site formatter and `_put_key`. Positions must not shadow them.
_CLOSURE = ("_tids", "_pid", "_site", "_put_key")


class Decoder:
    """Expands op tuples of one process into event dicts, in stream order.

    It keeps the ident → native thread id map (updated by ``thread`` events, so a reused ident is
    renamed at the right point of the stream) and a call-site cache. ``pid`` and the ``tids``
    dict are bound into the decoders when it is made: update ``tids`` in place, never rebind it.
    """

    def __init__(self, pid: int | None = None) -> None:
        self.pid = os.getpid() if pid is None else pid
        self.tids: dict[int, int] = {}
        self.site = SiteFormatter()
        self._table: dict[int, OpDecoder] = {
            code: make(self.tids, self.pid, self.site, _put_key)
            for code, make in _FACTORIES.items()
        }

    def __call__(self, item: tuple[Any, ...]) -> Event:
        return self._table[item[0]](item)


def _put_key(ev: Event, key: Any) -> None:
    """What part of a Value or Array was read or written: nothing for ``.value`` of a Value,
    ``index`` (an int, or ``"start:stop"``/``"start:stop:step"`` for a slice, normalised to the
    array's length) for an item, ``field`` for a structure field or a char array's value/raw."""
    if key is None:
        return
    if type(key) is int:
        ev["index"] = key
    elif type(key) is tuple:
        start, stop, step = key
        ev["index"] = f"{start}:{stop}" if step == 1 else f"{start}:{stop}:{step}"
    else:
        ev["field"] = key


# -- code generation ---------------------------------------------------------------------------
def _expr(rule: Rule) -> str | None:
    """The value of a rule that always writes one field, as an expression; None for the others
    (they become statements after the dict literal)."""
    s = rule.src[0] if rule.src else ""
    if rule.how == "copy":
        return s
    if rule.how == "tid":
        return f"None if {s} is None else _tids.get({s}, {s})"
    if rule.how == "tids":
        return f"[None if _w is None else _tids.get(_w, _w) for _w in {s}]"
    if rule.how == "timeout":  # -1 is how a lock says "no timeout"
        return f"None if {s} is None or {s} < 0 else {s}"
    if rule.how == "const":
        return repr(rule.value)
    return None


def _statements(rule: Rule) -> list[str]:
    """A rule that is not always one field, as statements on ``ev``."""
    s = rule.src[0] if rule.src else ""
    f = repr(rule.field)
    if rule.how == "opt":
        return [f"if {rule.when or s} is not None:", f"    ev[{f}] = {s}"]
    if rule.how == "flag":
        return [f"if {s}:", f"    ev[{f}] = True"]
    if rule.how == "site":
        return ["if _s is not None:", f"    ev[{f}] = _s", f"    ev[{rule.also!r}] = _sf"]
    if rule.how == "site_always":
        return [f"ev[{f}], ev[{rule.also!r}] = _site({', '.join(rule.src)})"]
    if rule.how == "key":
        return [f"_put_key(ev, {s})"]
    if rule.how == "assigned":  # read once per line by the site formatter
        return [f"_a = _site.assigned({', '.join(rule.src)})", "if _a is not None:",
                f"    ev[{f}] = _a"]
    if rule.how == "merge":
        return [f"if {s}:", f"    ev.update({s})"]
    if rule.how == "held_by":  # semaphores: (ident, permits) pairs, named by thread here
        return [f"if {f} in ev:",
                f"    ev[{f}] = [{{'tid': None if _i is None else _tids.get(_i, _i), "
                f"'ident': _i, 'permits': _n}} for _i, _n in ev[{f}]]"]
    raise ValueError(f"a rule of kind {rule.how!r} is no statement")


def source(op: Op) -> str:
    """The Python source of the decoder factory generated for ``op``."""
    names = ("_op", "ts", "ident", *op.layout)
    for n in op.layout:
        if not n.isidentifier() or keyword.iskeyword(n) or n.startswith("_"):
            raise ValueError(f"{op.const}: position {n!r} cannot be a variable")
    pre: list[str] = [f"{', '.join(names)} = item"]
    if op.event is None:
        event = "name"
    elif isinstance(op.event, str):
        event = repr(op.event)
    else:
        event = f"{op.event[1]!r} if {op.select} else {op.event[0]!r}"
    tid = "_tids.get(ident, ident)"
    entries = [("event", event), ("ts", "ts"), ("pid", "_pid")]
    post: list[str] = []
    for rule in op.rules:
        if rule.how == "thread":  # the thread's own event: map its ident, and name it
            pre.append(f"_tids[ident] = {rule.src[0]}")
            tid = rule.src[0]
            continue
        if rule.how == "site":
            pre.append(f"_s, _sf = _site({', '.join(rule.src)})")
        expr = _expr(rule)
        if expr is not None and not post:
            entries.append((rule.field, expr))
        elif expr is not None:
            post.append(f"ev[{rule.field!r}] = {expr}")
        else:
            post.extend(_statements(rule))
    entries.insert(3, ("tid", tid))
    last = op.rules[-1]
    if last.how == "opt" and post == _statements(last):
        # One field sometimes absent, at the end (`release`'s hold_ns): two literals are
        # cheaper than a literal and a store.
        whole = _literal([*entries, (last.field, last.src[0])])
        body = [*pre, f"if {last.when or last.src[0]} is None:",
                f"    return {_literal(entries)}", f"return {whole}"]
    elif post:
        body = [*pre, f"ev = {_literal(entries)}", *post, "return ev"]
    else:
        body = [*pre, f"return {_literal(entries)}"]
    lines = [f"def make({', '.join(_CLOSURE)}):", "    def decode(item):"]
    lines += ["        " + line for line in body]
    lines.append("    return decode")
    return "\n".join(lines) + "\n"


def _literal(entries: list[tuple[str, str]]) -> str:
    return "{" + ", ".join(f"{k!r}: {v}" for k, v in entries) + "}"


def _factory(op: Op) -> _Factory:
    namespace: dict[str, Any] = {}
    exec(compile(source(op), f"<tracedsync decoder {op.const}>", "exec"), namespace)
    make: _Factory = namespace["make"]
    return make


_FACTORIES: dict[int, _Factory] = {op.code: _factory(op) for op in OPS}
