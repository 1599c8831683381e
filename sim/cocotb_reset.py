"""Clock and reset for the cocotb testbenches (one place for it)."""

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import RisingEdge

__all__ = ["clock_and_reset"]


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
