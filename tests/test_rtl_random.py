"""RTL vs golden model vs an independent integer oracle, on seeded random programs."""

import numpy as np
import pytest

from compiler.randprog import random_program
from hw.isa import Buffer, Queue
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
    # MACs beyond the systolic array's come from the other engines, and only from them
    other_macs = vs["macs"] - vs["array_busy"] * cfg.rows * cfg.cols
    other_busy = vs.get("lut_busy", 0) + vs.get("bitserial_busy", 0)
    assert vs["cycles"] > 0 and other_macs >= 0 and (other_macs == 0) == (other_busy == 0)
    return vs


@pytest.mark.parametrize("seed", range(60))
def test_random_programs_tiny(tiny, tiny_rtl, seed):
    check_program(tiny, tiny_rtl, seed)


@pytest.mark.parametrize("seed", range(400, 440))
def test_random_programs_three_engines(tinybs, tinybs_rtl, seed):
    """The systolic, LUT and bit-serial engines in one accelerator (every bit-serial data
    type, FPX groups of 16 with their selector entries)."""
    check_program(tinybs, tinybs_rtl, seed)


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


def _slow_but(cases, keep):
    """The cases of one configuration run in `make test`; the others, each its own
    Verilator build, in `make test-slow`."""
    return [c if c[:len(keep)] == keep else pytest.param(*c, marks=pytest.mark.slow)
            for c in cases]


@pytest.mark.parametrize("base,lanes,bits,seed", _slow_but(
                         [("tiny", 1, 16, s) for s in range(300, 310)]
                         + [("rect", 2, 16, s) for s in range(310, 316)]
                         + [("tiny", 4, 1, s) for s in range(320, 324)]
                         + [("rect", 2, 4, s) for s in range(324, 328)]
                         + [("tiny", 2, 2, s) for s in range(328, 334)], ("tiny", 1, 16)))
def test_random_programs_lane_serial_requant(tiny, rect, base, lanes, bits, seed):
    """The lane-serial requant unit (requant_lanes < rows) and the digit-serial products
    (requant_mult_bits < 16): same results, bit for bit."""
    from sim.fast import FastRunner
    cfg = {"tiny": tiny, "rect": rect}[base].replace(requant_lanes=lanes,
                                                      requant_mult_bits=bits)
    if cfg not in _SERIAL:
        _SERIAL[cfg] = FastRunner(cfg, quiet=True)
    check_program(cfg, _SERIAL[cfg], seed)


@pytest.mark.parametrize("base,slow,seed", _slow_but(
                         [("tiny", False, s) for s in range(340, 352)]
                         + [("tiny", True, s) for s in range(352, 358)]
                         + [("rect", False, s) for s in range(358, 364)]
                         + [("serial", False, s) for s in range(364, 376)]
                         + [("direct", False, s) for s in range(376, 388)]
                         + [("direct", True, s) for s in range(388, 392)]
                         + [("systolic", False, s) for s in range(392, 404)]
                         + [("systolic", True, s) for s in range(404, 408)]
                         + [("noqueue", False, s) for s in range(408, 416)]
                         + [("noqueue", True, s) for s in range(416, 420)]
                         + [("lowclock", False, s) for s in range(420, 428)], ("systolic",)))
def test_random_programs_small_fpga_options(tiny, rect, base, slow, seed):
    """scratchpad_ports = "shared": one read port each for the accumulators (drain, requant,
    store) and the activations (MATMUL feed on both engines, residuals, store); the store
    waits for free cycles. ``direct``: also systolic_drain = "direct" (no result registers);
    ``systolic``: and no LUT engine, so no group scales (a two-stage accumulator writer);
    ``noqueue``: and queue_depth = 0; ``lowclock``: and a 24 MHz target (every pipelining knob off).
    Same results, bit for bit, also under a slow memory."""
    from sim.fast import FastRunner
    serial = tiny.replace(requant_lanes=1, requant_mult_bits=2)    # a requant waits long
    direct = serial.replace(systolic_drain="direct")
    systolic = direct.replace(engines=("systolic",))   # no group scales: a 2-stage writer
    noqueue = systolic.replace(queue_depth=0)           # straight into the executing slots
    lowclock = noqueue.replace(clock_mhz=24)            # every pipelining knob off (hw/timing.py)
    cfg = {"tiny": tiny, "rect": rect, "serial": serial, "direct": direct,
           "systolic": systolic, "noqueue": noqueue, "lowclock": lowclock}[base].replace(
        scratchpad_ports="shared", sfu=False)
    key = (cfg, slow)
    if key not in _SERIAL:
        _SERIAL[key] = FastRunner(cfg, quiet=True, **({"bytes_per_cycle": 1, "latency": 37}
                                                      if slow else {}))
    check_program(cfg, _SERIAL[key], seed)


@pytest.mark.parametrize("engines", [("systolic", "lut"), ("systolic",)])
def test_shared_ports_requant_beside_drains(tiny, engines):
    """A REQUANT that reads the accumulators while later MATMULs drain into them (and a
    store waits for the port): on one shared port every read still gets its own entry
    (with a seven-stage accumulator writer, and the two-stage one of no group scales)."""
    from compiler.asm import Assembler, mask
    from sim.fast import FastRunner
    from sw.program import MemoryImage
    cfg = tiny.replace(scratchpad_ports="shared", engines=engines, sfu=False)
    R, C, L, Cq, S = cfg.rows, cfg.cols, Queue.LOAD, Queue.COMPUTE, Queue.STORE
    rng = np.random.default_rng(77)
    mem = MemoryImage(bytearray())
    k = 8
    act = mem.write("act", rng.integers(-128, 128, (k, R)).astype(np.int8))
    wgt = mem.write("wgt", rng.integers(-128, 128, (k, C)).astype(np.int8))
    scl = mem.write("scales", rng.integers(1, 1 << 12, 64).astype(np.int16))
    out_q = mem.write("out_q", np.zeros((32, R), np.int8))
    out_acc = mem.write("out_acc", np.zeros((32, R), np.int32))
    a = Assembler(cfg)
    bb = cfg.bus_bytes
    a.load(Buffer.ACT, 0, act, k, R)
    a.load(Buffer.WGT, 0, wgt, k, C)
    a.load(Buffer.SCALE, 0, scl, 128 // bb, bb, release=mask(Cq))
    for t in range(8):                      # tiles 0..31: drained before the REQUANT reads
        a.matmul(0, 0, 4 * t, k, wait=mask(L) if t == 0 else 0)
    for t in range(8, 16):                  # tiles 32..63: drain while it reads
        a.matmul(t % 4, 0, 4 * t, 2, accumulate=t % 2 == 1)
    a.requant(0, 100, 0, 32, 9, relu=True, release=mask(S))
    a.sync(Cq, release=mask(S))             # every drain is written
    a.store(Buffer.ACT, 100, out_q, 32, R, wait=mask(Cq))
    a.store(Buffer.ACC, 32, out_acc, 32, 4 * R, wait=mask(Cq))
    gm, gs = Machine(cfg).run(a.program(), mem)
    vm, vs = FastRunner(cfg, quiet=True).run(a.program(), mem)
    assert gs["error"] is None and vs["error"] is None, (gs["error"], vs["error"])
    for name in ("out_q", "out_acc"):
        np.testing.assert_array_equal(vm.read(name), gm.read(name), err_msg=name)
    assert np.count_nonzero(gm.read("out_q")) > 16 and np.count_nonzero(gm.read("out_acc")) > 64


@pytest.mark.slow
@pytest.mark.parametrize("seed", [430, 431, 432])
def test_counters_in_bram_agree(tiny, tiny_rtl, seed):
    """counter_store = "bram" (totals in a RAM, updated round-robin): every counter, busy
    cycles included, ends equal to the registers' after a run, and the results are the
    same."""
    from hw.isa import Counter
    from sim.fast import FastRunner
    cfg = tiny.replace(counter_store="bram")
    if cfg not in _SERIAL:
        _SERIAL[cfg] = FastRunner(cfg, quiet=True)
    vs = check_program(cfg, _SERIAL[cfg], seed)
    rp = random_program(tiny, seed)
    _, rs = tiny_rtl.run(rp.program, rp.memory)
    for c in Counter:
        n = c.name.lower()
        assert vs[n] == rs[n], f"seed={seed}: counter {n}: bram {vs[n]}, registers {rs[n]}"
    assert vs["macs"] > 0 and vs["cycles"] > 100


def test_longest_matmul_at_full_scale(tiny, tiny_rtl):
    """A MATMUL as long as the scratchpads allow (``min(act_depth, wgt_depth)`` steps) of
    -128 x -128 and -128 x 127 products: the sums the systolic accumulators
    (``systolic_acc_bits`` wide) must hold exactly, then accumulated twice more in int32."""
    from compiler.asm import Assembler, mask
    from sw.program import MemoryImage
    cfg = tiny
    R, C, L, Cq = cfg.rows, cfg.cols, Queue.LOAD, Queue.COMPUTE
    k = min(cfg.act_depth, cfg.wgt_depth)
    assert cfg.systolic_acc_bits < 32 and (k << 14) >= 1 << (cfg.systolic_acc_bits - 2)
    mem = MemoryImage(bytearray())
    act = mem.write("act", np.full((k, R), -128, np.int8))
    w = np.where(np.arange(C) % 2 == 0, -128, 127).astype(np.int8)
    wgt = mem.write("wgt", np.tile(w, (k, 1)))
    out = mem.write("out", np.zeros((C, R), np.int32))
    a = Assembler(cfg)
    a.load(Buffer.ACT, 0, act, k, R)
    a.load(Buffer.WGT, 0, wgt, k, C, release=mask(Cq))
    for t in range(3):
        a.matmul(0, 0, 0, k, accumulate=t > 0, wait=mask(L) if t == 0 else 0,
                 release=mask(Queue.STORE) if t == 2 else 0)
    a.store(Buffer.ACC, 0, out, C, 4 * R, wait=mask(Cq))
    gm, gs = Machine(cfg).run(a.program(), mem)
    vm, vs = tiny_rtl.run(a.program(), mem)
    assert gs["error"] is None and vs["error"] is None, (gs["error"], vs["error"])
    want = 3 * k * (-128) * w.astype(np.int64)
    np.testing.assert_array_equal(gm.read("out")[:, 0], want)
    np.testing.assert_array_equal(vm.read("out"), gm.read("out"))


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
