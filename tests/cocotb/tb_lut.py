"""cocotb testbenches: the LUT engine's table-precompute unit and LUT array alone, with
random stalls on their inputs and random back-pressure on the precompute output."""

import json
import os
import random

import cocotb
import numpy as np
from cocotb.triggers import ReadOnly, RisingEdge

from compiler.lutpack import pack_planes, random_weights
from hw.lut import lut_step_layout, precompute_in_layout
from hw.systolic import column_layout
from sim.cocotb_common import clock_and_reset, collect_tiles, drive
from sw.engines.lut import lut_tables

P = json.loads(os.environ["LLMACCEL_TB_PARAMS"])
R, N, TAG = P["rows"], P["ch"], P["tag_bits"]


def unpack(layout, word):
    return layout.from_bits(int(word))


async def reset(dut):
    await clock_and_reset(dut, i__valid=0)


def job_steps(rng, rnd, tag):
    """One MATMUL for the LUT array: random width/grid, weights, activations -> steps."""
    wbits = rnd.choice([1, 2, 3, 4])
    odd = rnd.random() < 0.5
    groups = rnd.choice([1, 2, rnd.randint(1, 30)])
    w = random_weights(rng, (4 * groups, N), wbits, odd)
    a = rng.integers(-128, 128, (4 * groups, R))
    planes = pack_planes(w, wbits, odd)                       # [groups * wbits, N / 2]
    tables = lut_tables(a.reshape(groups, 4, R).transpose(0, 2, 1))   # [g, R, 8]
    steps = []
    n = groups * wbits
    for s in range(n):
        g, p = divmod(s, wbits)
        nib = [(int(planes[s, j // 2]) >> (4 * (j % 2))) & 15 for j in range(N)]
        steps.append({"act": a[4 * g:4 * g + 4].tolist(), "table": tables[g].tolist(),
                      "nib": nib, "plane": p, "newgroup": p == 0, "first": s == 0,
                      "last": s == n - 1, "odd": odd, "steps": n, "tag": tag})
    return steps, (w.T @ a).T                                 # expected [R, N]


@cocotb.test()
async def precompute(dut):
    """Every accepted step comes out once, in order, with the table of its group."""
    seed = P["seed"]
    rnd, rng = random.Random(seed), np.random.default_rng(seed)
    await reset(dut)
    items = []
    for t in range(P["steps"]):
        items.append({"act": rng.integers(-128, 128, (4, R)).tolist(),
                      "nib": rng.integers(0, 16, N).tolist(), "plane": rnd.randint(0, 3),
                      "newgroup": t == 0 or rnd.random() < 0.4, "first": rnd.random() < 0.5,
                      "last": rnd.random() < 0.5, "odd": rnd.random() < 0.5,
                      "steps": rnd.randint(1, 1000), "tag": rnd.getrandbits(TAG)})
    got = []

    async def sink():
        out = lut_step_layout(R, N, TAG)
        while True:
            dut.o__ready.value = int(rnd.random() >= P["backpressure"])
            await ReadOnly()
            if dut.o__valid.value and dut.o__ready.value:
                got.append(unpack(out, dut.o__payload.value))
            await RisingEdge(dut.clk)

    cocotb.start_soon(sink())
    await drive(dut, items, precompute_in_layout(R, N, TAG), P["stall"], rnd)
    for _ in range(50):
        await RisingEdge(dut.clk)
    assert len(got) == len(items), f"seed={seed}: {len(got)} of {len(items)} steps came out"
    table = None
    for i, (it, o) in enumerate(zip(items, got)):
        if it["newgroup"]:
            table = lut_tables(np.array(it["act"]).T)       # [R, 8]
        for name in ("plane", "newgroup", "first", "last", "odd", "steps", "tag"):
            assert int(o[name]) == int(it[name]), f"seed={seed} step {i}: {name}"
        assert [int(x) for x in o["nib"]] == it["nib"], f"seed={seed} step {i}: nib"
        t = np.array([[int(o["table"][r][u]) for u in range(8)] for r in range(R)])
        assert (t == table).all(), f"seed={seed} step {i}: table\n{t}\n!=\n{table}"


@cocotb.test()
async def lut_array(dut):
    """Random MATMULs (all widths, both grids) with stalls: each drains the exact product."""
    seed = P["seed"]
    rnd, rng = random.Random(seed), np.random.default_rng(seed)
    await reset(dut)
    jobs = [job_steps(rng, rnd, t) for t in range(P["jobs"])]
    got = []
    col_l = column_layout(R, TAG)

    cocotb.start_soon(collect_tiles(dut, col_l, got))
    layout = lut_step_layout(R, N, TAG)
    for steps, _ in jobs:
        await drive(dut, [{k: v for k, v in s.items() if k != "act"} for s in steps], layout,
                    P["stall"], rnd)
    for _ in range(4 * N + 20):
        await RisingEdge(dut.clk)
    assert len(got) == len(jobs), f"seed={seed}: {len(got)} of {len(jobs)} drained"
    for t, ((steps, exp), (gtag, res)) in enumerate(zip(jobs, got)):
        assert gtag == t, f"seed={seed}: drained out of order"
        assert (res == exp).all(), f"seed={seed} job {t} ({len(steps)} steps):\n{res}\n!=\n{exp}"
