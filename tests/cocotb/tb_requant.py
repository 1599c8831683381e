"""cocotb testbench: the requant unit (all lanes, or lane-serial) alone, with random stalls on
its input and random back-pressure on its output, against sw.golden.requant over the whole
range: any int32 accumulator, any int16 multiplier, every shift 0..63, residual and relu."""

import json
import os
import random

import cocotb
import numpy as np
from amaranth.lib import data
from amaranth import signed
from cocotb.triggers import ReadOnly, RisingEdge

from hw.requant import requant_in_layout
from sim.cocotb_common import clock_and_reset, drive
from sw.golden import requant

P = json.loads(os.environ["LLMACCEL_TB_PARAMS"])
R = P["rows"]


def entry(rng, rnd):
    ext = rnd.random() < 0.3          # extremes: full-scale accumulators and multipliers
    acc = (rng.choice([-(1 << 31), (1 << 31) - 1, -1, 0, 1], R) if ext
           else rng.integers(-(1 << 31), 1 << 31, R)).astype(np.int64)
    mult = int(rnd.choice([-(1 << 15), (1 << 15) - 1]) if ext
               else rnd.randint(-(1 << 15), (1 << 15) - 1))
    return {"acc": acc.tolist(), "mult": mult, "res": rng.integers(-128, 128, R).tolist(),
            "shift": rnd.randint(0, 63) if rnd.random() < 0.3 else rnd.randint(10, 50),
            "residual": int(rnd.random() < 0.5), "relu": int(rnd.random() < 0.3)}


@cocotb.test()
async def requant_unit(dut):
    """Every accepted entry comes out once, in order, exactly as the golden model's."""
    seed = P["seed"]
    rnd, rng = random.Random(seed), np.random.default_rng(seed)
    await clock_and_reset(dut, i__valid=0, o__ready=0)
    items = [entry(rng, rnd) for _ in range(P["n"])]
    got = []
    out_l = data.ArrayLayout(signed(8), R)

    async def sink():
        while True:
            dut.o__ready.value = int(rnd.random() >= P["backpressure"])
            await ReadOnly()
            if dut.o__valid.value and dut.o__ready.value:
                v = out_l.from_bits(int(dut.o__payload.value))
                got.append([int(x) for x in v])
            await RisingEdge(dut.clk)

    cocotb.start_soon(sink())
    await drive(dut, items, requant_in_layout(R), P["stall"], rnd)
    for _ in range(20 * R + 20):
        await RisingEdge(dut.clk)
    assert len(got) == len(items), f"seed={seed}: {len(got)} of {len(items)} entries came out"
    for i, (it, o) in enumerate(zip(items, got)):
        want = requant(np.array([it["acc"]], np.int64), np.array([it["mult"]], np.int64),
                       it["shift"], np.array([it["res"]]) if it["residual"] else None,
                       bool(it["relu"]))[0]
        assert o == want.tolist(), f"seed={seed} entry {i} ({it}): {o} != {want.tolist()}"
