"""Blocking work of many coroutines gathered into batches: one thread hop per batch, each caller its own result."""

import asyncio
import threading
import time

import pytest

from dataset_scripts.thread_batches import ThreadBatches


class Recorder:
    """A batch function that records its batches (and how many ran at once) and squares its arguments."""

    def __init__(self, seconds=0.0):
        self.batches, self.seconds, self.running, self.most_at_once = [], seconds, 0, 0
        self.lock = threading.Lock()

    def __call__(self, arguments):
        with self.lock:
            self.batches.append(list(arguments))
            self.running += 1
            self.most_at_once = max(self.most_at_once, self.running)
        time.sleep(self.seconds)
        with self.lock:
            self.running -= 1
        return [ValueError(f"bad {a}") if a < 0 else a * a for a in arguments]


def test_calls_arriving_together_share_one_hop_and_each_gets_its_own_result():
    work = Recorder()
    batches = ThreadBatches(work, linger=0.01)

    async def many():
        return await asyncio.gather(*[batches.submit(n) for n in range(40)])

    assert asyncio.run(many()) == [n * n for n in range(40)]
    assert work.batches == [list(range(40))]  # one thread hop, in arrival order


def test_an_exception_result_reaches_only_its_caller():
    batches = ThreadBatches(Recorder())

    async def mixed():
        return await asyncio.gather(batches.submit(3), batches.submit(-1), batches.submit(4), return_exceptions=True)

    three, bad, four = asyncio.run(mixed())
    assert (three, four) == (9, 16) and isinstance(bad, ValueError) and str(bad) == "bad -1"


def test_a_failing_batch_fails_every_caller_of_that_batch_only():
    calls = []

    def write(arguments):
        calls.append(arguments)
        if len(calls) == 1:
            raise OSError(28, "No space left on device")
        return [None] * len(arguments)

    batches = ThreadBatches(write)

    async def two_batches():
        first = await asyncio.gather(batches.submit("a"), batches.submit("b"), return_exceptions=True)
        second = await batches.submit("c")
        return first, second

    first, second = asyncio.run(two_batches())
    assert [type(error) for error in first] == [OSError, OSError] and second is None
    assert calls == [["a", "b"], ["c"]]


def test_batches_respect_their_size_and_how_many_run_at_once():
    work = Recorder(seconds=0.02)
    batches = ThreadBatches(work, max_batch=4, parallel=2)

    async def many():
        return await asyncio.gather(*[batches.submit(n) for n in range(20)])

    assert asyncio.run(many()) == [n * n for n in range(20)]
    assert max(len(batch) for batch in work.batches) == 4 and work.most_at_once == 2
    assert sorted(n for batch in work.batches for n in batch) == list(range(20))


def test_a_cancelled_caller_s_work_is_done_and_drain_waits_for_it():
    done = []

    def slow_write(arguments):
        time.sleep(0.1)
        done.extend(arguments)
        return [None] * len(arguments)

    batches = ThreadBatches(slow_write)

    async def cancel_then_drain():
        caller = asyncio.create_task(batches.submit("row"))
        await asyncio.sleep(0.02)  # the batch is running in its thread
        caller.cancel()
        with pytest.raises(asyncio.CancelledError):
            await caller
        assert done == []
        await batches.drain()
        return list(done)

    assert asyncio.run(cancel_then_drain()) == ["row"]


def test_a_call_made_as_the_last_batch_finishes_still_runs():
    """The caller woken by a batch's result calls again before that batch's task is done: it must not wait forever."""
    batches = ThreadBatches(lambda arguments: arguments, parallel=1)

    async def back_to_back():
        return [await batches.submit(n) for n in range(5)]  # awaited directly: no task hop in between

    assert asyncio.run(asyncio.wait_for(back_to_back(), timeout=5)) == [0, 1, 2, 3, 4]
