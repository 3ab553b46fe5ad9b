"""Typed decoding of log lines for the scanner: acquire/release fields as msgspec Structs.

Every line of a chunk is decoded as a `Hot` (msgspec's ``decode_lines``), a Struct that
declares only the fields the acquire/release loop reads (all optional, everything else skipped
by msgspec without building it); a line whose event is anything else is decoded again, as a
dict, by orjson. When a chunk does not decode as a whole (a bad line, a field of an unexpected
type, a blank line), it is decoded line by line, so that the bad line alone is set apart.

What makes an acquire or release *usable* is defined here, once, by `hot_problem`; the Python
loop (`kernel.PyKernel`) and the native one (`_cscan`) apply exactly this rule: the native
scanner hands every line it is not sure of back to Python, which decides with this module.
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec

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

