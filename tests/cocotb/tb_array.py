"""cocotb testbench: the systolic array alone, random stalls on its input stream."""

import json
import os
import random

import cocotb
import numpy as np
from cocotb.triggers import ReadOnly, RisingEdge

from hw.systolic import column_layout, step_layout
from sim.cocotb_common import clock_and_reset, collect_tiles, pack

P = json.loads(os.environ["LLMACCEL_TB_PARAMS"])
R, C, TAG = P["rows"], P["cols"], 20


@cocotb.test()
async def random_matmuls_with_stalls(dut):
    seed = P["seed"]
    rnd = random.Random(seed)
    rng = np.random.default_rng(seed)
    await clock_and_reset(dut, settle=False, i__valid=0)

    jobs = []
    for t in range(P["jobs"]):
        k = rnd.choice([1, 2, 3, R + C, rnd.randint(1, 40), 40])
        a = rng.integers(-128, 128, (k, R))
        b = rng.integers(-128, 128, (k, C))
        if rnd.random() < 0.3:      # full scale: sums of +-2**14 at the accumulators' bound
            a[:] = -128
            b[:] = rng.choice([-128, 127], C)
        jobs.append((k, a, b, t))
    got = []

    cocotb.start_soon(collect_tiles(dut, column_layout(R, TAG), got))
    for k, a, b, tag in jobs:
        s = 0
        while s < k:
            stall = rnd.random() < P["stall"]
            dut.i__valid.value = 0 if stall else 1
            dut.i__payload.value = pack(step_layout(R, C, TAG), {
                "a": a[s], "b": b[s], "first": s == 0, "last": s == k - 1, "k": k, "tag": tag})
            await ReadOnly()
            fire = not stall and bool(dut.i__ready.value)
            await RisingEdge(dut.clk)
            if fire:
                s += 1
        dut.i__valid.value = 0
    for _ in range(4 * (R + C) + 20):
        await RisingEdge(dut.clk)
    assert len(got) == len(jobs), f"seed={seed}: {len(got)} of {len(jobs)} drained"
    for (k, a, b, tag), (gtag, res) in zip(jobs, got):
        assert gtag == tag, f"seed={seed}: drained out of order"
        exp = a.T @ b                                   # [R, C]
        assert (res == exp).all(), f"seed={seed} job {tag} k={k}:\n{res}\n!=\n{exp}"
