"""cocotb testbenches (cocotb 2.x through cocotb_tools.runner), run from pytest."""

from pathlib import Path

import pytest

from sim.cocotb_run import component_verilog, run_testbench, simulator_missing

TB_DIR = Path(__file__).resolve().parent / "cocotb"


def _slow_but(cases, n=1):
    """The first ``n`` cases run in `make test`, the others in `make test-slow`."""
    return cases[:n] + [pytest.param(*c, marks=pytest.mark.slow) for c in cases[n:]]


def _run(component, top, module, params, seed, testcase=None, sim=None):
    if sim and simulator_missing(sim):
        pytest.skip(simulator_missing(sim))
    tests, failures, log = run_testbench(component_verilog(component, top), top, module, TB_DIR,
                                         params=dict(params, seed=seed), seed=seed,
                                         testcase=testcase, sim=sim)
    assert tests > 0, f"no cocotb test ran:\n{log[-3000:]}"
    assert failures == 0, f"seed={seed}: {failures} cocotb failure(s):\n{log[-5000:]}"


@pytest.mark.parametrize("seed,drain,acc_bits,tile_rows", _slow_but([
    (9, "direct", 21, 3), (1, "overlap", 32, 1), (2, "overlap", 21, 1), (5, "direct", 21, 1),
    (8, "overlap", 32, 3)], 2))
def test_systolic_array(seed, drain, acc_bits, tile_rows):
    """Random MATMULs of up to 40 steps with random stalls, some at full scale; ``direct``:
    no result registers; 21-bit accumulators: just wide enough for 40 steps; 3-row tiles:
    all rows in one step."""
    from hw.systolic import SystolicArray
    assert (40 << 14).bit_length() + 1 == 21
    _run(SystolicArray(rows=3, cols=4, drain=drain, acc_bits=acc_bits, tile_rows=tile_rows),
         f"array_{drain}_{acc_bits}_{tile_rows}", "tb_array",
         {"rows": 3, "cols": 4, "jobs": 12, "stall": 0.3}, seed)


@pytest.mark.parametrize("seed", [3])
def test_dma_load(seed):
    from hw.config import load_config
    from hw.dma import DmaLoad
    _run(DmaLoad(load_config("tiny")), "dma_load", "tb_dma",
         {"config": "tiny", "n": 25}, seed, testcase="loads")


@pytest.mark.parametrize("seed", [4])
def test_dma_store(seed):
    from hw.config import load_config
    from hw.dma import DmaStore
    _run(DmaStore(load_config("tiny")), "dma_store", "tb_dma",
         {"config": "tiny", "n": 25}, seed, testcase="stores")


#: random SFU programs that between them run every function (softmax whole and in chunks)
SFU_SEEDS = [9, 11, 25, 53]


@pytest.mark.parametrize("sim", ["verilator", "icarus"])
@pytest.mark.parametrize("seed", [5])
def test_accelerator_with_backpressure(seed, sim):
    """Fetch, decode and dispatch of real programs, special-function ones included, under a
    stalling memory, on both simulators (Icarus when it is installed)."""
    from hw.accelerator import Accelerator
    from hw.config import load_config
    _run(Accelerator(load_config("tiny")), "accel", "tb_top",
         {"config": "tiny", "seeds": [seed, seed + 10, seed + 20],
          "sfu_seeds": SFU_SEEDS, "stall": 0.4}, seed,
         sim=sim)


def _registers(verilog):
    """Every register of the design (not the memories), as an instance path below the top."""
    from sim.state import flops_by_module, memory_ports
    mems = set(memory_ports(verilog))
    return [m.split(".")[1:] + [n] for m, names in flops_by_module(verilog).items()
            for n in sorted(x.lstrip("\\").strip() for x in names) if (m, n) not in mems]


@pytest.mark.parametrize("config", ["tiny", "ice40"])
def test_no_x_after_reset(config):
    """Every register and every output is known after reset on a 4-state simulator
    (Icarus); that nothing turns X later is shown by test_accelerator_with_backpressure
    [icarus], whose bus model fails on an X handshake."""
    from hw.accelerator import Accelerator
    from hw.config import load_config
    cfg = load_config(config)
    v = component_verilog(Accelerator(cfg), "accel")
    flops = _registers(v)
    assert len(flops) > 200
    outputs = ["bus__req__valid", "bus__req__payload", "bus__resp__ready", "running", "done",
               "error", "error_code", "csr_data"]
    _run(Accelerator(cfg), "accel", "tb_reset",
         {"flops": flops, "outputs": outputs}, 0, sim="icarus")


@pytest.mark.parametrize("seed,deep", _slow_but([(6, False), (7, True)]))
def test_lut_precompute(seed, deep):
    """The table precompute unit, and its ``deep`` variant (a skid buffer on its input),
    with stalls and back-pressure."""
    from hw.lut import LutPrecompute
    _run(LutPrecompute(rows=3, ch=6, tag_bits=12, deep=deep), "lut_pre", "tb_lut",
         {"rows": 3, "ch": 6, "tag_bits": 12, "steps": 200, "stall": 0.3,
          "backpressure": 0.4}, seed, testcase="precompute")


@pytest.mark.parametrize("seed,skew", _slow_but([(10, True), (8, False), (9, False), (11, True)]))
def test_lut_array(seed, skew):
    """The LUT array, and its ``skew`` variant (cells take a step systolically: with two
    channels a group, three groups)."""
    from hw.lut import LutArray
    _run(LutArray(rows=3, ch=6, tag_bits=12, skew=skew, group=2), "lut_array", "tb_lut",
         {"rows": 3, "ch": 6, "tag_bits": 12, "jobs": 14, "stall": 0.3}, seed,
         testcase="lut_array")


@pytest.mark.parametrize("seed", [21] + [pytest.param(s, marks=pytest.mark.slow)
                                         for s in (22, 23)])
def test_bitserial_array(seed):
    """The bit-serial array: every data type, FPX selector entries, stalls, full-scale
    activations; each MATMUL drains the exact product."""
    from hw.bitserial import BitSerialArray
    _run(BitSerialArray(rows=3, ch=4, tag_bits=12, plane_bits=1), "bitserial_array",
         "tb_bitserial", {"rows": 3, "ch": 4, "tag_bits": 12, "group": 16, "jobs": 16,
                          "stall": 0.3}, seed)


@pytest.mark.parametrize("lanes,bits,deep,seed", _slow_but([
    (4, 4, False, 15), (2, 16, True, 13), (4, 16, False, 11), (4, 16, True, 17),
    (1, 16, False, 12), (1, 2, False, 14), (2, 1, False, 16)], 2))
def test_requant_unit(lanes, bits, deep, seed):
    """All four lanes at once, and lane-serial (one and two lanes), with one-cycle and
    digit-serial products (``bits`` of the multiplier per cycle; 2 is radix-4 Booth), the
    one-cycle ones also ``deep`` (ten stages), under stalls and back-pressure, over every
    shift and full-scale operands."""
    from hw.requant import LaneSerialRequant, RequantUnit
    unit = (RequantUnit(rows=4, mult_bits=bits, deep=deep) if lanes == 4
            else LaneSerialRequant(rows=4, lanes=lanes, mult_bits=bits, deep=deep))
    _run(unit, "requant", "tb_requant",
         {"rows": 4, "n": 150, "stall": 0.3, "backpressure": 0.4}, seed)
