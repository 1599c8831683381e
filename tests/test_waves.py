"""Waveforms from the fast runner: the window holds exactly the cycles asked for, and every
flop's value in it equals what the (untraced) runner peeks at that cycle."""

import pytest

from compiler.randprog import random_program
from sim.fast import FastRunner
from sim.waves import read_waves

SEED = 5
WINDOW = (40, 90)


@pytest.fixture(scope="module", params=["vcd", pytest.param("fst", marks=pytest.mark.slow)])
def traced_run(request, tiny, tmp_path_factory):
    fmt = request.param
    if fmt == "fst":
        pytest.importorskip("pylibfst", reason="reading FST back needs pylibfst")
    path = tmp_path_factory.mktemp("waves") / f"run.{fmt}"
    rp = random_program(tiny, SEED)
    runner = FastRunner(tiny, waves=path, window=WINDOW, quiet=True)
    _, stats = runner.run(rp.program, rp.memory)
    assert stats["error"] is None and stats["cycles"] > WINDOW[1], stats
    return runner, rp, read_waves(path)


def test_window_holds_exactly_the_cycles_asked(traced_run):
    runner, _, waves = traced_run
    p = runner.period_ps
    assert waves.times() == [c * p + h for c in range(*WINDOW) for h in (0, p // 2)]


def test_window_values_equal_peek(traced_run, tiny):
    _, rp, waves = traced_run
    p = traced_run[0].period_ps
    # a fresh model, as the traced one was: payload registers keep their value over a reset
    tiny_rtl = FastRunner(tiny, quiet=True)
    flops = [e for e in tiny_rtl.state_elements()
             if e.depth == 1 and f"TOP.llmaccel_top.{e.name}" in waves.changes]
    assert len(flops) > 100, "the waveform should name the design's flops as the runner does"
    tiny_rtl.start(tiny_rtl.load(rp.program, rp.memory))
    assert not tiny_rtl.step(WINDOW[0] - tiny_rtl.cycle)
    for c in range(*WINDOW):
        assert tiny_rtl.cycle == c
        for e in flops:
            got = waves.value(f"TOP.llmaccel_top.{e.name}", c * p)
            assert got == tiny_rtl.peek(e), f"seed={SEED} cycle {c}: {e.name}"
        tiny_rtl.step(1)


def test_bad_waveform_requests(tiny):
    with pytest.raises(ValueError, match="suffix"):
        FastRunner(tiny, waves="run.txt", quiet=True)
    with pytest.raises(ValueError, match="window"):
        FastRunner(tiny, waves="run.vcd", window=(10, 5), quiet=True)


def test_fault_waves_differ_from_the_fault_cycle_on(tiny, tmp_path):
    """The faulty run starts from the golden run's own state: nothing differs before the
    fault's cycle, and the flipped flop differs at it."""
    from sim.faults.models import Fault
    from sim.faults.wave import fault_waves
    from sim.faults.workload import make_workload
    wl = make_workload("matmul", tiny, seed=0)
    f = Fault(kernel=0, cycle=60, structure="counters", element="cnt_insns", entry=0, bit=5,
              model="flip")
    fw = fault_waves(tiny, wl, f, tmp_path, window=(20, 120))
    assert fw.first_cycle == 60
    assert "TOP.llmaccel_top.cnt_insns" in fw.signals
