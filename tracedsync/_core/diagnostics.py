"""Telling the user something went wrong inside tracedsync, without taking any lock."""

from __future__ import annotations

import os


def report(message: str) -> None:
    """Tell the user on stderr without taking any lock (no logging, no print)."""
    try:
        os.write(2, f"tracedsync: {message}\n".encode("utf-8", "replace"))
    except OSError:  # pragma: no cover - stderr closed
        pass

