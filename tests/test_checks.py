"""hw/queue.py sum_exceeds (the executors' range checks on the fields' low bits, with their
high bits tested apart, and OR gates for a power-of-two bound) against plain arithmetic,
over every input of small widths."""

import pytest


@pytest.mark.parametrize("bound,wa,wb,bits", [(1, 3, 2, None), (2, 4, 3, None),
                                              (16, 7, 5, None), (64, 8, 4, None),
                                              (40, 7, 6, None), (12, 6, 6, 5)])
def test_sum_exceeds_exhaustive(bound, wa, wb, bits):
    from amaranth import Module, Signal
    from amaranth.sim import Simulator
    from hw.queue import sum_exceeds
    m = Module()
    a, b, o = Signal(wa), Signal(wb), Signal()
    m.d.comb += o.eq(sum_exceeds((a, b), bound, bits))
    bad = []

    async def bench(ctx):
        for x in range(1 << wa):
            for y in range(1 << wb):
                ctx.set(a, x)
                ctx.set(b, y)
                if ctx.get(o) != int(x + y > bound):
                    bad.append((x, y))
    sim = Simulator(m)
    sim.add_testbench(bench)
    sim.run()
    assert not bad, f"bound={bound}: {len(bad)} wrong, first (a, b) = {bad[0]}"
