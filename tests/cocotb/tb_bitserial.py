"""cocotb testbench: the bit-serial array alone, random MATMULs of every data type (FPX
with its selector entry), random stalls on its input, back-pressure from its own two-cycle
steps; every drained tile must be the exact product."""

import json
import os
import random

import cocotb
import numpy as np
from cocotb.triggers import RisingEdge

from compiler.engines import bitserial as plug
from hw.bitserial import step_layout
from hw.config import AccelConfig
from hw.isa import BitSerialType
from hw.systolic import column_layout
from sim.cocotb_common import clock_and_reset, collect_tiles, drive

P = json.loads(os.environ["LLMACCEL_TB_PARAMS"])
R, N, TAG, G = P["rows"], P["ch"], P["tag_bits"], P["group"]
CFG = AccelConfig(rows=4, cols=4, bus_bytes=4, mem_bytes_per_cycle=4, engines=("bitserial",),
                  bitserial_group=G)


def job_steps(rng, rnd, tag):
    """One MATMUL: a random data type, weights, activations -> steps, expected [R, N]."""
    dt = rnd.choice(list(BitSerialType))
    mode = {"dtype": dt.value}
    k = 4 * (rnd.randint(1, G // 4) if dt == BitSerialType.FPX else rnd.choice(
        [1, 2, rnd.randint(1, 20)]))
    w = plug.random_weights(rng, (k, N), mode, group=G)
    a = rng.integers(-128, 128, (k, R))
    if rnd.random() < 0.2:          # full scale
        a[:] = -128
    entries = plug.pack(w, mode, CFG, ch=N).view(np.uint8)[:, :2 * N]
    nib = np.stack([entries & 15, entries >> 4], -1).reshape(len(entries), 4, N)
    head = int(dt == BitSerialType.FPX)
    steps = []
    n = len(entries)
    for s in range(n):
        g = (s - head) // (2 if dt == BitSerialType.INT8 else 1)
        acts = a[4 * g:4 * g + 4] if s >= head else np.zeros((4, R), np.int64)
        steps.append({"act": acts.tolist(), "codes": nib[s].tolist(),
                      "plane": (s - head) % 2 if dt == BitSerialType.INT8 else 0,
                      "first": s == 0, "last": s == n - 1, "dtype": dt, "steps": n, "tag": tag})
    return steps, (w.T @ a).T


@cocotb.test()
async def bitserial_array(dut):
    seed = P["seed"]
    rnd, rng = random.Random(seed), np.random.default_rng(seed)
    await clock_and_reset(dut, i__valid=0)
    jobs = [job_steps(rng, rnd, t) for t in range(P["jobs"])]
    got = []
    cocotb.start_soon(collect_tiles(dut, column_layout(R, TAG), got))
    layout = step_layout(R, N, TAG, 1)
    for steps, _ in jobs:
        await drive(dut, steps, layout, P["stall"], rnd)
    for _ in range(4 * N + 20):
        await RisingEdge(dut.clk)
    assert len(got) == len(jobs), f"seed={seed}: {len(got)} of {len(jobs)} drained"
    for t, ((steps, exp), (gtag, res)) in enumerate(zip(jobs, got)):
        assert gtag == t, f"seed={seed}: drained out of order"
        assert (res == exp).all(), (f"seed={seed} job {t} ({steps[0]['dtype'].name}, "
                                    f"{len(steps)} steps):\n{res}\n!=\n{exp}")
