"""A tolerant, streaming reader of tracedsync JSON-lines logs.

Bad input never stops the reading: a line that is not JSON, is not an object, lacks the common
fields, or is cut short (a process killed mid-write) is reported as a `Problem` with its file and
line number, and the rest is read. A file whose ``session`` header announces a schema newer than
this reader knows raises `SchemaError`: guessing at a future format would give wrong answers.

Two ways in: `read_file` yields checked events one by one (simple, for small jobs and tests);
`read_chunks` is the fast path of ``tracedsync analyze``: it reads 64 KiB at a time and parses a
whole chunk with one ``orjson.loads`` call (the lines joined into a JSON array), falling back to
line-by-line parsing only for a chunk that holds a bad line. It leaves the per-event checks to
its caller, who does them for free by catching the exceptions a malformed event raises.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import orjson

from .._version import SCHEMA_VERSION

Event = dict[str, Any]
_REQUIRED = ("event", "ts", "pid")


class SchemaError(Exception):
    """A log was written by a newer tracedsync than this one."""


@dataclasses.dataclass(frozen=True)
class Problem:
    """One line that could not be used."""

    path: str
    line: int
    reason: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.reason}"


def log_files(paths: Iterable[str]) -> list[str]:
    """Expand directories (recursively) into their ``tracedsync-*.jsonl`` files (sorted); keep
    files as given. Raises `FileNotFoundError` for a path that does not exist."""
    from .inputs import log_files as expand

    return expand(paths)


def process_sets(paths: Iterable[str]) -> list[list[str]]:
    """Log files grouped by process, each group oldest first (see `inputs.process_sets`)."""
    from .inputs import process_sets as group

    return group(paths)


def check_session(ev: Event, path: str, lineno: int, problems: list[Problem]) -> None:
    """Check a ``session`` header: a missing schema is a problem, a newer one a `SchemaError`."""
    schema = ev.get("schema")
    if not isinstance(schema, int) or isinstance(schema, bool):
        problems.append(Problem(path, lineno, "session header without a schema"))
    elif schema > SCHEMA_VERSION:
        raise SchemaError(
            f"{path}:{lineno}: written with event schema {schema}; this tracedsync "
            f"reads schema {SCHEMA_VERSION} and older. Upgrade tracedsync."
        )


CHUNK_BYTES = 1 << 16  # small enough to stay in cache: ~2x faster than 4 MiB chunks


def read_chunks(
    path: str, problems: list[Problem], chunk_bytes: int = CHUNK_BYTES
) -> Iterator[tuple[Sequence[int], list[Any]]]:
    """Yield ``(line numbers, parsed values)`` for successive chunks of complete lines.

    Values are whatever each line parsed to (normally event dicts; not checked here). Lines
    that are blank are skipped; lines that are not JSON, and a last line without its newline
    (a torn write), are reported in ``problems``.
    """
    lineno = 1
    rest = b""
    with open(path, "rb") as fh:
        while True:
            block = fh.read(chunk_bytes)
            if not block:
                break
            data = rest + block if rest else block
            cut = data.rfind(b"\n") + 1
            if cut == 0:
                rest = data
                continue
            rest = data[cut:]
            body = data[: cut - 1]
            n = body.count(b"\n") + 1
            try:
                values = orjson.loads(b"[" + body.replace(b"\n", b",") + b"]")
            except orjson.JSONDecodeError:
                values = None
            if values is not None and len(values) == n:
                yield range(lineno, lineno + n), values
            else:
                yield _parse_lines(path, body, lineno, problems)
            lineno += n
    if rest.strip():
        problems.append(Problem(path, lineno, "truncated last line (no newline)"))


def _parse_lines(
    path: str, body: bytes, lineno: int, problems: list[Problem]
) -> tuple[list[int], list[Any]]:
    lines: list[int] = []
    values: list[Any] = []
    for i, raw in enumerate(body.split(b"\n"), lineno):
        if not raw.strip():
            continue
        try:
            values.append(orjson.loads(raw))
        except orjson.JSONDecodeError as exc:
            problems.append(Problem(path, i, f"not valid JSON ({exc})"))
            continue
        lines.append(i)
    return lines, values


def read_file(path: str, problems: list[Problem]) -> Iterator[Event]:
    """Yield the events of one file in file order; append unusable lines to ``problems``."""
    with open(path, "rb") as fh:
        for lineno, raw in enumerate(fh, 1):
            if not raw.strip():
                continue
            if not raw.endswith(b"\n"):
                problems.append(Problem(path, lineno, "truncated last line (no newline)"))
                continue
            try:
                ev = orjson.loads(raw)
            except orjson.JSONDecodeError as exc:
                problems.append(Problem(path, lineno, f"not valid JSON ({exc})"))
                continue
            if not isinstance(ev, dict):
                problems.append(Problem(path, lineno, "not a JSON object"))
                continue
            missing = [k for k in _REQUIRED if k not in ev]
            if missing:
                problems.append(Problem(path, lineno, f"missing field(s) {', '.join(missing)}"))
                continue
            bad = _wrong_types(ev)
            if bad:
                problems.append(Problem(path, lineno, f"wrong type for {bad}"))
                continue
            if ev["event"] == "session":
                check_session(ev, path, lineno, problems)
            yield ev


def _wrong_types(ev: Event) -> str | None:
    """The first common field whose type is wrong, quoted, or None if they are all right."""
    if not isinstance(ev["event"], str):
        return "'event'"
    for key in ("ts", "pid"):
        if type(ev[key]) is not int:
            return repr(key)
    tid = ev.get("tid")
    if tid is not None and type(tid) is not int:
        return "'tid'"
    prim = ev.get("prim")
    if prim is not None and not isinstance(prim, str):
        return "'prim'"
    return None


def read_all(paths: Iterable[str], problems: list[Problem]) -> Iterator[Event]:
    """Yield the events of every file under ``paths``, file after file."""
    for path in log_files(paths):
        yield from read_file(path, problems)
