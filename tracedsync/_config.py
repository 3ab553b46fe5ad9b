"""Settings: the keyword arguments of `configure()` and the ``TRACEDSYNC_*`` environment variables.

Environment variables are how configuration travels to child processes, so every setting that
matters in a child has one. Explicit `configure()` arguments win over the environment.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from typing import Any

from ._runtime import LEVELS

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
    buffer_limit: int = 100_000
    """Events buffered before the filling thread tries to flush (or drops, see ``overflow``)."""
    overflow: str = "flush"
    """``flush``: the filling thread flushes if it can do so without blocking; ``drop``: drop
    and count."""
    processors: tuple[Any, ...] = ()
    """structlog processors run on each event before the JSON renderer."""
    logger: Any = None
    """A structlog (bound) logger to send events to instead of the per-process file."""

    def __post_init__(self) -> None:
        if self.level not in LEVELS:
            raise ConfigError(f"level must be one of {sorted(LEVELS)}, not {self.level!r}")
        if self.overflow not in ("flush", "drop"):
            raise ConfigError(f"overflow must be 'flush' or 'drop', not {self.overflow!r}")
        if not self.flush_interval > 0:
            raise ConfigError(f"flush_interval must be > 0 seconds, not {self.flush_interval!r}")
        if self.buffer_limit < 1:
            raise ConfigError(f"buffer_limit must be >= 1, not {self.buffer_limit!r}")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Settings from ``TRACEDSYNC_LOG_DIR``, ``_LEVEL``, ``_FLUSH_INTERVAL``, ``_BUFFER_LIMIT``,
        ``_OVERFLOW``."""
        env = os.environ if environ is None else environ
        kw: dict[str, Any] = {}
        for field in ("log_dir", "level", "overflow"):
            value = env.get(ENV_PREFIX + field.upper())
            if value:
                kw[field] = value
        for field, conv in (("flush_interval", float), ("buffer_limit", int)):
            value = env.get(ENV_PREFIX + field.upper())
            if value:
                try:
                    kw[field] = conv(value)
                except ValueError:
                    raise ConfigError(
                        f"{ENV_PREFIX}{field.upper()}={value!r} is not a valid {conv.__name__}"
                    ) from None
        return cls(**kw)

    def replace(self, **changes: Any) -> Settings:
        """A copy with ``changes`` applied (unknown names raise `TypeError`)."""
        unknown = set(changes) - {f.name for f in dataclasses.fields(self)}
        if unknown:
            raise TypeError(f"unknown tracedsync setting(s): {', '.join(sorted(unknown))}")
        if "processors" in changes and changes["processors"] is not None:
            changes["processors"] = tuple(changes["processors"])
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})

    def to_env(self) -> dict[str, str]:
        """The environment variables that reproduce these settings in a child process."""
        return {
            ENV_PREFIX + "LOG_DIR": os.path.abspath(self.log_dir),
            ENV_PREFIX + "LEVEL": self.level,
            ENV_PREFIX + "FLUSH_INTERVAL": repr(self.flush_interval),
            ENV_PREFIX + "BUFFER_LIMIT": str(self.buffer_limit),
            ENV_PREFIX + "OVERFLOW": self.overflow,
        }

    def public(self) -> dict[str, Any]:
        """The settings as they appear in a session header."""
        return {
            "log_dir": os.path.abspath(self.log_dir),
            "level": self.level,
            "flush_interval": self.flush_interval,
            "buffer_limit": self.buffer_limit,
            "overflow": self.overflow,
            "processors": [_describe(p) for p in self.processors],
            "logger": None if self.logger is None else _describe(self.logger),
        }


def _describe(obj: object) -> str:
    return getattr(obj, "__qualname__", type(obj).__qualname__)


