"""``--format json``: the report's documented JSON form (docs/analysis.md), keys sorted."""

from __future__ import annotations

from typing import Any, TextIO

import orjson

from .report import Report


def dumps(report: Report) -> bytes:
    """The report as indented JSON bytes, keys sorted, ending with a newline."""
    return orjson.dumps(
        report.to_dict(),
        option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS | orjson.OPT_APPEND_NEWLINE,
    )


def loads(data: bytes | str) -> Report:
    """A report back from `dumps` output."""
    return Report.from_dict(orjson.loads(data))


class JsonRenderer:
    """Writes `dumps` (report)."""

    def __init__(self, **_: Any) -> None:
        pass

    def render(self, report: Report, out: TextIO) -> None:
        out.write(dumps(report).decode())


RENDERER = JsonRenderer
