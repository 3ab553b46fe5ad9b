"""Where events go: a structlog processor chain ending in an orjson renderer, written to one file
per process, or a user-supplied structlog logger.

structlog itself is imported only when a user processor or logger is configured: with the
default pipeline the events are rendered by orjson directly, so ``import tracedsync`` does not
pay for structlog (and the rich, asyncio... that it imports).

A processor that raises ``structlog.DropEvent`` drops that event, as in structlog: the others of
the batch are written and the processor stays attached.

Rotation (``max_log_bytes``): before a write that would take the current file past its share of
the cap (a quarter: `LOG_FILES` files), the files shift (``tracedsync-<pid>.jsonl`` becomes
``.1.jsonl``, ``.1`` becomes ``.2``, ...), the oldest one is deleted and a new current file is
started with the recorder's opening events (a ``session`` header, and a ``dropped`` event,
reason ``rotated``, counting the lines the deleted file held), so that every file describes
itself and the loss is visible. The Python path knows a batch's size before writing it; the
native renderer writes straight to the descriptor, so a file is rotated before the batch that
follows the one that took it past its share (it may pass its share by one batch).

Failure isolation (the traced program must never crash or hang because of us): a user processor
or logger that raises is detached and reported once on stderr, and the batch is written by the
built-in pipeline instead; a failing write (a full disk, a closed descriptor) loses only that batch,
whose size is counted and logged as a ``dropped`` event by the next write that succeeds. Writes use
``os.write`` on an ``O_APPEND`` descriptor: no Python-level buffer that a forked child could
flush a second time.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

import orjson

from .._core.diagnostics import report
from .decode import Event

Processor = Callable[[Any, str, Event], Any]

_METHOD = {"misuse": "warning", "deadlock": "error", "lock_order": "warning"}


def _method(ev: Event) -> str:
    return _METHOD.get(ev["event"], "info")



_dumps = orjson.dumps
_OPT = orjson.OPT_APPEND_NEWLINE


def default_renderer() -> Processor:
    """structlog's JSON renderer with orjson, one line per event. structlog is imported here,
    when user processors first need it: ``import tracedsync`` does not import it."""
    import structlog

    return structlog.processors.JSONRenderer(serializer=_dumps, option=_OPT, default=str)


def _drop_event() -> type[BaseException]:
    """``structlog.DropEvent``: a processor raises it to drop that event (imported when a user
    processor or logger is in use, never by ``import tracedsync``)."""
    import structlog

    return structlog.DropEvent


LOG_FILES = 4
"""How many files a capped log keeps per process: the current ``tracedsync-<pid>.jsonl`` and
three rotated ones, ``tracedsync-<pid>.1.jsonl`` (the newest) to ``.3.jsonl`` (the oldest). Each
gets a quarter of ``max_log_bytes``: at most a quarter of the history is lost at a rotation."""


def rotated_path(path: str, n: int) -> str:
    """``.../tracedsync-<pid>.jsonl`` → ``.../tracedsync-<pid>.<n>.jsonl`` (the n-th newest rotated
    file; ``n`` 0 is ``path`` itself)."""
    if n == 0:
        return path
    root, ext = os.path.splitext(path)
    return f"{root}.{n}{ext}"


def count_lines(path: str) -> int:
    """The complete lines (events) in the file at ``path``."""
    fd = os.open(path, os.O_RDONLY)
    try:
        n = 0
        while True:
            block = os.read(fd, 1 << 20)
            if not block:
                return n
            n += block.count(b"\n")
    finally:
        os.close(fd)


class FileWriter:
    """Appends bytes to ``path`` with ``os.write``; opens the file on first use.

    It keeps the bytes and lines it wrote into each file of a rotated set, so that a rotation
    can say how many events the file it deletes held without reading it again (reading a 256
    MiB file back costs about 140 ms, with the recorder's write lock held); a file it did not
    write whole (there before it, changed behind its back, a write that failed midway) is
    counted when deleted.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self._fd: int | None = None
        # (bytes, lines) written into [current, .1, .2, ...]; None where not known
        self._books: list[tuple[int, int] | None] = [None] * LOG_FILES

    def fileno(self) -> int:
        """The descriptor, opening the file (and its directory) on first use."""
        if self._fd is None:
            os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
            self._fd = fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            if self._books[0] is None and os.fstat(fd).st_size == 0:
                self._books[0] = (0, 0)
        return self._fd

    def size(self) -> int:
        """The size of the file now (from the descriptor: right even if something else
        truncated it, as the benchmarks do, or appended to it)."""
        return os.fstat(self.fileno()).st_size

    def write(self, data: bytes) -> None:
        fd = self.fileno()
        view = memoryview(data)
        try:
            while view:
                written = os.write(fd, view)
                view = view[written:]
        except BaseException:
            self._books[0] = None
            raise
        self.wrote(len(data), data.count(b"\n"))

    def wrote(self, nbytes: int, lines: int | None) -> None:
        """Account for ``nbytes`` bytes holding ``lines`` lines written to the current file (by
        `write`, or by the native renderer: None when its write failed midway)."""
        books = self._books[0]
        self._books[0] = None if books is None or lines is None else (
            books[0] + nbytes, books[1] + lines)

    def rotate(self, files: int) -> int | None:
        """Close the file and shift the set one place: the oldest (``.<files-1>``) is deleted,
        ``.1`` → ``.2`` ..., the current file → ``.1``; the next write opens a new current file.
        Returns the lines the deleted file held, or None if there was none to delete."""
        self.close()
        oldest = rotated_path(self.path, files - 1)
        books = self._books[files - 1] if files <= len(self._books) else None
        try:
            size = os.path.getsize(oldest)
            lost: int | None = (books[1] if books is not None and books[0] == size
                                else count_lines(oldest))
            os.unlink(oldest)
        except FileNotFoundError:
            lost = None
        for n in range(files - 2, -1, -1):
            try:
                os.replace(rotated_path(self.path, n), rotated_path(self.path, n + 1))
            except FileNotFoundError:  # a gap (removed by someone else): nothing to shift
                pass
        self._books = [None, *self._books[: files - 1]]
        return lost

    def close(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            try:
                os.close(fd)
            except OSError:  # pragma: no cover
                pass


class Sink:
    """Renders and writes batches of event dicts. Not thread-safe: the recorder serialises calls.

    ``opening`` gives the events that open each file (its ``session`` header), from the
    number of events the file deleted to make room for it held (None when none was); the sink
    writes them before its first batch and after each rotation (without ``opening``: no header,
    no rotation). ``max_bytes``: the cap on the process's files together (None: no cap; see the
    module note).
    """

    def __init__(
        self,
        path: str,
        processors: Sequence[Processor] = (),
        logger: Any = None,
        max_bytes: int | None = None,
        opening: Callable[[int | None], list[Event]] | None = None,
    ) -> None:
        self.writer = FileWriter(path)
        self.processors: list[Processor] = list(processors)
        self.logger = logger
        self.max_bytes = max_bytes
        self.opening = opening
        self._renderer: Processor | None = None
        self._drop: type[BaseException] | None = None
        self.started = False  # whether the opening events of the first file were made
        self._head = 0  # bytes of the current file's opening events (it rotates only past them)
        self._opening_data: bytes | None = None  # a new file's opening events, not yet written
        self.pending_dropped = 0
        self.dropped_total = 0
        self._write_failed = False

    @property
    def path(self) -> str:
        return self.writer.path

    @property
    def renderer(self) -> Processor:
        """structlog's JSON renderer, the last processor of a user chain (made on first use)."""
        if self._renderer is None:
            self._renderer = default_renderer()
        return self._renderer

    def write(self, events: Sequence[Event], make_dropped: Callable[[int], Event]) -> None:
        """Write ``events``; never raises."""
        carried = self.pending_dropped
        if carried:
            events = [make_dropped(carried), *events]
        if self.logger is not None:
            if not self.started and self.opening is not None:
                self.started = True
                events = [*self.opening(None), *events]
            try:
                self._to_logger(events)
                self.pending_dropped = 0
                return
            except Exception as exc:  # a user's logger: detach it, fall back to the file
                report(f"the configured logger raised {exc!r}; it is detached, "
                       f"events now go to {self.path}")
                self.logger = None
        data = self._render_or_detach(events)
        try:
            self._make_room(len(data))
            self.writer.write(data)
        except Exception as exc:
            lost = len(events) - (1 if carried else 0)
            if not self._write_failed:
                report(f"cannot write {self.path}: {exc!r}; dropping events until writes succeed")
            self._write_failed = True
            self.pending_dropped = carried + lost
            self.dropped_total += lost
            return
        if self._write_failed:
            report(f"writing {self.path} works again")
        self._write_failed = False
        self.pending_dropped = 0

    def native_fd(self) -> int:
        """The descriptor the native renderer is to write its next batch to, after a rotation
        if the current file has passed its share (raises `OSError` if it cannot be opened)."""
        self._make_room(0)
        return self.writer.fileno()

    def _make_room(self, incoming: int) -> None:
        """Before a write of ``incoming`` bytes: rotate if the current file, holding more than
        its opening events, would pass its share of the cap (the first write too: the file may
        hold an earlier session's events); then write the file's opening events if they are due
        (a failed write retries them)."""
        if self._opening_data is None and self.opening is not None:
            cap = self.max_bytes
            rotated = False
            lost = None
            if cap is not None:
                size = self.writer.size()
                if size > self._head and size + incoming > cap // LOG_FILES:
                    try:
                        lost = self.writer.rotate(LOG_FILES)
                        rotated = True
                    except OSError as exc:
                        report(f"cannot rotate {self.path}: {exc!r}; the log is no longer "
                               f"capped")
                        self.max_bytes = None
            if rotated or not self.started:
                self.started = True
                self._opening_data = self._render_or_detach(self.opening(lost))
                self._head = 0
        if self._opening_data is not None:
            self.writer.write(self._opening_data)
            self._head = len(self._opening_data)
            self._opening_data = None

    def failed(self, exc: BaseException, lost: int) -> None:
        """A write of ``lost`` events failed (the native renderer's): count them, say so once."""
        if not self._write_failed:
            report(f"cannot write {self.path}: {exc!r}; dropping events until writes succeed")
        self._write_failed = True
        self.pending_dropped += lost
        self.dropped_total += lost

    def succeeded(self) -> None:
        """A write went through (the native renderer's)."""
        if self._write_failed:
            report(f"writing {self.path} works again")
        self._write_failed = False

    def _render_or_detach(self, events: Sequence[Event]) -> bytes:
        try:
            return self._render(events)
        except Exception as exc:
            report(f"a configured processor raised {exc!r}; user processors are detached")
            self.processors = []
            return self._render(events)

    def _render(self, events: Sequence[Event]) -> bytes:
        procs = self.processors
        if not procs:
            # The chain is only structlog's JSONRenderer, whose __call__ is exactly
            # ``serializer(event_dict, **kw)``: call the serializer directly (a third of the
            # rendering cost is the processor-call overhead). Append each line to one bytearray
            # at once: keeping hundreds of orjson results alive before a join was measured at
            # 0.8-3.5 µs per event against 0.3 µs this way (orjson over-allocates its output).
            buf = bytearray()
            for ev in events:
                buf += _dumps(ev, default=str, option=_OPT)
            return bytes(buf)
        renderer = self.renderer
        drop = self._drop
        if drop is None:
            drop = self._drop = _drop_event()
        out = bytearray()
        for ev in events:
            method = _method(ev)
            d: Any = dict(ev)
            try:
                for proc in procs:
                    d = proc(None, method, d)
            except drop:  # structlog's meaning: this event is not logged, the others are
                continue
            rendered = renderer(None, method, d)
            out += rendered.encode() if isinstance(rendered, str) else rendered
        return bytes(out)

    def _to_logger(self, events: Sequence[Event]) -> None:
        logger = self.logger
        drop = self._drop
        if drop is None:
            drop = self._drop = _drop_event()
        for ev in events:
            fields = dict(ev)
            name = fields.pop("event")
            try:
                getattr(logger, _method(ev))(name, **fields)
            except drop:  # a logger that is not structlog's own (which catches it itself)
                continue

    def close(self) -> None:
        self.writer.close()
