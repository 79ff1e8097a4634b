import asyncio
import socket
import sys
import threading

import pytest

from dataset_scripts.event_loop import MAX_TICK, GatheringSelector, PacedLoop, tick_for


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(round(seconds, 6))
        self.now += seconds


@pytest.fixture
def ready_selector():
    """A GatheringSelector on a fake clock, watching a socket that always has a byte to read (polls never block)."""
    clock = FakeClock()
    left, right = socket.socketpair()
    right.send(b"x")
    selector = GatheringSelector(clock=clock, sleep=clock.sleep)
    selector.register(left, 1)  # EVENT_READ
    yield selector, clock
    selector.close()
    left.close()
    right.close()


def test_without_a_tick_every_poll_goes_straight_to_the_os(ready_selector):
    selector, clock = ready_selector
    for timeout in (None, 0, 0.5):
        assert len(selector.select(timeout)) == 1
    assert clock.sleeps == []


def test_a_poll_within_a_tick_of_the_last_waits_for_the_rest_of_the_tick(ready_selector):
    selector, clock = ready_selector
    selector.tick = 0.05
    selector.select(None)  # the first poll: nothing to wait for
    clock.now += 0.01
    assert len(selector.select(None)) == 1  # the byte that arrived meanwhile is still there, handled with the rest
    clock.now += 0.2  # a tick and more since the last poll: no wait
    selector.select(None)
    assert clock.sleeps == [0.04]


def test_ready_callbacks_go_at_once_and_a_timer_due_within_the_tick_waits_for_its_end(ready_selector):
    selector, clock = ready_selector
    selector.tick = 0.05
    selector.select(None)
    selector.select(0)  # asyncio has callbacks ready: poll at once
    selector.select(0.01)  # a timer due in 10 ms fires with whatever else arrives in the tick
    clock.now += 0.02
    selector.select(1.0)
    assert clock.sleeps == [0.05, 0.03]


@pytest.mark.parametrize(
    ("latency", "tick"),
    [(None, 0.0), (0.02, 0.0), (0.5, 0.005), (2.0, 0.02), (8.0, MAX_TICK), (600.0, MAX_TICK)],
)
def test_the_tick_is_a_hundredth_of_the_typical_latency_capped_and_none_for_a_fast_teacher(latency, tick):
    assert tick_for(latency) == pytest.approx(tick)


def test_the_typical_latency_follows_what_the_client_reports():
    loop = PacedLoop()
    loop.observe(4.0)
    assert loop.typical_latency == 4.0
    for _ in range(200):
        loop.observe(1.0)
    assert loop.typical_latency == pytest.approx(1.0, abs=0.01)


@pytest.mark.skipif(sys.version_info < (3, 11) or sys.platform == "win32", reason="runs an unpaced loop there")
def test_the_run_polls_on_the_paced_selector_with_the_latency_reported_during_it():
    """A reply arriving from another thread while the loop waits: the loop's poll waits out its tick first."""
    sleeps: list[float] = []
    loop = PacedLoop(sleep=sleeps.append)  # records the waits instead of sleeping
    left, right = socket.socketpair()

    async def wait_for_a_reply() -> bytes:
        loop.observe(5.0)  # as the teacher client does after a request: tick 50 ms from now on
        running = asyncio.get_running_loop()
        left.setblocking(False)
        threading.Timer(0.05, right.send, [b"reply"]).start()
        await running.sock_recv(left, 16)  # the first poll after this sets the clock; later ones wait
        threading.Timer(0.05, right.send, [b"again"]).start()
        return await running.sock_recv(left, 16)

    try:
        assert loop.run(wait_for_a_reply()) == b"again"
    finally:
        left.close()
        right.close()
    assert loop.selector.tick == MAX_TICK
    assert sleeps and all(0 < wait <= MAX_TICK for wait in sleeps)


def test_a_run_returns_what_the_coroutine_returns_and_raises_what_it_raises():
    async def answer() -> int:
        return 42

    async def cancelled() -> None:
        asyncio.current_task().cancel()
        await asyncio.sleep(1)

    assert PacedLoop().run(answer()) == 42
    with pytest.raises(asyncio.CancelledError):
        PacedLoop().run(cancelled())
