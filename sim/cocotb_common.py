"""What the cocotb testbenches share: clock and reset, payload packing, and a monitor for an
engine's drain."""

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import ReadOnly, RisingEdge

__all__ = ["clock_and_reset", "collect_tiles", "drive", "pack"]


def pack(layout, values):
    """An amaranth layout's bits for ``values`` (a dict of numbers, lists or numpy arrays),
    as the integer to drive onto a port."""
    return layout.const({k: (v.tolist() if hasattr(v, "tolist") else v)
                         for k, v in values.items()}).as_value().value


async def clock_and_reset(dut, cycles=3, settle=True, **idle):
    """Start a 100 MHz clock on ``dut.clk``, hold ``rst`` for ``cycles`` with the named
    inputs at their idle values, release it, and (``settle``) wait one more edge so the
    first driven cycle is after reset. Returns the clock task."""
    clock = cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    dut.rst.value = 1
    for name, value in idle.items():
        getattr(dut, name).value = value
    for _ in range(cycles):
        await RisingEdge(dut.clk)
    dut.rst.value = 0
    if settle:
        await RisingEdge(dut.clk)
    return clock


async def collect_tiles(dut, layout, got):
    """Monitor an engine's drain (``o``, always ready, one output channel per cycle in
    ``layout``): append ``(tag, tile [rows, channels])`` to ``got`` per drained tile."""
    cols = []
    while True:
        await RisingEdge(dut.clk)
        await ReadOnly()
        if dut.o__valid.value:
            c = layout.from_bits(int(dut.o__payload.value))
            cols.append([int(x) for x in c["data"]])
            if c["last"]:
                got.append((int(c["tag"]), np.array(cols).T))
                cols = []


async def drive(dut, items, layout, stall, rnd):
    """Offer ``items`` one by one on ``dut.i`` (payload packed in ``layout``), withholding
    valid with probability ``stall`` each cycle (``rnd``: a random.Random); each item stays
    until it is accepted. Leaves valid low."""
    for it in items:
        while True:
            stalled = rnd.random() < stall
            dut.i__valid.value = 0 if stalled else 1
            dut.i__payload.value = pack(layout, it)
            await ReadOnly()
            fire = not stalled and bool(dut.i__ready.value)
            await RisingEdge(dut.clk)
            if fire:
                break
    dut.i__valid.value = 0
