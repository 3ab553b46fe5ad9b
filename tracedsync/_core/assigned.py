"""The name a primitive's creating line assigns it to: ``self._lock = threading.Lock()`` in
``Account.__init__`` is ``Account._lock``; ``lock_a = Lock()`` is ``lock_a``.

Read from the source, once per creation site, by the flusher (`sites.SiteFormatter.assigned`,
for the ``created`` event's ``var``), never on the hot path. Only a plain assignment names a
primitive: a line that is anything else (a call argument, a ``return``, a tuple unpacking), or
whose source cannot be read (``python -c``, a zip without sources), names nothing.
"""

from __future__ import annotations

import ast
import functools
import linecache
import re

_TARGET = re.compile(r"^\s*([A-Za-z_][\w.]*)\s*(?::[^=]*)?=(?!=)")
"""The start of an assignment whose statement does not fit on its line (``x = Lock(\\n)``)."""
_COLLECTIONS = (ast.List, ast.Tuple, ast.Set, ast.Dict, ast.ListComp, ast.SetComp,
                ast.DictComp, ast.GeneratorExp)


def assigned_name(filename: str, line: int, qualname: str | None) -> str | None:
    """The name the statement at ``filename:line`` assigns to, as the user would write it, or
    None. ``qualname`` (the creating function's qualified name) turns ``self.x`` into
    ``Class.x``."""
    text = linecache.getline(filename, line)
    if not text.strip():
        return None
    target = _parsed_target(text.strip())
    if target is None:
        m = _TARGET.match(text)
        if m is None:
            return None
        target = m.group(1)
    head, dot, rest = target.partition(".")
    if dot and head in ("self", "cls"):
        # (3.10's code objects have no qualified name: the function's name alone, then read
        # from the source which class the line is in)
        owner = _class_of(qualname) or _class_of(_qualname_at(filename, line))
        if owner is not None:
            return f"{owner}.{rest}"
    return target


@functools.lru_cache(maxsize=64)
def _functions(filename: str) -> tuple[tuple[int, int, str], ...]:
    """(first line, last line, qualified name) of every function defined in ``filename``."""
    try:
        tree = ast.parse("".join(linecache.getlines(filename)))
    except (SyntaxError, ValueError):
        return ()
    out: list[tuple[int, int, str]] = []

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                name = prefix + child.name
                out.append((child.lineno, child.end_lineno or child.lineno, name))
                visit(child, name + ".<locals>.")
            elif isinstance(child, ast.ClassDef):
                visit(child, prefix + child.name + ".")
            else:
                visit(child, prefix)

    visit(tree, "")
    return tuple(out)


def _qualname_at(filename: str, line: int) -> str | None:
    """The qualified name of the innermost function of ``filename`` around ``line``."""
    best: tuple[int, str] | None = None
    for first, last, name in _functions(filename):
        if first <= line <= last and (best is None or first >= best[0]):
            best = (first, name)
    return best[1] if best is not None else None


def _parsed_target(stmt: str) -> str | None:
    try:
        tree = ast.parse(stmt)
    except (SyntaxError, ValueError):
        return None
    if len(tree.body) != 1:
        return None
    node = tree.body[0]
    if isinstance(node, ast.Assign):
        target, value = node.targets[0], node.value
    elif isinstance(node, ast.AnnAssign) and node.value is not None:
        target, value = node.target, node.value
    else:
        return None
    if isinstance(target, ast.Subscript):
        name = _dotted(target.value)
        return f"{name}[...]" if name else None
    name = _dotted(target)
    if name is None:
        return None
    return f"{name}[...]" if isinstance(value, _COLLECTIONS) else name


def _dotted(node: ast.expr) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        base = _dotted(node.value)
        return f"{base}.{node.attr}" if base else None
    return None


def _class_of(qualname: str | None) -> str | None:
    """``"Account.__init__"`` -> ``"Account"``; ``"f.<locals>.C.m"`` -> ``"C"``; a plain
    function -> None."""
    if not qualname or "." not in qualname:
        return None
    owner = qualname.rsplit(".", 1)[0]
    owner = owner.rsplit("<locals>.", 1)[-1]
    return owner if owner and "<" not in owner else None
