"""cocotb throughput bench: run one program on the whole accelerator, no back-pressure beyond
the memory model's latency, and report cycles (counted as the fast runner counts them) and
wall time. The memory is served inline (benchmarks/cocotb/inline_bus.py)."""

import json
import os
import time

import cocotb
import numpy as np

from inline_bus import run_program
from sim.cocotb_common import clock_and_reset

P = json.loads(os.environ["LLMACCEL_TB_PARAMS"])


@cocotb.test()
async def throughput(dut):
    mem = bytearray(np.load(P["image"]).tobytes())
    await clock_and_reset(dut, start=0)
    t0 = time.perf_counter()
    cycle, done = await run_program(dut, mem, P["prog_addr"], P["bus_bytes"], P["latency"])
    wall = time.perf_counter() - t0
    assert done and not dut.error.value
    with open(P["out"], "w") as f:
        json.dump({"cycles": cycle, "seconds": wall}, f)
