"""Settings: the keyword arguments of `configure()` and the ``TRACEDSYNC_*`` environment variables.

Environment variables are how configuration travels to child processes, so every setting that
matters in a child has one. Explicit `configure()` arguments win over the environment.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from .._core.diagnostics import report
from .._core.runtime import LEVELS

ENV_PREFIX = "TRACEDSYNC_"


class ConfigError(ValueError):
    """A setting has a value tracedsync cannot use (the message names it and where it came
    from: an argument or an environment variable)."""


class ConfigTypeError(ConfigError, TypeError):
    """A setting has a value of the wrong type (``flush_interval="0.5"``)."""


@dataclasses.dataclass(frozen=True)
class Settings:
    """What the recorder does. Build it with `from_env` and `replace`."""

    log_dir: str = "tracedsync-logs"
    """Directory of the per-process ``tracedsync-<pid>.jsonl`` files (created on first write)."""
    level: str = "full"
    """``full`` (every event), ``contention`` (contended/failed/waits/misuse + counters) or
    ``off``."""
    flush_interval: float = 0.2
    """Seconds between background flushes."""
    buffer_bytes: int = 64 * 1024 * 1024
    """Memory for the native recorder's per-thread records (all threads together); past it,
    records are dropped and counted (a ``dropped`` event per thread), never waited for."""
    buffer_limit: int = 100_000
    """Events of the Python channel (and of the pure-Python twin) buffered before the filling
    thread acts (see ``overflow``)."""
    max_log_bytes: int | None = 1 << 30
    """The cap on this process's log files together, in bytes (None: no cap). The log rotates
    over `LOG_FILES` files (``tracedsync-<pid>.jsonl``, then ``.1.jsonl`` the newest ...
    ``.3.jsonl`` the oldest); the oldest is deleted, so the most recent history is kept, and
    a ``dropped`` event (reason ``rotated``) in the new file counts what it held. Each file
    may pass its quarter by one flush's batch. Applies to the file sink, not to a ``logger``."""
    overflow: str = "flush"
    """``flush``: the filling thread wakes the flusher, and drops (counted) only past four times
    the limit; ``drop``: drop (counted) past the limit. The recording thread never flushes."""
    processors: tuple[Any, ...] = ()
    """structlog processors run on each event before the JSON renderer."""
    logger: Any = None
    """A structlog (bound) logger to send events to instead of the per-process file."""
    # -- runtime detection (tracedsync/_detect.py and friends; docs/events.md) ----------------
    on_deadlock: str = "report"
    """What a thread whose blocking acquire closes a wait-for cycle does: ``report`` (write a
    ``deadlock`` event, then block as the program would) or ``raise`` (write it, then raise
    `tracedsync.DeadlockError` instead of blocking; only for an acquire without a timeout, as
    one with a timeout returns False when it expires)."""
    lock_order: bool = False
    """Check lock-order inversions online (``lock_order`` events); costs on every
    acquire, so off by default."""
    long_wait: float | None = None
    """Seconds after which a thread still blocked is reported (``long_wait``); None: off."""
    long_hold: float | None = None
    """Seconds after which a lock still held is reported (``long_hold``); None: off."""
    snapshot_signal: str = "SIGUSR1"
    """Signal that writes a ``snapshot`` event (``""`` or ``"none"``: no handler). Installed
    only from the main thread, and only over the default disposition (never over a program's
    own handler)."""

    def __post_init__(self) -> None:
        problems: list[tuple[str, Any, ConfigError]] = []
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            try:
                clean = check(field.name, value)
            except ConfigError as exc:
                problems.append((field.name, value, exc))
                continue
            if clean is not value:
                object.__setattr__(self, field.name, clean)
        if problems:
            raise _combined(problems, "argument")

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str] | None = None, errors: list[str] | None = None
    ) -> Settings:
        """Settings from ``TRACEDSYNC_LOG_DIR``, ``_LEVEL``, ``_FLUSH_INTERVAL``, ``_BUFFER_LIMIT``,
        ``_OVERFLOW``, ``_MAX_LOG_BYTES``, ``_ON_DEADLOCK``, ``_LOCK_ORDER``, ``_LONG_WAIT``,
        ``_LONG_HOLD``, ``_SNAPSHOT_SIGNAL``.

        Each variable is checked on its own: a bad one is described (the variable, its value,
        what is wrong, and the value used instead) in ``errors`` if given, else on stderr, and
        ignored; the others are kept. Set but empty is as if unset, except for
        ``_SNAPSHOT_SIGNAL`` (empty: no handler).
        """
        env = os.environ if environ is None else environ
        kw: dict[str, Any] = {}
        problems: list[tuple[str, Any, ConfigError]] = []
        for field, parse in _ENV_PARSERS.items():
            var = ENV_PREFIX + field.upper()
            text = env.get(var)
            if text is None:
                continue
            try:
                value = parse(text, field)
                if value is _UNSET:
                    continue
                kw[field] = check(field, value)
            except ConfigError as exc:
                problems.append((var, text, exc))
        defaults = cls()
        for var, text, problem in problems:
            field = var[len(ENV_PREFIX):].lower()
            message = (f"{var}={text!r} (environment variable): {problem}; ignored: {field} is "
                       f"{getattr(defaults, field)!r}")
            if errors is None:
                report(message)
            else:
                errors.append(message)
        return cls(**kw)

    def replace(self, **changes: Any) -> Settings:
        """A copy with ``changes`` applied. Unknown names raise `TypeError`; bad values raise
        `ConfigError` (`ConfigTypeError`, also a `TypeError`, for a value of the wrong type)
        naming each bad setting; a new ``log_dir`` must be a directory tracedsync can create or
        write to (checked now, created on first write)."""
        unknown = set(changes) - {f.name for f in dataclasses.fields(self)}
        if unknown:
            raise TypeError(f"unknown tracedsync setting(s): {', '.join(sorted(unknown))}")
        clean: dict[str, Any] = {}
        problems: list[tuple[str, Any, ConfigError]] = []
        # None means "unchanged", except for the thresholds, where it means "off".
        for name, value in changes.items():
            if value is None and name not in _NULLABLE:
                continue
            try:
                clean[name] = check(name, value)
                if name == "log_dir":
                    problem = log_dir_problem(clean[name])
                    if problem is not None:
                        raise ConfigError(f"log_dir cannot be written: {problem}")
            except ConfigError as exc:
                problems.append((name, value, exc))
        if problems:
            raise _combined(problems, "argument")
        return dataclasses.replace(self, **clean)

    def to_env(self) -> dict[str, str]:
        """The environment variables that reproduce these settings in a child process."""
        return {
            ENV_PREFIX + "LOG_DIR": os.path.abspath(self.log_dir),
            ENV_PREFIX + "LEVEL": self.level,
            ENV_PREFIX + "FLUSH_INTERVAL": repr(self.flush_interval),
            ENV_PREFIX + "BUFFER_LIMIT": str(self.buffer_limit),
            ENV_PREFIX + "BUFFER_BYTES": str(self.buffer_bytes),
            ENV_PREFIX + "OVERFLOW": self.overflow,
            ENV_PREFIX + "MAX_LOG_BYTES": (
                "none" if self.max_log_bytes is None else str(self.max_log_bytes)),
            ENV_PREFIX + "ON_DEADLOCK": self.on_deadlock,
            ENV_PREFIX + "LOCK_ORDER": "1" if self.lock_order else "0",
            ENV_PREFIX + "LONG_WAIT": "none" if self.long_wait is None else repr(self.long_wait),
            ENV_PREFIX + "LONG_HOLD": "none" if self.long_hold is None else repr(self.long_hold),
            ENV_PREFIX + "SNAPSHOT_SIGNAL": self.snapshot_signal or "none",
        }

    def public(self) -> dict[str, Any]:
        """The settings as they appear in a session header."""
        return {
            "log_dir": os.path.abspath(self.log_dir),
            "level": self.level,
            "flush_interval": self.flush_interval,
            "buffer_limit": self.buffer_limit,
            "buffer_bytes": self.buffer_bytes,
            "overflow": self.overflow,
            "max_log_bytes": self.max_log_bytes,
            "processors": [_describe(p) for p in self.processors],
            "logger": None if self.logger is None else _describe(self.logger),
            "on_deadlock": self.on_deadlock,
            "lock_order": self.lock_order,
            "long_wait": self.long_wait,
            "long_hold": self.long_hold,
            "snapshot_signal": self.snapshot_signal,
        }


_NULLABLE = frozenset({"long_wait", "long_hold", "max_log_bytes"})
_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})
_UNSET: Any = object()


# -- checking one setting ---------------------------------------------------------------------
def _kind(value: object) -> str:
    return f"{type(value).__name__} {value!r}"


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _log_dir(name: str, value: Any) -> Any:
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    if not isinstance(value, str):
        raise ConfigTypeError(f"{name} must be a path (str or os.PathLike), not {_kind(value)}")
    if not value or "\0" in value:
        raise ConfigError(f"{name} must be a non-empty path, not {value!r}")
    return value


def _choice(*choices: str) -> Callable[[str, Any], Any]:
    listed = ", ".join(repr(c) for c in sorted(choices))

    def check_choice(name: str, value: Any) -> Any:
        if not isinstance(value, str):
            raise ConfigTypeError(f"{name} must be one of {listed} (a str), not {_kind(value)}")
        if value not in choices:
            raise ConfigError(f"{name} must be one of {listed}, not {value!r}")
        return value

    return check_choice


def _seconds(name: str, value: Any) -> Any:
    if not _is_number(value):
        raise ConfigTypeError(
            f"{name} must be a number of seconds (int or float), not {_kind(value)}")
    if not (value > 0 and math.isfinite(value)):
        raise ConfigError(f"{name} must be > 0 seconds (and finite), not {value!r}")
    return value


def _threshold(name: str, value: Any) -> Any:
    if value is None:
        return None
    if not _is_number(value):
        raise ConfigTypeError(
            f"{name} must be None or a number of seconds (int or float), not {_kind(value)}")
    if not (value > 0 and math.isfinite(value)):
        raise ConfigError(f"{name} must be None or > 0 seconds, not {value!r}")
    return value


def _count(name: str, value: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigTypeError(f"{name} must be an int >= 1, not {_kind(value)}")
    if value < 1:
        raise ConfigError(f"{name} must be >= 1, not {value!r}")
    return value


def _bytes(minimum: int) -> Callable[[str, Any], Any]:
    def check_bytes(name: str, value: Any) -> Any:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigTypeError(f"{name} must be an int >= {minimum} (bytes), not {_kind(value)}")
        if value < minimum:
            raise ConfigError(f"{name} must be >= {minimum} (bytes), not {value!r}")
        return value

    return check_bytes


def _log_cap(name: str, value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigTypeError(f"{name} must be None or an int >= {MIN_LOG_BYTES} (bytes), "
                              f"not {_kind(value)}")
    if value < MIN_LOG_BYTES:
        raise ConfigError(f"{name} must be None or >= {MIN_LOG_BYTES} (bytes), not {value!r}")
    return value


def _flag(name: str, value: Any) -> Any:
    if not isinstance(value, bool):
        raise ConfigTypeError(f"{name} must be True or False, not {_kind(value)}")
    return value


def _processors(name: str, value: Any) -> Any:
    if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
        raise ConfigTypeError(f"{name} must be a sequence of callables, not {_kind(value)}")
    items = tuple(value)
    for item in items:
        if not callable(item):
            raise ConfigTypeError(f"{name} must hold callables, not {_kind(item)}")
    return items


def _anything(name: str, value: Any) -> Any:
    return value


def _signal_name(name: str, value: Any) -> Any:
    if not isinstance(value, str):
        raise ConfigTypeError(f"{name} must be a signal name or 'none', not {_kind(value)}")
    if not (value.lower() in ("", "none") or re.fullmatch(r"[A-Za-z0-9]+", value)):
        raise ConfigError(f"{name} must be a signal name or 'none', not {value!r}")
    return value


_CHECKS: dict[str, Callable[[str, Any], Any]] = {
    "log_dir": _log_dir,
    "level": _choice(*LEVELS),
    "flush_interval": _seconds,
    "buffer_limit": _count,
    "buffer_bytes": _bytes(64 * 1024),
    "overflow": _choice("flush", "drop"),
    "max_log_bytes": _log_cap,
    "processors": _processors,
    "logger": _anything,
    "on_deadlock": _choice("report", "raise"),
    "lock_order": _flag,
    "long_wait": _threshold,
    "long_hold": _threshold,
    "snapshot_signal": _signal_name,
}


def check(name: str, value: Any) -> Any:
    """``value`` for setting ``name``, normalised (a path as str, processors as a tuple); raises
    `ConfigTypeError` for a wrong type and `ConfigError` for a wrong value, naming ``name``."""
    return _CHECKS[name](name, value)


def _combined(problems: list[tuple[str, Any, ConfigError]], source: str) -> ConfigError:
    """One error naming every bad setting and where it came from; a `ConfigTypeError` if one of
    them has the wrong type."""
    text = "; ".join(f"{name}={value!r} ({source}): {exc}" for name, value, exc in problems)
    if any(isinstance(exc, TypeError) for _, _, exc in problems):
        return ConfigTypeError(text)
    return ConfigError(text)


def log_dir_problem(path: str) -> str | None:
    """Why logs cannot be written to directory ``path`` (None if they can). Creates nothing:
    a missing directory is fine if its nearest existing parent is a writable directory."""
    target = os.path.abspath(path)
    if os.path.exists(target):
        if not os.path.isdir(target):
            return f"{target} exists and is not a directory"
        if not os.access(target, os.W_OK | os.X_OK):
            return f"{target} is not writable"
        return None
    parent = target
    while not os.path.exists(parent):
        up = os.path.dirname(parent)
        if up == parent:
            return f"no part of {target} exists"
        parent = up
    if not os.path.isdir(parent):
        return f"{parent} is not a directory, so {target} cannot be created"
    if not os.access(parent, os.W_OK | os.X_OK):
        return f"{target} cannot be created: {parent} is not writable"
    return None


# -- reading one variable ---------------------------------------------------------------------
def _text(text: str, field: str) -> Any:
    value = text.strip() if field != "log_dir" else text
    return value if value else _UNSET  # set but empty: as if unset


def _float(text: str, field: str) -> Any:
    if not text.strip():
        return _UNSET
    try:
        return float(text)
    except ValueError:
        raise ConfigError(f"{field} must be a number of seconds, not {text!r}") from None


def _int(text: str, field: str) -> Any:
    if not text.strip():
        return _UNSET
    try:
        return int(text)
    except ValueError:
        raise ConfigError(f"{field} must be a whole number, not {text!r}") from None


def _bool(text: str, field: str) -> Any:
    value = text.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    if not value:
        return _UNSET
    raise ConfigError(f"{field} must be 1 or 0 (true/false, yes/no, on/off), not {text!r}")


def _seconds_or_none(text: str, field: str) -> Any:
    value = text.strip()
    if value.lower() in ("none", "off"):
        return None
    if not value:
        return _UNSET
    try:
        return float(value)
    except ValueError:
        raise ConfigError(f"{field} must be a number of seconds or 'none', not {text!r}") from None


def _signal_text(text: str, field: str) -> Any:
    return text.strip()  # set but empty: no handler


def _log_bytes_text(text: str, field: str) -> Any:
    """Bytes, optionally with a binary suffix (``512M``, ``2G``, ``64KiB``), or ``none``/``off``
    for no cap; empty: the default."""
    raw = text.strip()
    if not raw:
        return _UNSET
    if raw.lower() in ("none", "off"):
        return None
    m = re.fullmatch(r"(\d+)\s*([kmgt]?)(?:i?b)?", raw.lower())
    if m is None:
        raise ConfigError(f"{field} must be a number of bytes (like 1073741824, 512M or 2G) or "
                          f"'none', not {text!r}")
    return int(m.group(1)) * _UNITS[m.group(2)]


_ENV_PARSERS: dict[str, Callable[[str, str], Any]] = {
    "log_dir": _text,
    "level": _text,
    "flush_interval": _float,
    "buffer_limit": _int,
    "buffer_bytes": _int,
    "overflow": _text,
    "max_log_bytes": _log_bytes_text,
    "on_deadlock": _text,
    "lock_order": _bool,
    "long_wait": _seconds_or_none,
    "long_hold": _seconds_or_none,
    "snapshot_signal": _signal_text,
}


MIN_LOG_BYTES = 64 * 1024
"""The smallest ``max_log_bytes``: a file's share (a quarter) must hold more than its header."""
_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def _describe(obj: object) -> str:
    return getattr(obj, "__qualname__", type(obj).__qualname__)


