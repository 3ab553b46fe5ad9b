"""Settings: the keyword arguments of `configure()` and the ``TRACEDSYNC_*`` environment variables.

Environment variables are how configuration travels to child processes, so every setting that
matters in a child has one. Explicit `configure()` arguments win over the environment.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Mapping
from typing import Any

from .._core.runtime import LEVELS

ENV_PREFIX = "TRACEDSYNC_"


class ConfigError(ValueError):
    """A setting has a value tracedsync cannot use."""


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
    """Check lock-order inversions online (``order_violation`` events); costs on every
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
        if self.level not in LEVELS:
            raise ConfigError(f"level must be one of {sorted(LEVELS)}, not {self.level!r}")
        if self.overflow not in ("flush", "drop"):
            raise ConfigError(f"overflow must be 'flush' or 'drop', not {self.overflow!r}")
        if not self.flush_interval > 0:
            raise ConfigError(f"flush_interval must be > 0 seconds, not {self.flush_interval!r}")
        if self.buffer_limit < 1:
            raise ConfigError(f"buffer_limit must be >= 1, not {self.buffer_limit!r}")
        if self.buffer_bytes < 64 * 1024:
            raise ConfigError(f"buffer_bytes must be >= 65536, not {self.buffer_bytes!r}")
        cap = self.max_log_bytes
        if cap is not None and (isinstance(cap, bool) or not isinstance(cap, int)
                                or cap < MIN_LOG_BYTES):
            raise ConfigError(f"max_log_bytes must be None or an int >= {MIN_LOG_BYTES}, "
                              f"not {cap!r}")
        if self.on_deadlock not in ("report", "raise"):
            raise ConfigError(
                f"on_deadlock must be 'report' or 'raise', not {self.on_deadlock!r}")
        if not isinstance(self.lock_order, bool):
            raise ConfigError(f"lock_order must be True or False, not {self.lock_order!r}")
        for field in ("long_wait", "long_hold"):
            value = getattr(self, field)
            if value is not None and not (
                isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0
            ):
                raise ConfigError(f"{field} must be None or > 0 seconds, not {value!r}")
        sig = self.snapshot_signal
        if not isinstance(sig, str) or not (
            sig.lower() in ("", "none") or re.fullmatch(r"[A-Za-z0-9]+", sig)
        ):
            raise ConfigError(f"snapshot_signal must be a signal name or 'none', not {sig!r}")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Settings from ``TRACEDSYNC_LOG_DIR``, ``_LEVEL``, ``_FLUSH_INTERVAL``, ``_BUFFER_LIMIT``,
        ``_OVERFLOW``, ``_MAX_LOG_BYTES``, ``_ON_DEADLOCK``, ``_LOCK_ORDER``, ``_LONG_WAIT``,
        ``_LONG_HOLD``, ``_SNAPSHOT_SIGNAL``."""
        env = os.environ if environ is None else environ
        kw: dict[str, Any] = {}
        for field in ("log_dir", "level", "overflow", "on_deadlock"):
            value = env.get(ENV_PREFIX + field.upper())
            if value:
                kw[field] = value
        for field, conv in (("flush_interval", float), ("buffer_limit", int),
                            ("buffer_bytes", int)):
            value = env.get(ENV_PREFIX + field.upper())
            if value:
                try:
                    kw[field] = conv(value)
                except ValueError:
                    raise ConfigError(
                        f"{ENV_PREFIX}{field.upper()}={value!r} is not a valid {conv.__name__}"
                    ) from None
        kw.update(_detection_from_env(env))
        kw.update(_max_log_bytes_from_env(env))
        return cls(**kw)

    def replace(self, **changes: Any) -> Settings:
        """A copy with ``changes`` applied (unknown names raise `TypeError`)."""
        unknown = set(changes) - {f.name for f in dataclasses.fields(self)}
        if unknown:
            raise TypeError(f"unknown tracedsync setting(s): {', '.join(sorted(unknown))}")
        if "processors" in changes and changes["processors"] is not None:
            changes["processors"] = tuple(changes["processors"])
        # None means "unchanged", except for the thresholds, where it means "off".
        return dataclasses.replace(
            self, **{k: v for k, v in changes.items() if v is not None or k in _NULLABLE}
        )

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


def _detection_from_env(env: Mapping[str, str]) -> dict[str, Any]:
    """``_LOCK_ORDER`` (1/0, true/false, yes/no, on/off), ``_LONG_WAIT``/``_LONG_HOLD``
    (seconds, or ``none``/``off``) and ``_SNAPSHOT_SIGNAL`` (set but empty: no handler)."""
    kw: dict[str, Any] = {}
    value = env.get(ENV_PREFIX + "LOCK_ORDER", "").strip().lower()
    if value in _TRUE:
        kw["lock_order"] = True
    elif value in _FALSE:
        kw["lock_order"] = False
    elif value:
        raise ConfigError(f"{ENV_PREFIX}LOCK_ORDER={value!r} is not 1 or 0")
    for field in ("long_wait", "long_hold"):
        value = env.get(ENV_PREFIX + field.upper(), "").strip()
        if value.lower() in ("none", "off"):
            kw[field] = None
        elif value:
            try:
                kw[field] = float(value)
            except ValueError:
                raise ConfigError(
                    f"{ENV_PREFIX}{field.upper()}={value!r} is not a number of seconds"
                ) from None
    sig = env.get(ENV_PREFIX + "SNAPSHOT_SIGNAL")
    if sig is not None:
        kw["snapshot_signal"] = sig.strip()
    return kw


MIN_LOG_BYTES = 64 * 1024
"""The smallest ``max_log_bytes``: a file's share (a quarter) must hold more than its header."""
_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def _max_log_bytes_from_env(env: Mapping[str, str]) -> dict[str, Any]:
    """``_MAX_LOG_BYTES``: bytes, optionally with a binary suffix (``512M``, ``2G``, ``64KiB``),
    or ``none``/``off`` for no cap; unset or empty: the default."""
    raw = env.get(ENV_PREFIX + "MAX_LOG_BYTES", "").strip()
    if not raw:
        return {}
    if raw.lower() in ("none", "off"):
        return {"max_log_bytes": None}
    m = re.fullmatch(r"(\d+)\s*([kmgt]?)(?:i?b)?", raw.lower())
    if m is None:
        raise ConfigError(f"{ENV_PREFIX}MAX_LOG_BYTES={raw!r} is not a number of bytes "
                          f"(like 1073741824, 512M or 2G) or 'none'")
    return {"max_log_bytes": int(m.group(1)) * _UNITS[m.group(2)]}


def _describe(obj: object) -> str:
    return getattr(obj, "__qualname__", type(obj).__qualname__)


