"""The one CUDA-event timer (kernels/timing.py) on a fake clock: warm-up runs are untimed,
the flush runs before every timed run and outside its events, the run count adapts to the
call's length within its bounds, and per-step times add up to the run's."""

from __future__ import annotations

from memsim.kernels.timing import event_times_s


class FakeClock:
    """Events that read a clock the steps advance: step k takes durations[k] seconds."""

    def __init__(self) -> None:
        self.now = 0.0
        self.log: list[str] = []

    def backend(self):  # noqa: ANN201
        clock = self

        class Event:
            def record(self) -> None:
                self.t = clock.now
                clock.log.append("event")

            def synchronize(self) -> None:
                pass

        return (Event, lambda: None, lambda a, b: b.t - a.t)

    def step(self, name: str, seconds: float):  # noqa: ANN201
        def run() -> None:
            self.now += seconds
            self.log.append(name)
        return run


def test_flush_and_warmup_stay_outside_the_timed_region() -> None:
    clock = FakeClock()

    def flush() -> None:
        clock.now += 100.0                 # a slow flush must not show in any time
        clock.log.append("flush")

    t = event_times_s([clock.step("a", 1e-3), clock.step("b", 2e-3)],
                      backend=clock.backend(), flush=flush, warmup=2, min_repeats=3,
                      max_repeats=3)
    assert len(t.runs_s) == 3 and all(abs(r - 3e-3) < 1e-12 for r in t.runs_s)
    assert [round(x, 12) for x in t.step_medians_s()] == [1e-3, 2e-3]
    # warm-up: a b a b, untimed and unflushed; then per run: flush, event, a, event, b, event
    assert clock.log[:4] == ["a", "b", "a", "b"]
    assert clock.log[4:10] == ["flush", "event", "a", "event", "b", "event"]
    assert t.summary()["repeats"] == 3


def test_the_run_count_adapts_to_the_call_length() -> None:
    clock = FakeClock()
    long = event_times_s(clock.step("x", 0.2), backend=clock.backend(), warmup=0,
                         min_repeats=5, max_repeats=50, target_s=0.5)
    short = event_times_s(clock.step("y", 1e-6), backend=clock.backend(), warmup=0,
                          min_repeats=5, max_repeats=50, target_s=0.5)
    assert len(long.runs_s) == 5 and len(short.runs_s) == 50
