"""The JSON Schema of ``tracedsync analyze --format json`` (report version 1).

docs/analysis.md shows this very schema (a test keeps the two equal).
"""

from __future__ import annotations

from typing import Any

_INT = {"type": "integer"}
_STR = {"type": "string"}
_NSTR = {"type": ["string", "null"]}
_NINT = {"type": ["integer", "null"]}


def _obj(
    props: dict[str, Any], extra: bool = False, optional: dict[str, Any] | None = None
) -> dict[str, Any]:
    return {
        "type": "object",
        "required": sorted(props),
        "properties": {**props, **(optional or {})},
        "additionalProperties": extra,
    }


# Only in a report over several hosts: the host of a thread or a log, the list of hosts, and
# "clock": "wall" (its times are then wall-clock times, not each host's monotonic clock).
_HOST = {"host": _STR}
_THREAD = _obj({"pid": _INT, "tid": _INT, "name": _STR}, optional=_HOST)
_DIST = _obj(
    {
        "count": _INT,
        "total": _INT,
        "min": _INT,
        "max": _INT,
        "p50": _INT,
        "p95": _INT,
        "p99": _INT,
        "buckets": {
            "type": "array",
            "description": "[low_ns, high_ns, count] per log bucket",
            "items": {"type": "array", "items": _INT, "minItems": 3, "maxItems": 3},
        },
    }
)
_ROW = _obj(
    {
        "key": _STR,
        "label": _STR,
        "kind": _STR,
        "func": _NSTR,
        "created_at": _NSTR,
        "prims": {"type": "array", "items": _STR},
        "acquisitions": _INT,
        "contended": _INT,
        "failed": _INT,
        "timeouts": _INT,
        "contended_share": {"type": "number"},
        "max_depth": _INT,
        "wait": {"$ref": "#/$defs/dist"},
        "hold": {"$ref": "#/$defs/dist"},
        "threads": {"type": "array", "items": {"$ref": "#/$defs/thread"}},
        "thread_count": _INT,
        "processes": {"type": "array", "items": _INT},
        "cond_waits": _INT,
        "cond_timeouts": _INT,
        "notifies": _INT,
        "unheard_notifies": _INT,
        "misuse": _INT,
        "other_events": {"type": "object", "additionalProperties": _INT},
        "other_wait": {"$ref": "#/$defs/dist"},
        "other_timeouts": _INT,
        "counters_only": {"type": "boolean"},
    }
)
_FINDING = _obj(
    {
        "kind": _STR,
        "severity": {"enum": ["info", "warning", "error"]},
        "message": _STR,
        "call_sites": {"type": "array", "items": _STR},
        "threads": {"type": "array", "items": {"$ref": "#/$defs/thread"}},
        "processes": {"type": "array", "items": _INT},
        "prims": {"type": "array", "items": _STR},
        "count": _INT,
        "details": {"type": "object"},
    },
    optional={
        "primitives": {"type": "array", "items": _obj(
            {"prim": _STR, "kind": _STR, "name": _NSTR, "var": _NSTR, "created_at": _NSTR,
             "func": _NSTR, "label": _STR})},
        "tests": {"type": "array", "items": _STR},
        "key": _STR,
    },
)
_SERIES = _obj(
    {
        "prim": _STR,
        "label": _STR,
        "waits": {"type": "array", "items": _INT},
        "wait_ns": {"type": "array", "items": _INT},
    }
)
_SOURCE = _obj(
    {
        "path": _STR,
        "pid": _NINT,
        "events": _INT,
        "bytes": _INT,
        "problems": _INT,
        "sessions": {"type": "array", "items": {"type": "object"}},
        "ended": {"type": "boolean"},
        "dropped": _INT,
        "first_ts": _NINT,
        "last_ts": _NINT,
    },
    optional=_HOST,
)

REPORT_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "tracedsync analyze report",
    **_obj(
        {
            "version": {"const": 1},
            "tracedsync": _STR,
            "options": _obj({"long_hold_ns": _INT, "long_wait_ns": _INT}),
            "totals": _obj(
                {
                    "files": _INT,
                    "events": _INT,
                    "processes": _INT,
                    "threads": _INT,
                    "primitives": _INT,
                    "first_ts": _NINT,
                    "last_ts": _NINT,
                    "span_ns": _INT,
                    "event_counts": {"type": "object", "additionalProperties": _INT},
                },
                optional={
                    "hosts": {"type": "array", "items": _STR},
                    "clock": {"enum": ["wall"]},
                },
            ),
            "sources": {"type": "array", "items": _SOURCE},
            "problems": {
                "type": "array",
                "items": _obj({"path": _STR, "line": _INT, "reason": _STR}),
            },
            "problem_count": _INT,
            "threads": {"type": "array", "items": {"$ref": "#/$defs/thread"}},
            "primitives": {"type": "array", "items": {"$ref": "#/$defs/row"}},
            "creation_sites": {"type": "array", "items": {"$ref": "#/$defs/row"}},
            "call_sites": {"type": "array", "items": {"$ref": "#/$defs/row"}},
            "timeline": _obj(
                {
                    "start_ts": _INT,
                    "column_ns": _INT,
                    "columns": _INT,
                    "series": {"type": "array", "items": _SERIES},
                }
            ),
            "findings": {"type": "array", "items": {"$ref": "#/$defs/finding"}},
        },
        optional={"suppressed": {"type": "array", "items": {"$ref": "#/$defs/finding"}}},
    ),
    "$defs": {"thread": _THREAD, "dist": _DIST, "row": _ROW, "finding": _FINDING},
}
