"""cocotb testbench: the whole accelerator (fetch, decode, dispatch, DMA, array, requant,
SFU) running seeded random programs -- MATMUL/REQUANT jobs, and special-function ops at a
random position, softmax rows whole and in chunks -- against a memory with random
back-pressure; the final memory must equal the golden model's bit for bit."""

import json
import os

import cocotb
from cocotb.triggers import ReadOnly, RisingEdge

from compiler.randprog import random_program
from compiler.sfuprog import random_sfu_program
from hw.config import load_config
from sw.executor import place_program
from sw.golden import Machine
from sim.cocotb_bus import BusMemory
from sim.cocotb_common import clock_and_reset

P = json.loads(os.environ["LLMACCEL_TB_PARAMS"])


@cocotb.test()
async def random_program_with_backpressure(dut):
    cfg = load_config(P["config"])
    progs = [(seed, random_program(cfg, seed, max_jobs=3)) for seed in P["seeds"]]
    progs += [(seed, random_sfu_program(cfg, seed)) for seed in P.get("sfu_seeds", [])]
    for seed, rp in progs:
        dram, prog_addr = place_program(cfg, rp.program, rp.memory)
        mem = bytearray(dram.tobytes())
        model = BusMemory(dut, "bus", mem, cfg.bus_bytes, seed, stall=P["stall"])
        clock = await clock_and_reset(dut, start=0)
        served = cocotb.start_soon(model.run())
        dut.prog_addr.value = prog_addr
        dut.pos.value = rp.pos
        dut.start.value = 1
        await RisingEdge(dut.clk)
        dut.start.value = 0
        for cycle in range(200_000):
            await ReadOnly()
            if dut.done.value:
                break
            await RisingEdge(dut.clk)
        assert dut.done.value, f"seed={seed}: not done after {cycle} cycles"
        assert not dut.error.value, f"seed={seed}: error {int(dut.error_code.value)}"
        gold, _ = Machine(cfg).run(rp.program, rp.memory, pos=rp.pos)
        got = bytes(mem[:rp.memory.size])
        assert got == bytes(gold.data), f"seed={seed}: memory differs from golden ({rp.description})"
        await RisingEdge(dut.clk)       # leave the read-only phase before driving again
        served.cancel()
        clock.cancel()
