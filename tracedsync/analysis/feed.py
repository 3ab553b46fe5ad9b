"""Feeding the bytes of a log (or of a byte range of it) to a kernel, line by line.

The native kernel (`_cscan`) is given blocks of whole lines and parses them itself. The Python
kernel is given 64 KiB chunks decoded at once by msgspec (`hotdecode`): typed (acquires and
releases as Structs of their own, `PyKernel.feed_typed`), else with every field optional
(`PyKernel.feed`), else one line at a time for a chunk that holds a bad line. Either
way, every line the kernel does not take (any event but a usable acquire or release, a line
that is not JSON, a blank line excepted) goes to ``on_line(raw, line number, maybe_hot)``,
in file order; ``maybe_hot`` is false when the line is known not to be a usable acquire or
release. Line numbers count from 1 at the first line fed.
"""

from __future__ import annotations

import mmap
from collections.abc import Callable
from typing import Any

import msgspec

from .hotdecode import decode_line, decode_lines, decode_lines_traced
from .inputs import is_url, open_bytes

OnLine = Callable[[bytes, int, bool], None]
NATIVE_BLOCK = 1 << 20
PY_CHUNK = 65536  # small enough to stay in cache


def feed_bytes(
    path: str,
    kernel: Any,
    on_line: OnLine,
    start: int = 0,
    end: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> tuple[int, tuple[int, bytes] | None]:
    """Feed ``path[start:end]`` (whole lines) to ``kernel``.

    Returns the number of lines read and the torn last line (``(line, raw)``: a last line
    without its newline, which only the end of a file can have), if any.
    """
    native = hasattr(kernel, "scan")
    block_size = NATIVE_BLOCK if native else PY_CHUNK
    if native:
        kernel.lines = 0  # it numbers the lines it hands to on_line
        if not is_url(path):
            mapped = _feed_mapped(path, kernel, on_line, start, end, progress)
            if mapped is not None:
                return mapped
    lineno = 1
    rest = b""
    remaining = None if end is None else end - start
    with open_bytes(path) as fh:
        if start:
            fh.seek(start)
        while remaining is None or remaining > 0:
            block = fh.read(block_size if remaining is None else min(block_size, remaining))
            if not block:
                break
            if remaining is not None:
                remaining -= len(block)
            if progress is not None:
                progress(len(block))
            data = rest + block if rest else block
            cut = data.rfind(b"\n") + 1
            if cut == 0:
                rest = data
                continue
            rest = data[cut:]
            if native:
                kernel.scan(data, cut, on_line)
                lineno = kernel.lines + 1
            else:
                lineno = feed_chunk(kernel, memoryview(data)[: cut - 1], lineno, on_line)
    tail = (lineno, rest) if rest.strip() else None
    return lineno - 1 + (1 if tail else 0), tail


_PAGE = mmap.PAGESIZE


def _drop(mm: mmap.mmap, start: int, end: int) -> None:
    """Let the pages of ``mm[start:end]`` go from this process's memory (they stay in the
    page cache): the mapping is read once, front to back."""
    if hasattr(mmap, "MADV_DONTNEED"):
        lo = start - start % _PAGE
        hi = end - end % _PAGE
        if hi > lo:
            mm.madvise(mmap.MADV_DONTNEED, lo, hi - lo)


def _feed_mapped(
    path: str,
    kernel: Any,
    on_line: OnLine,
    start: int,
    end: int | None,
    progress: Callable[[int], None] | None,
) -> tuple[int, tuple[int, bytes] | None] | None:
    """`feed_bytes` for the native kernel on a local file: the file mapped in memory, given
    to the kernel block by block with no copy. None if it cannot be mapped (empty, say)."""
    with open(path, "rb") as fh:
        try:
            mm = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
        except (OSError, ValueError):
            return None
    with mm:
        stop = len(mm) if end is None else min(end, len(mm))
        pos = start
        view = memoryview(mm)
        try:
            while pos < stop:
                cut = mm.rfind(b"\n", pos, min(stop, pos + NATIVE_BLOCK)) + 1
                if cut <= pos:  # a line longer than a block, or the end of the range
                    cut = mm.find(b"\n", pos, stop) + 1
                    if cut <= 0:
                        break
                if progress is not None:
                    progress(cut - pos)
                kernel.scan(view[pos:cut], cut - pos, on_line)
                _drop(mm, pos, cut)
                pos = cut
            tail = bytes(view[pos:stop])
        finally:
            view.release()
    if tail and progress is not None:
        progress(len(tail))
    lineno = kernel.lines + 1
    torn = (lineno, tail) if tail.strip() else None
    return lineno - 1 + (1 if torn else 0), torn


def feed_chunk(kernel: Any, body: bytes | memoryview, lineno: int, on_line: OnLine) -> int:
    """Feed the complete lines ``body`` (without the last newline) to the Python kernel;
    returns the next line number."""
    whole: bytes = body.obj if isinstance(body, memoryview) else body  # type: ignore[assignment]
    n = whole.count(b"\n", 0, len(body)) + 1
    raws: list[bytes] | None = None

    def other(k: int) -> None:
        nonlocal raws
        if raws is None:
            raws = bytes(body).split(b"\n")
        on_line(raws[k], lineno + k, False)

    evs: list[Any] | None = None
    untyped = kernel.one_by_one or kernel.defer  # (see `PyKernel.feed_typed`)
    if not untyped:
        try:
            evs = kernel.decoder.decode(body)
        except msgspec.ValidationError:  # an unknown event, an odd acquire: see hotdecode
            untyped = True
        except msgspec.DecodeError:  # not JSON: line by line
            pass
        if evs is not None and len(evs) == n:
            kernel.feed_typed(evs, other, kernel.decoder.types)
            return lineno + n
    if untyped:
        try:
            evs = (decode_lines_traced if kernel.one_by_one else decode_lines)(body)
        except (msgspec.DecodeError, msgspec.ValidationError):
            evs = None
        if evs is not None and len(evs) == n:
            kernel.feed(evs, other)
            return lineno + n
    for i, raw in enumerate(bytes(body).split(b"\n"), lineno):
        if not raw.strip():
            continue
        try:
            ev = decode_line(raw)
        except (msgspec.DecodeError, msgspec.ValidationError):
            on_line(raw, i, False)
            continue
        kernel.feed([ev], lambda _k, raw=raw, i=i: on_line(raw, i, False))
    return lineno + n
