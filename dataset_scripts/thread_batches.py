"""Blocking work of many concurrent workers, gathered into batches that each take one thread hop.

At hundreds of requests per second, a thread hop per image read and a thread hop plus an fsync per record are a
large share of the client's CPU. Here each worker hands over its argument and waits; calls that arrive while the
batches in flight run (or while a new batch lingers a moment) go out together in the next batch, which runs
`function(arguments)` in a worker thread and hands each caller its own result (or raises its own exception). Used
twice by the synthesis runner: image reads (several batches at once, bounded size, so slow reads still overlap) and
the output's group commit (one batch at a time, so rows keep their order, and one fsync per file per batch: a caller
returns only once its rows are durable).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any


class ThreadBatches:
    """`await submit(argument)` runs `function([..., argument, ...])` in a thread together with other callers."""

    def __init__(
        self,
        function: Callable[[list], list],
        *,
        max_batch: int | None = None,
        parallel: int = 1,
        linger: float = 0.0,
    ) -> None:
        """`function` maps a list of arguments to a list of results in the same order; a result that is an exception
        is raised to its caller. If `function` itself raises, every caller of that batch gets the exception.
        A batch waits `linger` seconds for company unless it is full already."""
        self.function = function
        self.max_batch = max_batch
        self.parallel = parallel
        self.linger = linger
        self._waiting: list[tuple[Any, asyncio.Future]] = []
        self._running: set[asyncio.Task] = set()
        self._collecting = 0  # batches being gathered (not yet handed to a thread)

    async def submit(self, argument: Any) -> Any:
        waiter = asyncio.get_running_loop().create_future()
        self._waiting.append((argument, waiter))
        self._start_if_needed()
        return await waiter

    def _start_if_needed(self) -> None:
        """A new batch for the waiting calls, unless one is being gathered or `parallel` batches are running."""
        if self._waiting and not self._collecting and len(self._running) < self.parallel:
            self._collecting += 1
            task = asyncio.create_task(self._run_batches())
            self._running.add(task)
            task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task) -> None:
        """A batch task ended: calls made after it last looked (by callers it woke, say) need a batch of their own."""
        self._running.discard(task)
        self._start_if_needed()

    async def _run_batches(self) -> None:
        """Gather a batch (lingering if it is not full), run it in a thread, and go on while calls are waiting."""
        while True:
            if self.linger and len(self._waiting) < (self.max_batch or float("inf")):
                await asyncio.sleep(self.linger)
            size = self.max_batch or len(self._waiting)
            batch, self._waiting = self._waiting[:size], self._waiting[size:]
            self._collecting -= 1
            if not batch:  # another batch being gathered at the same time took them
                return
            self._start_if_needed()  # the rest goes to another thread meanwhile
            try:
                results = await asyncio.to_thread(self.function, [argument for argument, _ in batch])
            except Exception as error:  # e.g. OutputWriteError (a full disk): every caller of the batch sees it
                results = [error] * len(batch)
            for (_, waiter), result in zip(batch, results, strict=True):
                if waiter.done():  # its caller was cancelled: the work is done all the same
                    continue
                if isinstance(result, BaseException):
                    waiter.set_exception(result)
                else:
                    waiter.set_result(result)
            if not self._waiting:
                return
            self._collecting += 1

    async def drain(self) -> None:
        """Wait for the batches in flight (after a fatal error cancelled the workers, before files are closed)."""
        while self._running:
            await asyncio.gather(*[asyncio.shield(task) for task in self._running], return_exceptions=True)
