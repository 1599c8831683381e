"""The pyverilator interactive runner: same programs, same results, waveforms."""

import pytest

from compiler.randprog import random_program
from sw.golden import Machine


@pytest.fixture(scope="module")
def interactive(tiny, tmp_path_factory):
    from sim.interactive import InteractiveRunner
    return InteractiveRunner(tiny, quiet=True)


@pytest.mark.parametrize("seed", [11, 12, 13])
def test_interactive_bit_exact(tiny, interactive, seed):
    rp = random_program(tiny, seed, max_jobs=2)
    gm, gs = Machine(tiny).run(rp.program, rp.memory)
    vm, vs = interactive.run(rp.program, rp.memory)
    assert vs["error"] is None and gm.data == vm.data, f"seed={seed}"
    assert vs["macs"] == gs["macs"]


def test_interactive_matches_fast_runner_cycle_for_cycle(tiny, tiny_rtl, interactive):
    rp = random_program(tiny, 21, max_jobs=2)
    _, a = interactive.run(rp.program, rp.memory)
    _, b = tiny_rtl.run(rp.program, rp.memory)
    assert a["cycles"] == b["cycles"], "the two memory models must agree cycle for cycle"


def test_vcd_waveform(tiny, tmp_path):
    from sim.interactive import InteractiveRunner
    wave = tmp_path / "run.vcd"
    r = InteractiveRunner(tiny, waves=wave, quiet=True)
    rp = random_program(tiny, 5, max_jobs=1)
    _, st = r.run(rp.program, rp.memory)
    text = wave.read_text()
    assert "$enddefinitions" in text and "pe0_0_acc" in text
    assert text.count("\n#") > st["cycles"]


def test_fst_request_is_a_clear_error(tiny, tmp_path):
    from sim.interactive import InteractiveRunner
    with pytest.raises(ValueError, match=r"the fast runner writes FST"):
        InteractiveRunner(tiny, waves=tmp_path / "x.fst", quiet=True)


@pytest.mark.slow
def test_interactive_counters_in_bram(tiny, tiny_rtl):
    """counter_store = "bram": the interactive runner clocks the RAM's read port for each
    counter and reads what the fast runner (which peeks at the RAM) and registers read."""
    from hw.isa import Counter
    from sim.interactive import InteractiveRunner
    cfg = tiny.replace(counter_store="bram")
    rp = random_program(cfg, 23, max_jobs=2)
    vm, vs = InteractiveRunner(cfg, quiet=True).run(rp.program, rp.memory)
    same = random_program(tiny, 23, max_jobs=2)     # the program, built for `tiny`
    _, rs = tiny_rtl.run(same.program, same.memory)
    assert vs["error"] is None
    for c in Counter:
        n = c.name.lower()
        assert vs[n] == rs[n], f"counter {n}: interactive (bram) {vs[n]}, registers {rs[n]}"
