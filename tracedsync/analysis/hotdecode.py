"""Typed decoding of log lines for the scanner: acquire/release fields as msgspec Structs.

A chunk of lines is first decoded at once (msgspec's ``decode_lines``) as a tagged union on
``event`` (`decode_typed`): an acquire is an `Acquire`, a release a `Release`, Structs that
declare only the fields the acquire/release loop reads, the ones every usable event has being
required (so the loop does not test them); any other known event is an empty Struct of its own
(its fields are skipped by msgspec without being built); a line whose event is anything but an
acquire or release is decoded again, as a dict, by orjson. A chunk that does not decode that way
(an unknown event name, an acquire or release missing a field or with a field of another type)
is decoded as `Hot`, a Struct with every field optional and any ``event``; one that does not
decode as a whole even so (a line that is not JSON, a blank line) is decoded line by line, so
that the bad line alone is set apart.

What makes an acquire or release *usable* is defined here, once, by `hot_problem`; the Python
loop (`kernel.PyKernel`) and the native one (`_cscan`) apply exactly this rule: the native
scanner hands every line it is not sure of back to Python, which decides with this module.
"""

from __future__ import annotations

import functools
import operator
from typing import Annotated, Any, Literal

import msgspec

from .._core.schema import EVENTS

I64 = Annotated[int, msgspec.Meta(ge=-(2**63), le=2**63 - 1)]
HOT_EVENTS = frozenset({"acquire", "release"})


class Hot(msgspec.Struct, gc=False):
    """The fields of one event that the acquire/release loop reads (``event`` required)."""

    event: str
    ts: I64 | None = None
    tid: I64 | None = None
    prim: str | None = None
    site: str | None = None
    func: str | None = None
    depth: I64 | None = None
    ok: bool | None = None
    contended: bool | None = None
    wait_ns: I64 | None = None
    hold_ns: I64 | None = None
    restored: bool | None = None
    blocking: bool | None = None
    timeout: Any = None  # only 0 matters (a try, as blocking=False); anything else ignored


class TracedHot(Hot):
    """`Hot` and the fields only the Perfetto trace reads (decoding them costs a little)."""

    blocked_by: Any = None  # an int, else ignored
    saved_depth: Any = None  # set on a release before a condition wait


class Acquire(msgspec.Struct, gc=False, kw_only=True, tag_field="event", tag="acquire"):
    """An acquire as `decode_typed` gives it: the fields of `Hot` an acquire uses, those that
    every usable acquire has required, in the order the recorder writes them."""

    ts: I64
    tid: I64
    prim: str
    depth: I64 | None = None
    ok: bool
    contended: bool
    wait_ns: I64 | None = None
    blocking: bool | None = None
    timeout: Any = None  # only 0 matters (`blocking_of`)
    restored: bool | None = None
    site: str | None = None
    func: str | None = None


class Release(msgspec.Struct, gc=False, tag_field="event", tag="release"):
    """A release as `decode_typed` gives it (every usable release has these four fields)."""

    ts: I64
    tid: I64
    prim: str
    depth: I64
    hold_ns: I64 | None = None


# The other events of the schema (`tracedsync._core.schema`): each decodes to an empty Struct of
# its own, which the loop hands back by line. Another name makes its chunk decode as `Hot`.
OTHER_EVENTS = tuple(kind.name for kind in EVENTS if kind.name not in HOT_EVENTS)
_OTHER_TYPES = tuple(
    msgspec.defstruct(f"Other_{name}", [], gc=False, tag_field="event", tag=name)
    for name in OTHER_EVENTS
)
Typed: Any = functools.reduce(operator.or_, (Acquire, Release, *_OTHER_TYPES))  # their union


_TYPED: tuple[type[Any], type[Any]] = (Acquire, Release)
INTERNED_FIELDS = ("prim", "site", "func", "tid")
INTERN_FAILURES = 16  # chunks the interning decoder may fail on, then one in INTERN_RATE
INTERN_RATE = 64
INTERN_VALUES = 1024  # values it may know (of all its fields; a new decoder takes ~1 ms)


class TypedDecoder:
    """`decode_typed` that learns the values of `INTERNED_FIELDS` (one decoder per stream).

    Once a chunk is decoded, the primitives, call sites, functions and threads it named are
    declared to msgspec as Literals: in the next chunks these fields decode to the very same
    objects, not to a new string or int per event, and the kernel's dict lookups on them find
    their hashes cached and compare by identity (about 8 % of the Python scanner's time on a
    real log). A chunk with a value not yet known fails that decoding and is decoded again
    plainly, and its values are learnt. The same lines decode to equal values either way, and
    are rejected alike: only the speed differs. Plain decoding only, from when more than
    `INTERN_FAILURES` chunks failed and more than one in `INTERN_RATE` (new threads, say,
    all along the log), or more than `INTERN_VALUES` values are known (locks made by the
    thousand): what a failure costs (a chunk decoded twice, a new decoder) then stays small.
    """

    def __init__(self) -> None:
        self.known: dict[str, dict[Any, None]] = {name: {} for name in INTERNED_FIELDS}
        self.chunks = 0
        self.failures = 0
        self.learning = True
        self.rebuilds = 0
        self._decode: Any = None  # the interning decoder, once something was learnt
        self._types = _TYPED  # its Acquire and Release
        self.types = _TYPED  # the Acquire and Release classes of the last decoded chunk

    def decode(self, body: bytes | memoryview) -> list[Any]:
        """The events of the lines ``body``; raises as `decode_typed`."""
        self.chunks += 1
        if self._decode is not None:
            try:
                evs: list[Any] = self._decode(body)
            except msgspec.ValidationError:  # a new value (or a chunk plain decoding rejects)
                self.failures += 1
                if (
                    self.failures > INTERN_FAILURES
                    and self.failures * INTERN_RATE > self.chunks
                ):
                    self._stop()
            else:
                self.types = self._types
                return evs
        evs = decode_typed(body)
        self.types = _TYPED
        if self.learning:
            self._learn(evs)
        return evs

    def _stop(self) -> None:
        self.learning = False
        self._decode = None
        self._types = _TYPED

    def _learn(self, evs: list[Any]) -> None:
        prims, sites, funcs, tids = (self.known[name] for name in INTERNED_FIELDS)
        sizes = sum(map(len, self.known.values()))
        for ev in evs:
            cls = type(ev)
            if cls is Acquire:
                sites[ev.site] = funcs[ev.func] = None
            elif cls is not Release:
                continue
            prims[ev.prim] = tids[ev.tid] = None
        sites.pop(None, None)
        funcs.pop(None, None)
        if sum(map(len, self.known.values())) == sizes:
            return
        if sum(map(len, self.known.values())) > INTERN_VALUES:
            self._stop()
            return
        self._types = _interned_types(self.known)
        self._decode = msgspec.json.Decoder(
            functools.reduce(operator.or_, (*self._types, *_OTHER_TYPES))
        ).decode_lines
        self.rebuilds += 1


def _interned_types(known: dict[str, dict[Any, None]]) -> tuple[type[Any], type[Any]]:
    """`Acquire` and `Release` with the fields of `INTERNED_FIELDS` as Literals of the
    ``known`` values (a field with none keeps its type)."""
    out = []
    for base in _TYPED:
        fields: list[Any] = []
        for f in msgspec.structs.fields(base):
            t = f.type
            values = tuple(known.get(f.name, ()))
            if values:
                t = Literal[values] if f.required else Literal[values] | None
            fields.append((f.name, t) if f.required else (f.name, t, f.default))
        out.append(
            msgspec.defstruct(
                f"Interned{base.__name__}", fields, gc=False, kw_only=base is Acquire,
                tag_field="event", tag=base.__struct_config__.tag,
            )
        )
    return out[0], out[1]


# (field, accepted types, required for acquire, required for release)
_INT = (int,)
_FIELDS: tuple[tuple[str, tuple[type, ...], bool, bool], ...] = (
    ("ts", _INT, True, True),
    ("tid", _INT, True, True),
    ("prim", (str,), True, True),
    ("site", (str,), False, False),
    ("func", (str,), False, False),
    ("depth", _INT, False, True),
    ("ok", (bool,), True, False),
    ("contended", (bool,), True, False),
    ("wait_ns", _INT, False, False),
    ("hold_ns", _INT, False, False),
    ("restored", (bool,), False, False),
    ("blocking", (bool,), False, False),
)

decode_line = msgspec.json.Decoder(TracedHot).decode
# Lines of JSON, each a Hot; blank lines are skipped (the caller then counts them apart).
decode_lines = msgspec.json.Decoder(Hot).decode_lines
decode_lines_traced = msgspec.json.Decoder(TracedHot).decode_lines
# Lines as `Acquire`, `Release` and the other events' Structs (see the module docstring).
decode_typed = msgspec.json.Decoder(Typed).decode_lines


def hot_problem(ev: dict[str, Any]) -> str | None:
    """Why the acquire or release ``ev`` (a dict) cannot be used, or None if it can.

    An event is usable when every field of `Hot` it carries has its type (null allowed; ints
    within 64 bits; ``True`` is not an int), it has ``ts``, ``tid`` and ``prim``, and: an
    acquire has ``ok`` and ``contended``, ``wait_ns`` when contended and ``depth`` when ok; a
    release has ``depth``.
    """
    acquire = ev.get("event") == "acquire"
    for name, types, req_acq, req_rel in _FIELDS:
        v = ev.get(name)
        if v is None:
            if req_acq if acquire else req_rel:
                return f"missing field {name!r}"
            continue
        if type(v) not in types:
            return f"wrong type for {name!r}"
        if type(v) is int and not -(2**63) <= v < 2**63:
            return f"value out of range for {name!r}"
    if acquire:
        if ev["contended"] and ev.get("wait_ns") is None:
            return "missing field 'wait_ns'"
        if ev["ok"] and ev.get("depth") is None:
            return "missing field 'depth'"
    return None


def blocking_of(blocking: Any, timeout: Any) -> Any:
    """``blocking`` as the kernels read it: False also for a try with ``timeout`` 0 (it could
    not wait: it counts as no timeout when it fails, and makes no lock-order edge when it
    succeeds), else as logged."""
    if type(timeout) in (int, float) and timeout == 0:
        return False
    return blocking


def usable(ev: Hot) -> bool:
    """`hot_problem` for a decoded `Hot` (whose types msgspec has already checked)."""
    if ev.ts is None or ev.tid is None or ev.prim is None:
        return False
    if ev.event == "acquire":
        ok, contended = ev.ok, ev.contended
        return (
            ok is not None
            and contended is not None
            and not (contended and ev.wait_ns is None)
            and not (ok and ev.depth is None)
        )
    return ev.depth is not None

