"""Traced multiprocessing primitives: drop-in replacements for ``multiprocessing``'s.

>>> import multiprocessing
>>> import tracedsync.mp
>>> ctx = multiprocessing.get_context("spawn")
>>> counter = tracedsync.mp.Value("i", 0, ctx=ctx, name="counter")
>>> lock = tracedsync.mp.Lock(ctx=ctx)

Each factory takes multiprocessing's own arguments, plus ``ctx`` (a multiprocessing context;
None for multiprocessing's default) and ``name`` (a label in the logs). The objects keep their
identity in every process they are passed to (under fork, spawn and forkserver), and each child
process writes its own log in the same directory. See docs/events.md for what is recorded.
"""

from __future__ import annotations

from ._multiprocessing.barrier import TracedMpBarrier
from ._multiprocessing.condition import TracedMpCondition
from ._multiprocessing.event import TracedMpEvent
from ._multiprocessing.factories import (
    Array,
    Barrier,
    BoundedSemaphore,
    Condition,
    Event,
    Lock,
    RLock,
    Semaphore,
    Value,
)
from ._multiprocessing.locks import TracedMpLock, TracedMpRLock
from ._multiprocessing.semaphore import TracedMpBoundedSemaphore, TracedMpSemaphore
from ._multiprocessing.values import TracedArray, TracedCharArray, TracedValue

__all__ = [
    "Array",
    "Barrier",
    "BoundedSemaphore",
    "Condition",
    "Event",
    "Lock",
    "RLock",
    "Semaphore",
    "TracedArray",
    "TracedCharArray",
    "TracedMpBarrier",
    "TracedMpBoundedSemaphore",
    "TracedMpCondition",
    "TracedMpEvent",
    "TracedMpLock",
    "TracedMpRLock",
    "TracedMpSemaphore",
    "TracedValue",
    "Value",
]
