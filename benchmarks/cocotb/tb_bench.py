"""cocotb throughput bench: run one program on the whole accelerator, no back-pressure beyond
the memory model's latency, and report cycles and wall time.

The memory is served inline in the test's own cycle loop rather than by the shared
``sim.cocotb_bus.BusMemory`` coroutine: one coroutine per cycle is cocotb's best case
(measured 21.6k cycles/s here, against 16.6k with the separate coroutine), so the
comparison with the fast runner is not flattered."""

import json
import os
import time
from collections import deque

import cocotb
import numpy as np
from cocotb.triggers import ReadOnly, RisingEdge

from sim.cocotb_common import clock_and_reset

P = json.loads(os.environ["LLMACCEL_TB_PARAMS"])


@cocotb.test()
async def throughput(dut):
    bb, lat = P["bus_bytes"], P["latency"]
    mem = bytearray(np.load(P["image"]).tobytes())
    await clock_and_reset(dut, start=0)
    dut.prog_addr.value = P["prog_addr"]
    dut.start.value = 1
    await RisingEdge(dut.clk)
    dut.start.value = 0
    pending = deque()
    cycle = 0
    t0 = time.perf_counter()
    dut.bus__req__ready.value = 1
    while True:
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
            if we:
                mem[addr:addr + bb] = ((p >> 33) & ((1 << (8 * bb)) - 1)).to_bytes(bb, "little")
                data = bytes(bb)
            else:
                data = bytes(mem[addr:addr + bb])
        await RisingEdge(dut.clk)
        cycle += 1
        if resp:
            pending.popleft()
        if req:
            pending.append((cycle + lat, data, tag))
    wall = time.perf_counter() - t0
    assert not dut.error.value
    with open(P["out"], "w") as f:
        json.dump({"cycles": cycle, "seconds": wall}, f)
