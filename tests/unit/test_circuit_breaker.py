"""The per-server circuit breaker of the OpenCode driver."""

from __future__ import annotations

import threading

from app.drivers.opencode_client import BreakerRegistry, CircuitBreaker


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_opens_after_threshold_consecutive_failures() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(threshold=3, cooldown=10, clock=clock)
    for _ in range(2):
        assert breaker.allow()
        breaker.record_failure()
    assert breaker.state == "closed"
    assert breaker.allow()
    breaker.record_failure()
    assert breaker.state == "open"
    assert not breaker.allow()
    assert breaker.retry_after() == 10


def test_a_success_resets_the_count() -> None:
    breaker = CircuitBreaker(threshold=2, cooldown=10, clock=FakeClock())
    breaker.record_failure()
    breaker.record_success()
    breaker.record_failure()
    assert breaker.state == "closed"


def test_half_open_lets_one_trial_through_then_closes_on_success() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(threshold=1, cooldown=10, clock=clock)
    breaker.record_failure()
    clock.now += 9.9
    assert not breaker.allow()
    clock.now += 0.1
    assert breaker.state == "half_open"
    assert breaker.allow()
    assert not breaker.allow()  # only one trial at a time
    breaker.record_success()
    assert breaker.state == "closed"
    assert breaker.allow() and breaker.allow()


def test_failed_trial_reopens_for_a_full_cooldown() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(threshold=1, cooldown=10, clock=clock)
    breaker.record_failure()
    clock.now += 10
    assert breaker.allow()
    breaker.record_failure()
    assert breaker.state == "open"
    clock.now += 5
    assert not breaker.allow()
    clock.now += 5
    assert breaker.allow()


def test_a_lost_trial_frees_its_slot() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(threshold=1, cooldown=10, clock=clock)
    breaker.record_failure()
    clock.now += 10
    assert breaker.allow()
    breaker.release()
    assert breaker.allow()
    clock.now += 10  # a trial that never reports back does not block forever
    assert breaker.allow()


def test_registry_keeps_one_breaker_per_server() -> None:
    registry = BreakerRegistry(threshold=2, cooldown=5)
    assert registry.get("http://a:1/") is registry.get("HTTP://A:1")
    assert registry.get("http://a:1") is not registry.get("http://b:1")
    assert registry.get("http://a:1").threshold == 2


def test_concurrent_failures_are_all_counted() -> None:
    breaker = CircuitBreaker(threshold=400, cooldown=10, clock=FakeClock())
    threads = [
        threading.Thread(target=lambda: [breaker.record_failure() for _ in range(50)])
        for _ in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert breaker.state == "open"
