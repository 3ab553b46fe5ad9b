"""Regenerate, or check, what docs/events.md and docs/events.schema.json take from the event
schema table (tracedsync/_core/schema.py).

    python tools/gen_events_doc.py           # rewrite both files (make docs)
    python tools/gen_events_doc.py --check   # exit 1, saying what differs (make docs-check, CI)

docs/events.md is prose written by hand around generated blocks: the lines between
``<!-- generated: NAME -->`` and ``<!-- end generated -->`` are replaced by the field table of
event NAME (and the tables of the objects nested in it), or, for ``common``, of the fields of
every event; a block may name several events with the same fields (``notify notify_all``).
Every event of the table must be in one block, and every block name an event: an event added
to the table without a section in the docs fails the check. The title line carries the
schema version. docs/events.schema.json is written whole.
"""

from __future__ import annotations

import argparse
import difflib
import json
import re
import sys
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tracedsync._core.schema import (  # noqa: E402  (the checkout's, not an installed one)
    BY_NAME,
    COMMON,
    Field,
    json_schema,
)
from tracedsync._version import SCHEMA_VERSION  # noqa: E402

MARKDOWN = ROOT / "docs" / "events.md"
JSON_SCHEMA = ROOT / "docs" / "events.schema.json"
TITLE = f"# Event schema — version {SCHEMA_VERSION}"
_BLOCK = re.compile(
    r"^<!-- generated: (?P<names>[a-z_ ]+) -->\n.*?^<!-- end generated -->$", re.M | re.S)


def _type(f: Field) -> str:
    names: list[str] = [t for t in f.types if t != "list"]
    if "list" in f.types:
        if isinstance(f.items, str):
            item = "lists" if f.items == "list" else f.items
            names.insert(0, f"list of {item}")
        elif f.items is not None:
            names.insert(0, "list of objects")
        else:
            names.insert(0, "list")
    text = " \\| ".join(names)
    return f"{text}, optional" if f.optional else text


def _table(fields: tuple[Field, ...]) -> list[str]:
    rows = ["| field | type | meaning |", "|---|---|---|"]
    rows += [f"| `{f.name}` | {_type(f)} | {f.doc} |" for f in fields]
    return rows


def _tables(fields: tuple[Field, ...], path: str = "") -> list[str]:
    """The table of ``fields``, then one per object nested in them (``cycle`` entries...)."""
    out = _table(fields)
    for f in fields:
        where = f"{path}{f.name}"
        if isinstance(f.items, tuple):
            out += ["", f"Each `{where}` entry:", "", *_tables(f.items, f"{where}[].")]
        if f.fields:
            when = " (when not null)" if "null" in f.types else ""
            out += ["", f"`{where}`{when}:", "", *_tables(f.fields, f"{where}.")]
    return out


def block(names: str) -> str:
    """The generated block of docs/events.md for ``names`` (space-separated), with its markers."""
    first, *others = names.split()
    fields = COMMON if first == "common" else BY_NAME[first].fields
    for other in others:
        if BY_NAME[other].fields != fields:
            raise SystemExit(f"one block for {first} and {other}, whose fields differ")
    body = "\n".join(_tables(fields))
    return f"<!-- generated: {names} -->\n{body}\n<!-- end generated -->"


def markdown(text: str) -> str:
    """``text`` (docs/events.md) with its title and generated blocks made from the table."""
    names = [n for m in _BLOCK.finditer(text) for n in m["names"].split()]
    unknown = sorted(n for n in names if n != "common" and n not in BY_NAME)
    missing = sorted(set(BY_NAME) - set(names))
    doubled = sorted({n for n in names if names.count(n) > 1})
    if unknown or missing or doubled or "common" not in names:
        raise SystemExit(
            f"{MARKDOWN.relative_to(ROOT)}: generated blocks do not match the table: "
            f"unknown {unknown}, missing {missing + ([] if 'common' in names else ['common'])}, "
            f"twice {doubled}")
    text = _BLOCK.sub(lambda m: block(m["names"]), text)
    first, _, rest = text.partition("\n")
    if not first.startswith("# Event schema"):
        raise SystemExit(f"{MARKDOWN.relative_to(ROOT)}: the first line must be the title")
    return f"{TITLE}\n{rest}"


def schema_json() -> str:
    return json.dumps(json_schema(), indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true",
                        help="change nothing; exit 1 if a file differs from what it would be")
    args = parser.parse_args(argv)
    stale = 0
    outputs: list[tuple[Path, Callable[[str], str]]] = [
        (MARKDOWN, markdown), (JSON_SCHEMA, lambda _: schema_json())]
    for path, make in outputs:
        old = path.read_text(encoding="utf-8") if path.exists() else ""
        new = make(old)
        if new == old:
            continue
        rel = str(path.relative_to(ROOT))
        if args.check:
            stale += 1
            sys.stdout.writelines(difflib.unified_diff(
                old.splitlines(keepends=True), new.splitlines(keepends=True),
                rel, f"{rel} (from the table)"))
        else:
            path.write_text(new, encoding="utf-8")
            print(f"wrote {rel}")
    if stale:
        print(f"{stale} file(s) differ from the event schema table: run `make docs`",
              file=sys.stderr)
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main())
