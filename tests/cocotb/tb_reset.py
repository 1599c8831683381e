"""cocotb testbench: after reset, no register of the design and no output is X (on a
4-state simulator such as Icarus; on Verilator it is trivially true). The memories' read
data may be X until written, so they are not checked; the whole-accelerator testbench
(tb_top) shows that they steer nothing."""

import json
import os

import cocotb
from cocotb.triggers import ReadOnly

from sim.cocotb_common import clock_and_reset

P = json.loads(os.environ["LLMACCEL_TB_PARAMS"])


def handle(dut, path):
    h = dut
    for part in path:
        h = h._id(part, extended=False)
    return h


@cocotb.test()
async def no_x_after_reset(dut):
    await clock_and_reset(dut, start=0, bus__req__ready=0, bus__resp__valid=0,
                          bus__resp__payload=0, prog_addr=0, pos=0, csr_addr=0)
    await ReadOnly()
    unknown = []
    for path in P["flops"] + [[o] for o in P["outputs"]]:
        try:
            v = str(handle(dut, path).value)
        except AttributeError:
            continue                # optimised away by the simulator
        if any(c in v.lower() for c in "xz"):
            unknown.append(".".join(path))
    assert P["flops"], "no registers to check"
    assert not unknown, f"{len(unknown)} X after reset: {', '.join(unknown[:20])}"
