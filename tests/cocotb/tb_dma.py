"""cocotb testbenches: the load and store DMA executors alone, random back-pressure on the
bus (and, for loads, on the activation write port)."""

import json
import os
import random

import cocotb
import numpy as np

from cocotb.triggers import ReadOnly, RisingEdge

from hw.config import load_config
from hw.isa import Buffer, ErrorCode, Opcode, encode
from sim.cocotb_bus import BusMemory
from sim.cocotb_common import clock_and_reset

P = json.loads(os.environ["LLMACCEL_TB_PARAMS"])
CFG = load_config(P["config"])
EB = {Buffer.ACT: CFG.act_entry_bytes, Buffer.WGT: CFG.wgt_entry_bytes,
      Buffer.ACC: CFG.acc_entry_bytes, Buffer.SCALE: CFG.scale_entry_bytes}


async def reset(dut):
    await clock_and_reset(dut, settle=False, insn__valid=0, avail=0b111, halt=0)


async def issue(dut, word):
    """Offer one instruction; return (cycles until give, give mask, error code)."""
    dut.insn__payload.value = word
    dut.insn__valid.value = 1
    while True:
        await ReadOnly()
        taken = bool(dut.insn__ready.value)
        await RisingEdge(dut.clk)
        if taken:
            break
    dut.insn__valid.value = 0
    for cycle in range(100_000):
        await ReadOnly()
        if int(dut.error.value):
            return cycle, 0, ErrorCode(int(dut.error.value))
        if int(dut.give.value):
            give = int(dut.give.value)
            await RisingEdge(dut.clk)
            return cycle, give, None
        await RisingEdge(dut.clk)
    raise AssertionError("instruction never completed")


@cocotb.test()
async def loads(dut):
    seed = P["seed"]
    rnd = random.Random(seed)
    mem = bytearray(np.random.default_rng(seed).integers(0, 256, 1 << 14, dtype=np.uint8).tobytes())
    await reset(dut)
    cocotb.start_soon(BusMemory(dut, "bus", mem, CFG.bus_bytes, seed, stall=0.35).run())
    writes = []

    async def act_port_hog():
        while True:
            dut.act_busy.value = int(rnd.random() < 0.3)
            await ReadOnly()
            if int(dut.wr_en.value):
                writes.append((int(dut.wr_buf.value), int(dut.wr_addr.value), int(dut.wr_data.value)))
            await RisingEdge(dut.clk)

    cocotb.start_soon(act_port_hog())
    for n in range(P["n"]):
        buf = rnd.choice([Buffer.ACT, Buffer.WGT, Buffer.SCALE])
        rows = rnd.randint(1, 9)
        stride = CFG.bus_bytes * rnd.randint(EB[buf] // CFG.bus_bytes, 6)
        addr = CFG.bus_bytes * rnd.randint(0, 200)
        sp = rnd.randint(0, 20)
        rel = rnd.choice([0b010, 0b100, 0b110])
        writes.clear()
        _, give, err = await issue(dut, encode(Opcode.LOAD, buf=buf, sp_addr=sp, rows=rows,
                                               dram_addr=addr, stride=stride, release=rel))
        assert err is None and give == rel, f"seed={seed} load {n}: give {give} err {err}"
        assert len(writes) == rows, f"seed={seed} load {n}: {len(writes)} writes of {rows}"
        for r, (b, a, d) in enumerate(writes):
            exp = int.from_bytes(mem[addr + r * stride: addr + r * stride + EB[buf]], "little")
            assert (b, a) == (buf.value, sp + r), f"seed={seed} load {n} row {r}"
            assert d & ((1 << (8 * EB[buf])) - 1) == exp, f"seed={seed} load {n} row {r} data"
    # a misaligned load is refused with the right code
    _, _, err = await issue(dut, encode(Opcode.LOAD, buf=Buffer.ACT, rows=1, dram_addr=1))
    assert err == ErrorCode.MISALIGNED, f"seed={seed}: {err}"


@cocotb.test()
async def stores(dut):
    seed = P["seed"]
    rnd = random.Random(seed)
    rng = np.random.default_rng(seed)
    mem = bytearray(1 << 14)
    sp = {Buffer.ACT: rng.integers(0, 256, (64, EB[Buffer.ACT]), dtype=np.uint8),
          Buffer.ACC: rng.integers(0, 256, (64, EB[Buffer.ACC]), dtype=np.uint8)}
    await reset(dut)
    cocotb.start_soon(BusMemory(dut, "bus", mem, CFG.bus_bytes, seed, stall=0.35).run())

    async def scratchpad():
        # A shared read port (config.scratchpad_ports = "shared"): a read is granted (rd_ok)
        # at random, and its data is valid only the cycle after (two cycles after above the
        # low-clock threshold: the accelerator registers the RAMs' outputs for the store);
        # the other cycles the port serves other readers, so its output is garbage.
        prt = random.Random(seed + 1)
        late = [None] if CFG.pipelining.store_read_registered else []      # the reads of the cycles before
        while True:
            ok = int(prt.random() < 0.6)
            dut.rd_ok.value = ok
            await ReadOnly()
            en, buf, addr = int(dut.rd_en.value), int(dut.rd_buf.value), int(dut.rd_addr.value)
            late.append((Buffer(buf), addr % 64) if en and ok else None)
            await RisingEdge(dut.clk)
            read = late.pop(0)
            if read is not None:
                dut.rd_data.value = int.from_bytes(sp[read[0]][read[1]].tobytes(), "little")
            else:
                dut.rd_data.value = prt.getrandbits(8 * EB[Buffer.ACC])

    cocotb.start_soon(scratchpad())
    for n in range(P["n"]):
        buf = rnd.choice([Buffer.ACT, Buffer.ACC])
        rows = rnd.randint(1, 9)
        stride = CFG.bus_bytes * rnd.randint(EB[buf] // CFG.bus_bytes, 20)
        addr = CFG.bus_bytes * rnd.randint(0, 300)
        s0 = rnd.randint(0, 40)
        _, give, err = await issue(dut, encode(Opcode.STORE, buf=buf, sp_addr=s0, rows=rows,
                                               dram_addr=addr, stride=stride, release=0b001))
        assert err is None and give == 0b001, f"seed={seed} store {n}"
        for r in range(rows):
            got = bytes(mem[addr + r * stride: addr + r * stride + EB[buf]])
            assert got == sp[buf][(s0 + r) % 64].tobytes(), f"seed={seed} store {n} row {r}"
