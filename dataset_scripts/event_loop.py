"""The synthesis CLI's event loop: while the teacher is slow, it gathers wake-ups instead of waking for each reply.

With a thousand requests in flight against a teacher that takes seconds, replies arrive one at a time, and a loop
that wakes for each one pays a whole wake-up per reply (the poll, the loop's bookkeeping, caches gone cold while it
slept), and so do the batch lingers' timers. Polling at most once per tick, with the replies, thread hand-backs and
timers that came due meanwhile handled together, measured 1.8-2.1 ms of client CPU per request in the steady state
against 2.5-2.7 without (bench/bench_synthesis.py, 1024 in flight, 8 s median latency; docs/benchmarks.md). Each
wake-up is then up to a tick late, so the tick follows the teacher's typical latency: 1% of it, capped at MAX_TICK,
and none under MIN_TICK (a fast local teacher, the offline demo). Ready callbacks are never held back.
"""

from __future__ import annotations

import asyncio
import selectors
import sys
import time
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar


MAX_TICK = 0.05
MIN_TICK = 0.001
LATENCY_SHARE = 0.01  # of the typical reply latency
SMOOTHING = 0.05  # weight of each new latency in the running estimate

T = TypeVar("T")


def tick_for(typical_latency: float | None) -> float:
    """Seconds the loop may gather wake-ups for, given the teacher's typical latency (None: not known yet)."""
    if typical_latency is None:
        return 0.0
    tick = min(MAX_TICK, LATENCY_SHARE * typical_latency)
    return tick if tick >= MIN_TICK else 0.0


class GatheringSelector(selectors.DefaultSelector):
    """Polls at most once per `tick` while the loop has nothing ready: the I/O and the timers that come due meanwhile
    are handled together, at most a tick late. asyncio passes timeout 0 when callbacks are ready: no wait then."""

    def __init__(self, clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep):
        super().__init__()
        self.tick = 0.0
        self._clock = clock
        self._sleep = sleep
        self._polled_at = float("-inf")

    def select(self, timeout: float | None = None) -> list:
        if self.tick and (timeout is None or timeout > 0):
            wait = self._polled_at + self.tick - self._clock()
            if wait > 0:
                self._sleep(wait)
                if timeout is not None:
                    timeout = max(0.0, timeout - wait)
        events = super().select(timeout)
        self._polled_at = self._clock()
        return events


class PacedLoop:
    """Runs the synthesis on a GatheringSelector whose tick follows the latency the teacher client reports."""

    def __init__(self, sleep: Callable[[float], None] = time.sleep) -> None:
        self.typical_latency: float | None = None
        self.selector: GatheringSelector | None = None  # the running loop's, once `run` has made it
        self._sleep = sleep

    def observe(self, seconds: float) -> None:
        """One successful request took `seconds` (TeacherClient's `on_latency`)."""
        if self.typical_latency is None:
            self.typical_latency = seconds
        else:
            self.typical_latency += SMOOTHING * (seconds - self.typical_latency)
        if self.selector is not None:
            self.selector.tick = tick_for(self.typical_latency)

    def _new_loop(self) -> asyncio.AbstractEventLoop:
        self.selector = GatheringSelector(sleep=self._sleep)
        self.selector.tick = tick_for(self.typical_latency)
        return asyncio.SelectorEventLoop(self.selector)

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """`asyncio.run(coroutine)` on the paced loop (Ctrl-C cancels the coroutine just the same)."""
        if sys.version_info < (3, 11) or sys.platform == "win32":
            # No loop factory before 3.11; Windows' default selector caps sockets at 512. Plain loop, unpaced.
            return asyncio.run(coroutine)
        with asyncio.Runner(loop_factory=self._new_loop) as runner:
            return runner.run(coroutine)
