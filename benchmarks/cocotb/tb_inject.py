"""A cocotb fault injector, the way one is usually written: per fault, reset the design,
run the kernel from the start with the memory served in the test's cycle loop
(benchmarks/cocotb/inline_bus.py), flip the bit through the simulator handle at the fault's
cycle, run to done (or a watchdog), compare the memory with the golden run's. The
benchmark's reference for the fast injector's speed."""

import json
import os
import time

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge, RisingEdge

from inline_bus import run_program

P = json.loads(os.environ["LLMACCEL_TB_PARAMS"])


def _handle(dut, name):
    h = dut
    for part in name.split("."):
        h = getattr(h, part)
    return h


async def _run_one(dut, kern, fault):
    mem = bytearray(np.load(kern["image"]).tobytes())
    mem += bytes(P["dram_bytes"] - len(mem))
    await RisingEdge(dut.clk)       # out of the previous run's read-only phase
    dut.rst.value = 1
    dut.start.value = 0
    dut.bus__req__ready.value = 0
    dut.bus__resp__valid.value = 0
    for _ in range(4):
        await RisingEdge(dut.clk)
    dut.rst.value = 0
    await RisingEdge(dut.clk)
    target = _handle(dut, fault["element"])

    async def flip_settled():
        # mid-cycle, when the values have settled: read, flip, and the write is in place
        # before the next rising edge (at the top of the loop's cycle, right after an edge,
        # reads still show the previous cycle's values)
        await FallingEdge(dut.clk)
        target.value = int(target.value) ^ (1 << fault["bit"])

    def flip(cycle):
        # the loop counts the start edge's cycle as 1 one edge earlier than the fast runner:
        # the state the fast runner calls cycle c settles in the loop's cycle c + 1
        if cycle == fault["cycle"] + 1:
            cocotb.start_soon(flip_settled())

    _, done = await run_program(dut, mem, kern["prog_addr"], P["bus_bytes"], P["latency"],
                                max_cycle=fault["cycle"] + 2 * kern["cycles"] + 1000,
                                on_cycle=flip)
    if not done or dut.error.value:
        return "due"
    gold = np.load(kern["golden"]).tobytes()
    return "masked" if bytes(mem[:len(gold)]) == gold else "sdc"


@cocotb.test()
async def inject(dut):
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    outcomes = []
    t0 = time.perf_counter()
    for f in P["faults"]:
        outcomes.append(await _run_one(dut, P["kernels"][f["kernel"]], f))
    wall = time.perf_counter() - t0
    with open(P["out"], "w") as fh:
        json.dump({"outcomes": outcomes, "seconds": wall}, fh)
