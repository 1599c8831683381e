"""A cocotb fault injector, the way one is usually written: per fault, reset the design,
run the kernel from the start with the memory served in the test's cycle loop, flip the bit
through the simulator handle at the fault's cycle, run to done (or a watchdog), compare the
memory with the golden run's. The benchmark's reference for the fast injector's speed."""

import json
import os
import time
from collections import deque

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import ReadOnly, RisingEdge

P = json.loads(os.environ["LLMACCEL_TB_PARAMS"])


def _handle(dut, name):
    h = dut
    for part in name.split("."):
        h = getattr(h, part)
    return h


async def _run_one(dut, bb, lat, kern, fault):
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
    dut.prog_addr.value = kern["prog_addr"]
    dut.start.value = 1
    await RisingEdge(dut.clk)
    dut.start.value = 0
    pending = deque()
    cycle = 1
    dut.bus__req__ready.value = 1
    budget = fault["cycle"] + 2 * kern["cycles"] + 1000
    target = _handle(dut, fault["element"])
    while cycle < budget:
        if cycle == fault["cycle"]:
            target.value = int(target.value) ^ (1 << fault["bit"])
        show = bool(pending) and pending[0][0] <= cycle
        if show:
            _, data, tag = pending[0]
            dut.bus__resp__payload.value = int.from_bytes(data, "little") | (tag << (8 * bb))
        dut.bus__resp__valid.value = int(show)
        await ReadOnly()
        if dut.done.value:
            break
        req = bool(dut.bus__req__valid.value)
        resp = show and bool(dut.bus__resp__ready.value)
        if req:
            p = int(dut.bus__req__payload.value)
            addr, we, tag = p & 0xFFFFFFFF, (p >> 32) & 1, (p >> (33 + 8 * bb)) & 3
            data = bytes(bb)
            if addr + bb <= len(mem):
                if we:
                    mem[addr:addr + bb] = ((p >> 33) & ((1 << (8 * bb)) - 1)).to_bytes(bb,
                                                                                       "little")
                else:
                    data = bytes(mem[addr:addr + bb])
        await RisingEdge(dut.clk)
        cycle += 1
        if resp:
            pending.popleft()
        if req:
            pending.append((cycle + lat, data, tag))
    if not dut.done.value:
        return "due"
    if dut.error.value:
        return "due"
    gold = np.load(kern["golden"]).tobytes()
    return "masked" if bytes(mem[:len(gold)]) == gold else "sdc"


@cocotb.test()
async def inject(dut):
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    outcomes = []
    t0 = time.perf_counter()
    for f in P["faults"]:
        outcomes.append(await _run_one(dut, P["bus_bytes"], P["latency"],
                                       P["kernels"][f["kernel"]], f))
    wall = time.perf_counter() - t0
    with open(P["out"], "w") as fh:
        json.dump({"outcomes": outcomes, "seconds": wall}, fh)
