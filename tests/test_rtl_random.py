"""RTL vs golden model vs an independent integer oracle, on seeded random programs."""

import numpy as np
import pytest

from compiler.randprog import random_program
from sw.golden import Machine

COUNTERS = ("insns", "macs", "bytes_read", "bytes_written")


def check_program(cfg, rtl, seed, **kw):
    """Run a seeded random program on the executor ``rtl``; check it against the golden
    model and the integer oracle. Returns the executor's stats."""
    rp = random_program(cfg, seed, **kw)
    gm, gs = Machine(cfg).run(rp.program, rp.memory)
    vm, vs = rtl.run(rp.program, rp.memory)
    ctx = f"seed={seed} config={cfg.name}: {rp.description}"
    assert gs["error"] is None and vs["error"] is None, f"{ctx}: {gs['error']} / {vs['error']}"
    for name, exact in rp.expected.items():
        np.testing.assert_array_equal(gm.read(name), exact, err_msg=f"golden vs oracle, {ctx}")
        np.testing.assert_array_equal(vm.read(name), exact, err_msg=f"RTL vs oracle, {ctx}")
    assert gm.data == vm.data, f"final memory differs, {ctx}"
    for c in COUNTERS:
        assert gs[c] == vs[c], f"counter {c}: golden {gs[c]} RTL {vs[c]}, {ctx}"
    lut_macs = vs["macs"] - vs["array_busy"] * cfg.rows * cfg.cols
    assert vs["cycles"] > 0 and lut_macs >= 0 and (lut_macs == 0) == (vs.get("lut_busy", 0) == 0)
    return vs


@pytest.mark.parametrize("seed", range(60))
def test_random_programs_tiny(tiny, tiny_rtl, seed):
    check_program(tiny, tiny_rtl, seed)


@pytest.mark.parametrize("seed", range(100, 125))
def test_random_programs_rect(rect, rect_rtl, seed):
    check_program(rect, rect_rtl, seed)


@pytest.mark.parametrize("seed", range(200, 205))
def test_random_programs_slow_memory(tiny, seed):
    """Same programs under a starved, long-latency memory: results may not change."""
    from sim.fast import FastRunner
    slow = FastRunner(tiny, bytes_per_cycle=1, latency=37, quiet=True)
    check_program(tiny, slow, seed)


_SERIAL = {}


@pytest.mark.parametrize("base,lanes,bits,seed",
                         [("tiny", 1, 16, s) for s in range(300, 310)]
                         + [("rect", 2, 16, s) for s in range(310, 316)]
                         + [("tiny", 4, 1, s) for s in range(320, 324)]
                         + [("rect", 2, 4, s) for s in range(324, 328)]
                         + [("tiny", 2, 2, s) for s in range(328, 334)])
def test_random_programs_lane_serial_requant(tiny, rect, base, lanes, bits, seed):
    """The lane-serial requant unit (requant_lanes < rows) and the digit-serial products
    (requant_mult_bits < 16): same results, bit for bit."""
    from sim.fast import FastRunner
    cfg = {"tiny": tiny, "rect": rect}[base].replace(requant_lanes=lanes,
                                                      requant_mult_bits=bits)
    if cfg not in _SERIAL:
        _SERIAL[cfg] = FastRunner(cfg, quiet=True)
    check_program(cfg, _SERIAL[cfg], seed)


@pytest.mark.parametrize("seed", range(400, 408))
def test_random_programs_ice40_preset(seed):
    """The small-FPGA preset: one-deep queues, a one-lane requant unit, 32-bit counters."""
    from hw.config import load_config
    from sim.fast import FastRunner
    cfg = load_config("ice40")
    if cfg not in _SERIAL:
        _SERIAL[cfg] = FastRunner(cfg, quiet=True)
    vs = check_program(cfg, _SERIAL[cfg], seed)
    wide = cfg.replace(counter_bits=64)
    if wide not in _SERIAL:
        _SERIAL[wide] = FastRunner(wide, quiet=True)
    rp = random_program(wide, seed)       # the same program, for the other hash
    _, ws = _SERIAL[wide].run(rp.program, rp.memory)
    from hw.isa import Counter
    for c in Counter:
        k = c.name.lower()
        assert ws[k] == vs[k], f"seed={seed}: counter {k} reads {vs[k]} at 32 bits, {ws[k]} at 64"


def test_golden_many_seeds_against_oracle(tiny):
    for seed in range(1000, 1150):
        rp = random_program(tiny, seed)
        gm, gs = Machine(tiny).run(rp.program, rp.memory)
        assert gs["error"] is None, f"seed={seed}"
        for name, exact in rp.expected.items():
            np.testing.assert_array_equal(gm.read(name), exact, err_msg=f"seed={seed}")
