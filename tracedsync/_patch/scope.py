"""Which creation sites get traced primitives once `patch()` is on: the scope.

A patched factory asks `Scope.traced` about the frame that called it. The answer depends only on
that frame's code object (its file) and module name, so it is computed once per code object and
cached: the common case is one dict lookup.

The rules, first match wins:

1. tracedsync's own code: never (its factories already return raw objects under the guard);
2. a module name matching an ``exclude`` pattern: no;
3. a module name matching an ``include`` pattern: yes (this is how stdlib modules are opted in);
4. the standard library (files under sysconfig's ``stdlib``/``platstdlib`` that are not in a
   site-packages directory, and frozen modules): no;
5. tracedsync's dependencies and the tools that run the program (`DEFAULT_EXCLUDED`): no;
6. everything else (``__main__``, the user's packages, other third-party code): yes.

A pattern is an `fnmatch` pattern on the module name; ``pkg`` also matches ``pkg.sub.mod``.
Patterns come from ``patch(include=..., exclude=...)`` or, by default, from the comma-separated
``TRACEDSYNC_INCLUDE``/``TRACEDSYNC_EXCLUDE`` environment variables.
"""

from __future__ import annotations

import os
import site
import sys
import sysconfig
from collections.abc import Iterable, Mapping
from fnmatch import fnmatchcase
from types import CodeType, FrameType

ENV_INCLUDE = "TRACEDSYNC_INCLUDE"
ENV_EXCLUDE = "TRACEDSYNC_EXCLUDE"

DEFAULT_EXCLUDED = frozenset(
    {
        # tracedsync's dependencies, and theirs
        "structlog",
        "wrapt",
        "orjson",
        "rich",
        "pygments",
        "markdown_it",
        "mdurl",
        "typing_extensions",
        # the tools that run the program: a test runner's or a coverage tool's own locks are noise
        "pytest",
        "_pytest",
        "pluggy",
        "coverage",
        "hypothesis",
        "xdist",
        "execnet",
    }
)
"""Top-level packages whose primitives are not traced unless ``include`` names them."""

_CACHE_LIMIT = 50_000
_PKG_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep


def split_patterns(value: str | None) -> tuple[str, ...]:
    """``"a, b.*,,c"`` -> ``("a", "b.*", "c")``."""
    if not value:
        return ()
    return tuple(p.strip() for p in value.split(",") if p.strip())


def patterns_from_env(name: str, environ: Mapping[str, str] | None = None) -> tuple[str, ...]:
    """The patterns in environment variable ``name``."""
    env = os.environ if environ is None else environ
    return split_patterns(env.get(name))


def matches(module: str, patterns: Iterable[str]) -> bool:
    """Whether ``module`` (or a package containing it) matches one of ``patterns``."""
    return any(fnmatchcase(module, p) or fnmatchcase(module, p + ".*") for p in patterns)


def _with_real(paths: Iterable[str]) -> tuple[str, ...]:
    out: set[str] = set()
    for p in paths:
        if p:
            out.add(os.path.join(os.path.abspath(p), ""))
            out.add(os.path.join(os.path.realpath(p), ""))
    return tuple(sorted(out, key=len, reverse=True))


class _Layout:
    """Where this interpreter keeps its standard library and its site-packages."""

    def __init__(self) -> None:
        paths = sysconfig.get_paths()
        base = os.path.join(os.path.abspath(sys.base_prefix), "")
        zipped = [p for p in sys.path if p.endswith(".zip") and os.path.abspath(p).startswith(base)]
        self.stdlib = _with_real(
            [
                paths.get("stdlib", ""),
                paths.get("platstdlib", ""),
                os.path.dirname(os.__file__),
                os.path.dirname(sysconfig.__file__),
                *zipped,  # python3XX.zip, when the standard library is shipped zipped
            ]
        )
        sites = [paths.get("purelib", ""), paths.get("platlib", "")]
        sites += site.getsitepackages() if hasattr(site, "getsitepackages") else []
        user_site = site.getusersitepackages() if hasattr(site, "getusersitepackages") else ""
        sites.append(user_site if isinstance(user_site, str) else "")
        sites += [p for p in sys.path if os.path.basename(p) in ("site-packages", "dist-packages")]
        self.sites = _with_real(sites)

    def is_stdlib(self, filename: str) -> bool:
        """True for a file of the standard library (not of a package installed in it)."""
        if filename.startswith("<frozen "):
            return True
        if not os.path.isabs(filename):
            return False
        names = {filename, os.path.realpath(filename)}
        if any(n.startswith(self.sites) for n in names):
            return False
        return any(n.startswith(self.stdlib) for n in names)


_layout: _Layout | None = None


def layout() -> _Layout:
    """The interpreter's layout, computed on first use."""
    global _layout
    if _layout is None:
        _layout = _Layout()
    return _layout


class Scope:
    """Decides, per creation site, whether a patched factory returns a traced primitive."""

    __slots__ = ("cache", "exclude", "include")

    def __init__(self, include: Iterable[str] = (), exclude: Iterable[str] = ()) -> None:
        self.include = tuple(include)
        self.exclude = tuple(exclude)
        self.cache: dict[int, tuple[CodeType, bool]] = {}
        """``id(code) -> (code, decision)``; the shims read it directly, then call `traced`."""

    def traced(self, frame: FrameType) -> bool:
        """Whether a primitive created by ``frame`` is traced (cached per code object)."""
        code = frame.f_code
        hit = self.cache.get(id(code))
        if hit is not None and hit[0] is code:
            return hit[1]
        module = frame.f_globals.get("__name__")
        decision = self.decide(module if isinstance(module, str) else "", code.co_filename)
        if len(self.cache) >= _CACHE_LIMIT:
            self.cache.clear()
        # The code object is kept alive with its answer, so its id cannot be reused meanwhile.
        self.cache[id(code)] = (code, decision)
        return decision

    def decide(self, module: str, filename: str) -> bool:
        """The rules of the module docstring, uncached."""
        if (
            filename.startswith(_PKG_DIR)
            or module == "tracedsync"
            or module.startswith("tracedsync.")
        ):
            return False
        if matches(module, self.exclude):
            return False
        if matches(module, self.include):
            return True
        if layout().is_stdlib(filename):
            return False
        return module.partition(".")[0] not in DEFAULT_EXCLUDED
