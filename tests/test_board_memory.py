"""The board memory alone (Amaranth's simulator): random bus requests under random
back-pressure on the responses, both builds (registered for high clocks, direct for low):
every response comes once, in order, with the data last written."""

import random

import pytest
from amaranth.sim import Simulator

from boards.memory import BoardMemory
from hw.config import AccelConfig


@pytest.mark.parametrize("registered,seed", [(True, 1), (False, 2), (False, 3)])
def test_board_memory_in_order_under_back_pressure(registered, seed):
    cfg = AccelConfig(rows=4, cols=4, bus_bytes=4, dram_bytes=4096, mem_bytes_per_cycle=4)
    dut = BoardMemory(cfg, registered=registered)
    rnd = random.Random(seed)
    words = cfg.dram_bytes // 4
    reqs = [(rnd.random() < 0.4, rnd.randrange(16) * 4, rnd.getrandbits(32), rnd.randrange(4))
            for _ in range(400)]            # (write, byte address, data, tag): 16 words, hot
    model, expected = [0] * words, []
    for we, addr, data, tag in reqs:
        expected.append((tag, 0 if we else model[addr // 4]))
        if we:
            model[addr // 4] = data
    got = []

    async def bench(ctx):
        i = 0
        for _ in range(5000):
            if i < len(reqs):
                we, addr, data, tag = reqs[i]
                ctx.set(dut.bus.req.valid, rnd.random() < 0.8)
                ctx.set(dut.bus.req.payload.we, we)
                ctx.set(dut.bus.req.payload.addr, addr)
                ctx.set(dut.bus.req.payload.wdata, data)
                ctx.set(dut.bus.req.payload.tag, tag)
            else:
                ctx.set(dut.bus.req.valid, 0)
            ctx.set(dut.bus.resp.ready, rnd.random() < 0.6)
            took = ctx.get(dut.bus.req.valid) and ctx.get(dut.bus.req.ready)
            if ctx.get(dut.bus.resp.valid) and ctx.get(dut.bus.resp.ready):
                got.append((ctx.get(dut.bus.resp.payload.tag),
                            ctx.get(dut.bus.resp.payload.rdata)))
            await ctx.tick()
            i += bool(took)
            if len(got) == len(reqs):
                break

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    assert len(got) == len(reqs), f"seed={seed}: {len(got)} responses of {len(reqs)}"
    for n, (g, e) in enumerate(zip(got, expected)):
        if e[1] == 0 and reqs[n][0]:
            assert g[0] == e[0], f"seed={seed}: response {n} tag {g[0]} != {e[0]}"
        else:
            assert g == e, f"seed={seed}: response {n} is {g}, expected {e}"


def test_link_resets_the_accelerator_from_a_flop():
    """The accelerator's reset (``Link.acc_rst``) is high through the board's reset (one
    edge late), then low; a START frame raises it for exactly the cycle before the
    start pulse. Above the low-clock threshold it is the accelerator's only reset, so the
    board's reset must reach the accelerator through it."""
    from amaranth import Signal
    from amaranth.hdl import ResetInserter
    from boards.link import Link
    from boards.protocol import SOF_REQ, Cmd, encode
    import struct

    cfg = AccelConfig(rows=4, cols=4, bus_bytes=4, dram_bytes=4096, mem_bytes_per_cycle=4)
    dut = Link(cfg, clock_hz=1_000_000, idle_cycles=1000, addr_bits=10)
    board_rst = Signal()
    trace = []

    async def bench(ctx):
        ctx.set(board_rst, 1)
        for _ in range(3):
            await ctx.tick()
            trace.append(("reset", ctx.get(dut.acc_rst)))
        ctx.set(board_rst, 0)
        await ctx.tick()
        trace.append(("after", ctx.get(dut.acc_rst)))
        await ctx.tick()
        trace.append(("idle", ctx.get(dut.acc_rst)))
        ctx.set(dut.tx.ready, 1)
        for b in encode(SOF_REQ, Cmd.START, 1, struct.pack("<I", 0x40)):
            ctx.set(dut.rx.payload, b)
            ctx.set(dut.rx.valid, 1)
            await ctx.tick()
            ctx.set(dut.rx.valid, 0)
            await ctx.tick()
        for _ in range(50):
            trace.append(("run", ctx.get(dut.acc_rst), ctx.get(dut.start)))
            await ctx.tick()

    sim = Simulator(ResetInserter({"sync": board_rst})(dut))
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    assert trace[:5] == [("reset", 1)] * 3 + [("after", 0), ("idle", 0)], trace[:5]
    run = [t[1:] for t in trace[5:]]
    rst_at = [i for i, (r, _) in enumerate(run) if r]
    start_at = [i for i, (_, s) in enumerate(run) if s]
    assert len(rst_at) == 1 and start_at == [rst_at[0] + 1], run
