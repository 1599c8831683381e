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

