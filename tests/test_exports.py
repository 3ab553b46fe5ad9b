"""The public face: `__all__` is sorted, complete, and every name in it exists."""

from __future__ import annotations

import re
from pathlib import Path

import tracedsync


def _ruff_sort_key(name: str) -> tuple[int, str]:
    # ruff's RUF022 "isort-style" order: SCREAMING_CASE, then CamelCase, then the rest.
    if name.isupper():
        return (0, name)
    if name[:1].isupper():
        return (1, name)
    return (2, name)


def test_all_is_sorted() -> None:
    """__all__ is in a stable sorted order (the one ruff enforces)."""
    assert list(tracedsync.__all__) == sorted(tracedsync.__all__, key=_ruff_sort_key)


def test_all_names_exist() -> None:
    """Every name in __all__ is importable from the package."""
    for name in tracedsync.__all__:
        assert hasattr(tracedsync, name), name


def test_no_public_name_left_out() -> None:
    """Every public (non-underscore, non-module) attribute of the package is in __all__."""
    import types

    public = {
        n for n, v in vars(tracedsync).items()
        if not n.startswith("_") and not isinstance(v, types.ModuleType)
        and n not in ("annotations", "Any")
    }
    assert public <= set(tracedsync.__all__), public - set(tracedsync.__all__)


def test_readme_mentions_every_factory() -> None:
    """The README documents each factory users call."""
    readme = (Path(__file__).parent.parent / "README.md").read_text(encoding="utf-8")
    factories = [n for n in tracedsync.__all__ if re.fullmatch(r"[A-Z][a-z]+[A-Za-z]*", n)
                 and callable(getattr(tracedsync, n)) and not n.startswith("Traced")
                 and n not in ("Settings", "Statistics", "ConfigError", "DeadlockError")]
    missing = [n for n in factories if f"{n}(" not in readme]
    assert not missing, missing


def test_package_ships_py_typed() -> None:
    """py.typed is present, so type checkers use the annotations."""
    assert (Path(tracedsync.__file__).parent / "py.typed").exists()
