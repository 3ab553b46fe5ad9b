"""Where logs are read from: local files and directories, or fsspec URLs (``s3://...``).

A directory is searched recursively for ``tracedsync-*.jsonl`` files (the layouts of
``tracedsync run``, ``<base>/<timestamp>/``, and of ``make demo``, one directory per program).
A path with a ``scheme://`` other than ``file://`` is opened with fsspec, when it is
installed; everything else uses the local file system directly.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from typing import IO, Any

_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


def is_url(path: str) -> bool:
    """True for ``scheme://...`` paths other than ``file://``."""
    return bool(_URL.match(path)) and not path.startswith("file://")


def _fs(path: str) -> tuple[Any, str]:
    try:
        import fsspec  # type: ignore[import-untyped]
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise FileNotFoundError(f"{path} (reading URLs needs fsspec: pip install fsspec)") from exc
    fs, inner = fsspec.core.url_to_fs(path)
    return fs, inner


def _is_log(name: str) -> bool:
    return name.startswith("tracedsync-") and name.endswith(".jsonl")


_LOG_NAME = re.compile(r"tracedsync-(\d+)(?:\.(\d+))?\.jsonl\Z")


def process_sets(paths: Iterable[str]) -> list[list[str]]:
    """Group log files by process, each group in the order it was written.

    A capped log rotates (``max_log_bytes``): ``tracedsync-<pid>.jsonl`` is the current file,
    ``tracedsync-<pid>.1.jsonl`` the one before, ``.2`` the one before that... Such a set is
    one process's stream: oldest first (the highest ``.N``), the current file last. Files of one
    directory and pid form one group; groups come in the order of their first file; a file
    named otherwise is a group of its own.
    """
    groups: dict[object, list[tuple[int, str]]] = {}
    for p in paths:
        head, _, name = p.rpartition("/")
        m = _LOG_NAME.match(name)
        if m is None:
            groups.setdefault(p, []).append((0, p))
            continue
        where = head if is_url(p) else os.path.dirname(os.path.abspath(p))
        groups.setdefault((where, m.group(1)), []).append((int(m.group(2) or 0), p))
    return [[p for _, p in sorted(g, key=lambda np: -np[0])] for g in groups.values()]


def log_files(paths: Iterable[str]) -> list[str]:
    """Expand directories (recursively) into their ``tracedsync-*.jsonl`` files, sorted; keep
    files as given; a process's rotated files together, oldest first (`process_sets`). Raises
    `FileNotFoundError` for a path that does not exist."""
    out: list[str] = []
    for p in paths:
        if is_url(p):
            fs, inner = _fs(p)
            if not fs.exists(inner):
                raise FileNotFoundError(p)
            if fs.isdir(inner):
                proto = p.split("://", 1)[0]
                found = sorted(f for f in fs.find(inner) if _is_log(f.rsplit("/", 1)[-1]))
                out.extend(f if "://" in f else f"{proto}://{f}" for f in found)
            else:
                out.append(p)
        elif os.path.isdir(p):
            found = []
            for root, dirs, files in os.walk(p):
                dirs.sort()
                found.extend(os.path.join(root, n) for n in files if _is_log(n))
            out.extend(sorted(found))
        elif os.path.exists(p):
            out.append(p)
        else:
            raise FileNotFoundError(p)
    return [f for group in process_sets(out) for f in group]


def size(path: str) -> int:
    """The size of a file in bytes (0 if it cannot be read)."""
    try:
        if is_url(path):
            fs, inner = _fs(path)
            return int(fs.size(inner))
        return os.path.getsize(path)
    except OSError:
        return 0


def open_bytes(path: str) -> IO[bytes]:
    """Open a log for reading bytes."""
    if is_url(path):
        fs, inner = _fs(path)
        fh: IO[bytes] = fs.open(inner, "rb")
        return fh
    return open(path, "rb")


def line_start_at(path: str, offset: int) -> int:
    """The offset of the first line that starts at or after ``offset``."""
    if offset <= 0:
        return 0
    with open_bytes(path) as fh:
        fh.seek(offset - 1)
        pos = offset - 1
        while True:
            block = fh.read(1 << 16)
            if not block:
                return pos
            i = block.find(b"\n")
            if i >= 0:
                return pos + i + 1
            pos += len(block)
