import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from hw.config import AccelConfig, load_config  # noqa: E402


def rect_config():
    """A non-square array with multi-beat entries and only some LUT weight widths:
    exercises what tiny cannot."""
    return AccelConfig(name="rect", rows=8, cols=4, bus_bytes=4, act_depth=256, wgt_depth=128,
                       acc_depth=32, scale_depth=32, queue_depth=2, dram_bytes=1 << 20,
                       mem_bytes_per_cycle=3, mem_latency=5, clock_mhz=100,
                       engines=("systolic", "lut"), lut_wbits=(1, 2))


@pytest.fixture(scope="session")
def tiny():
    return load_config("tiny")


@pytest.fixture(scope="session")
def tiny_rtl(tiny):
    from sim.fast import FastRunner
    return FastRunner(tiny, quiet=True)


@pytest.fixture(scope="session")
def tinybs(tiny):
    """tiny with the bit-serial engine beside the other two (FPX groups of 16)."""
    return tiny.replace(name="tinybs", engines=("systolic", "lut", "bitserial"),
                        bitserial_group=16)


@pytest.fixture(scope="session")
def tinybs_rtl(tinybs):
    from sim.fast import FastRunner
    return FastRunner(tinybs, quiet=True)


@pytest.fixture(scope="session")
def rect():
    return rect_config()


@pytest.fixture(scope="session")
def rect_rtl(rect):
    from sim.fast import FastRunner
    return FastRunner(rect, quiet=True)


def pytest_addoption(parser):
    parser.addoption("--sim", choices=["verilator", "icarus"],
                     help="simulator for the cocotb testbenches (default: $LLMACCEL_SIM, "
                     "else verilator); the whole-accelerator one runs on both anyway")


def pytest_configure(config):
    sim = config.getoption("--sim")
    if sim:
        import os
        os.environ["LLMACCEL_SIM"] = sim      # read by sim.cocotb_run (and by xdist workers)

