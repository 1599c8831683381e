"""Illegal instructions and bad addresses raise the error flag (never a hang), with the same
error code in the RTL and the golden model."""

import numpy as np
import pytest

from compiler.asm import Assembler, mask
from hw.config import load_config
from hw import isa
from hw.isa import Buffer, Engine, ErrorCode, Opcode, Queue as Q, SfuFunc
from sw.golden import Machine
from sw.program import MemoryImage, Program


def raw(op, **fields):
    """Encode without enum validation (for illegal field values)."""
    word = op
    for name, offset, width, _ in isa._FIELDS[isa.Opcode(op)]:
        if name in fields:
            word |= (fields[name] & ((1 << width) - 1)) << offset
    return word


def prog(cfg, *words):
    return Program(list(words) + [isa.encode(Opcode.END)], cfg.hash)


def CASES(cfg):
    R, C = cfg.rows, cfg.cols
    E = isa.encode
    LUT = Engine.LUT
    return {
        "illegal opcode": (ErrorCode.ILLEGAL_OPCODE, prog(cfg, 7)),
        "own queue in wait": (ErrorCode.ILLEGAL_FIELD,
                              prog(cfg, E(Opcode.MATMUL, k=1, wait=mask(Q.COMPUTE)))),
        "own queue in release": (ErrorCode.ILLEGAL_FIELD,
                                 prog(cfg, E(Opcode.LOAD, buf=Buffer.ACT, rows=1,
                                             release=mask(Q.LOAD)))),
        "k = 0": (ErrorCode.ILLEGAL_FIELD, prog(cfg, E(Opcode.MATMUL, k=0))),
        "unknown engine": (ErrorCode.ILLEGAL_FIELD, prog(cfg, raw(Opcode.MATMUL.value, engine=5, k=1))),
        "load into acc": (ErrorCode.ILLEGAL_FIELD, prog(cfg, E(Opcode.LOAD, buf=Buffer.ACC, rows=1))),
        "store from wgt": (ErrorCode.ILLEGAL_FIELD, prog(cfg, E(Opcode.STORE, buf=Buffer.WGT, rows=1))),
        "rows = 0": (ErrorCode.ILLEGAL_FIELD, prog(cfg, E(Opcode.LOAD, buf=Buffer.ACT, rows=0))),
        "sync queue 3": (ErrorCode.ILLEGAL_FIELD, prog(cfg, raw(Opcode.SYNC.value, queue=3))),
        "requant count 0": (ErrorCode.ILLEGAL_FIELD, prog(cfg, E(Opcode.REQUANT, count=0))),
        "load past scratchpad": (ErrorCode.SP_RANGE,
                                 prog(cfg, E(Opcode.LOAD, buf=Buffer.WGT, sp_addr=cfg.wgt_depth - 2,
                                             rows=3, stride=cfg.bus_bytes))),
        "matmul acc past end": (ErrorCode.SP_RANGE,
                                prog(cfg, E(Opcode.MATMUL, k=1, acc_addr=cfg.acc_depth - C + 1))),
        "requant scale past end": (ErrorCode.SP_RANGE,
                                   prog(cfg, E(Opcode.REQUANT, count=2,
                                               scale_addr=cfg.scale_depth * cfg.scale_lanes - 1))),
        "load past memory": (ErrorCode.DRAM_RANGE,
                             prog(cfg, E(Opcode.LOAD, buf=Buffer.ACT, rows=2,
                                         dram_addr=cfg.dram_bytes - R, stride=R))),
        "store past memory": (ErrorCode.DRAM_RANGE,
                              prog(cfg, E(Opcode.STORE, buf=Buffer.ACC, rows=1,
                                          dram_addr=cfg.dram_bytes - 4 * R + cfg.bus_bytes))),
        "misaligned address": (ErrorCode.MISALIGNED,
                               prog(cfg, E(Opcode.LOAD, buf=Buffer.ACT, rows=1, dram_addr=2))),
        "misaligned stride": (ErrorCode.MISALIGNED,
                              prog(cfg, E(Opcode.LOAD, buf=Buffer.ACT, rows=2, stride=3))),
        # a field's high bit alone puts a range out (the checks add the fields' low bits
        # and test the high ones apart)
        "load rows high bit": (ErrorCode.SP_RANGE,
                               prog(cfg, E(Opcode.LOAD, buf=Buffer.ACT, rows=0x8001, stride=R))),
        "load sp_addr high bit": (ErrorCode.SP_RANGE,
                                  prog(cfg, E(Opcode.LOAD, buf=Buffer.SCALE, sp_addr=0x8000,
                                              rows=1))),
        "store dram_addr high bit": (ErrorCode.DRAM_RANGE,
                                     prog(cfg, E(Opcode.STORE, buf=Buffer.ACT, rows=1,
                                                 dram_addr=1 << 31))),
        "load stride high bit": (ErrorCode.DRAM_RANGE,
                                 prog(cfg, E(Opcode.LOAD, buf=Buffer.ACT, rows=2,
                                             stride=1 << 30))),
        "matmul k high bit": (ErrorCode.SP_RANGE, prog(cfg, E(Opcode.MATMUL, k=0x8001))),
        "matmul acc_addr high bit": (ErrorCode.SP_RANGE,
                                     prog(cfg, E(Opcode.MATMUL, k=1, acc_addr=0x8000))),
        "requant count high bit": (ErrorCode.SP_RANGE,
                                   prog(cfg, E(Opcode.REQUANT, count=0x8001))),
        "requant out_addr high bit": (ErrorCode.SP_RANGE,
                                      prog(cfg, E(Opcode.REQUANT, count=1, out_addr=0x8000))),
        "residual overlap": (ErrorCode.OVERLAP,
                             prog(cfg, E(Opcode.REQUANT, count=4, out_addr=10, res_addr=12,
                                         residual=1))),
        # the LUT engine
        "lut k not a multiple of 4": (ErrorCode.ILLEGAL_FIELD,
                                      prog(cfg, E(Opcode.MATMUL, engine=LUT, mode=dict(wbits=2), k=6))),
        "lut wbits 0": (ErrorCode.ILLEGAL_FIELD, prog(cfg, E(Opcode.MATMUL, engine=LUT, k=4))),
        "lut wbits 5": (ErrorCode.ILLEGAL_FIELD,
                        prog(cfg, E(Opcode.MATMUL, engine=LUT, mode=dict(wbits=5), k=4))),
        "systolic with a mode": (ErrorCode.ILLEGAL_FIELD, prog(cfg, E(Opcode.MATMUL, mode=0b0010, k=4))),
        "systolic with odd grid": (ErrorCode.ILLEGAL_FIELD, prog(cfg, E(Opcode.MATMUL, mode=0b1000, k=4))),
        "lut mode bit beyond its fields": (ErrorCode.ILLEGAL_FIELD,
                                           prog(cfg, E(Opcode.MATMUL, engine=LUT, k=4,
                                                       mode=0x12))),
        "lut weights past end": (ErrorCode.SP_RANGE,
                                 prog(cfg, E(Opcode.MATMUL, engine=LUT, mode=dict(wbits=2), k=8,
                                             wgt_addr=cfg.wgt_depth - 3))),
        "lut acc past end": (ErrorCode.SP_RANGE,
                             prog(cfg, E(Opcode.MATMUL, engine=LUT, mode=dict(wbits=1), k=4,
                                         acc_addr=cfg.acc_depth - 2 * C + 1))),
        "group scales past end": (ErrorCode.SP_RANGE,
                                  prog(cfg, E(Opcode.MATMUL, k=4, scaled=1,
                                              scale_addr=cfg.scale_depth * cfg.scale_lanes - C + 1))),
        "lut activations misaligned": (ErrorCode.MISALIGNED,
                                       prog(cfg, E(Opcode.MATMUL, engine=LUT, mode=dict(wbits=2), k=4,
                                                   act_addr=2))),
        # the special-function unit
        "sfu function 0": (ErrorCode.ILLEGAL_FIELD, prog(cfg, raw(Opcode.SFU.value, count=1))),
        "sfu function 15": (ErrorCode.ILLEGAL_FIELD,
                            prog(cfg, raw(Opcode.SFU.value, func=15, count=1))),
        "sfu count 0": (ErrorCode.ILLEGAL_FIELD, prog(cfg, E(Opcode.SFU, func=SfuFunc.ADD))),
        "rope odd count": (ErrorCode.ILLEGAL_FIELD,
                           prog(cfg, E(Opcode.SFU, func=SfuFunc.ROPE, count=3, dst=100))),
        "transpose partial block": (ErrorCode.ILLEGAL_FIELD,
                                    prog(cfg, E(Opcode.SFU, func=SfuFunc.TRANSPOSE,
                                                count=R + 1))),
        "table of the wrong size": (ErrorCode.ILLEGAL_FIELD,
                                    prog(cfg, E(Opcode.SFU, func=SfuFunc.TABLE,
                                                count=256 // R - 1))),
        "softmax scores past end": (ErrorCode.SP_RANGE,
                                    prog(cfg, E(Opcode.SFU, func=SfuFunc.SOFTMAX, count=4,
                                                src=cfg.acc_depth - 3))),
        "sfu output past end": (ErrorCode.SP_RANGE,
                                prog(cfg, E(Opcode.SFU, func=SfuFunc.LOOKUP, count=2,
                                            dst=cfg.act_depth - 1))),
        "sfu output high bit": (ErrorCode.SP_RANGE,
                                prog(cfg, E(Opcode.SFU, func=SfuFunc.LOOKUP, count=2,
                                            dst=0x8000))),
        "norm gamma past end": (ErrorCode.SP_RANGE,
                                prog(cfg, E(Opcode.SFU, func=SfuFunc.RMSNORM, count=2,
                                            src2=cfg.scale_depth * cfg.scale_lanes - 1))),
        "mul second input past end": (ErrorCode.SP_RANGE,
                                      prog(cfg, E(Opcode.SFU, func=SfuFunc.MUL, count=2,
                                                  src2=cfg.act_depth - 1, dst=8))),
        "sfu output overlaps input": (ErrorCode.OVERLAP,
                                      prog(cfg, E(Opcode.SFU, func=SfuFunc.LOOKUP, count=4,
                                                  src=10, dst=12))),
        "sfu output overlaps second input": (ErrorCode.OVERLAP,
                                             prog(cfg, E(Opcode.SFU, func=SfuFunc.ADD,
                                                         count=4, src=0, src2=10, dst=8))),
        "deadlock": (ErrorCode.DEADLOCK,
                     prog(cfg, E(Opcode.LOAD, buf=Buffer.ACT, rows=1, stride=R),
                          E(Opcode.MATMUL, k=1, wait=mask(Q.STORE)))),
        "token overflow": (ErrorCode.TOKEN_OVERFLOW,       # 256 tokens nobody takes
                           prog(cfg, *[E(Opcode.SYNC, queue=Q.LOAD, release=mask(Q.COMPUTE))]
                                * 256)),
        "circular wait": (ErrorCode.DEADLOCK,
                          prog(cfg, E(Opcode.SYNC, queue=Q.LOAD, wait=mask(Q.STORE),
                                      release=mask(Q.STORE)),
                               E(Opcode.SYNC, queue=Q.STORE, wait=mask(Q.LOAD),
                                 release=mask(Q.LOAD)))),
    }


CASE_NAMES = list(CASES(load_config("tiny")))


@pytest.mark.parametrize("case", CASE_NAMES)
def test_error_codes_match(tiny, tiny_rtl, case):
    code, p = CASES(tiny)[case]
    mem = MemoryImage(bytearray(256))
    _, gs = Machine(tiny).run(p, mem)
    _, vs = tiny_rtl.run(p, mem, max_cycles=200_000)
    assert gs["error"] == code.name, f"{case}: golden says {gs['error']}"
    assert vs["error"] == code.name, f"{case}: RTL says {vs['error']}"


def test_fetch_past_end_of_memory(tiny, tiny_rtl):
    """A program with no END runs off the end of memory: FETCH_RANGE, not a hang."""
    sync = isa.encode(Opcode.SYNC, queue=Q.LOAD)
    n = 64
    p = Program([sync] * n, tiny.hash)
    # the program sits right after the data, so fill memory with SYNCs up to its end
    fill = tiny.dram_bytes - n * 16
    mem = MemoryImage(bytearray(np.frombuffer(sync.to_bytes(16, "little") * (fill // 16),
                                              np.uint8).tobytes()))
    _, gs = Machine(tiny).run(p, mem)
    _, vs = tiny_rtl.run(p, mem)
    assert gs["error"] == vs["error"] == "FETCH_RANGE"


def test_watchdog(tiny, tiny_rtl):
    a = Assembler(tiny)
    for _ in range(20):
        a.matmul(0, 0, 0, 200)
    _, st = tiny_rtl.run(a.program(), MemoryImage(bytearray(64)), max_cycles=100)
    assert st["error"] == "WATCHDOG"
    # and the runner is usable again afterwards
    _, st = tiny_rtl.run(a.program(), MemoryImage(bytearray(64)))
    assert st["error"] is None and st["macs"] == 20 * 200 * tiny.rows * tiny.cols


def _range_programs(cfg):
    """LOADs and STOREs at the edge of external memory: spans from 1 to 511 rows, strides
    up to 2**32 - bus_bytes (a span past 2**32 must not wrap round to a small one)."""
    R, bb, top = cfg.rows, cfg.bus_bytes, cfg.dram_bytes
    cases = []
    for rows in (1, 2, 3, 5, 255, 256, 511):
        stride = bb * max(1, (top // 2) // (bb * rows))
        end = (rows - 1) * stride + R                       # bytes the transfer spans
        for buf, op in ((Buffer.ACT, Opcode.LOAD), (Buffer.ACT, Opcode.STORE)):
            for addr in (top - end, top - end + bb):         # fits exactly / one beat past
                if addr >= 0:
                    cases.append((f"{op.name} rows={rows} stride={stride} addr={addr}",
                                  prog(cfg, isa.encode(op, buf=buf, rows=rows, stride=stride,
                                                       dram_addr=addr))))
        # a huge stride, and one whose span is exactly 2**32 (0 if it wrapped at 32 bits)
        for big in {(1 << 32) - bb, (1 << 32) // max(1, rows - 1) // bb * bb} - {1 << 32}:
            cases.append((f"LOAD rows={rows} stride={big}",
                          prog(cfg, isa.encode(Opcode.LOAD, buf=Buffer.ACT, rows=rows,
                                               stride=big))))
    return cases


@pytest.mark.slow
def test_serial_dma_range_check_agrees(tiny):
    """dma_range_check = "serial" (shift and add, no multiplier) gives the golden model's
    verdict on every transfer at the edge of memory, and the same results as "parallel"."""
    from sim.fast import FastRunner
    serial = tiny.replace(dma_range_check="serial")
    rtl = FastRunner(serial, quiet=True)
    mem = MemoryImage(bytearray(256))
    seen = set()
    for case, p in _range_programs(serial):
        _, gs = Machine(serial).run(p, mem)
        _, vs = rtl.run(p, mem, max_cycles=200_000)
        assert vs["error"] == gs["error"], f"{case}: golden {gs['error']}, RTL {vs['error']}"
        seen.add(gs["error"])
    assert seen == {None, "DRAM_RANGE"}
    for case in ("load past memory", "store past memory", "load past scratchpad",
                 "misaligned stride", "rows = 0", "own queue in release"):
        code, p = CASES(serial)[case]
        _, vs = rtl.run(p, mem, max_cycles=200_000)
        assert vs["error"] == code.name, f"{case}: RTL says {vs['error']}"


_DIRECT = {}


@pytest.mark.slow
@pytest.mark.parametrize("case", CASE_NAMES + ["capacity"])
def test_error_codes_without_queues(tiny, case):
    """queue_depth = 0 (instructions go straight into the executing slots): the same error
    codes as the golden model, whose queues then hold one instruction each; "capacity" is a
    program that needs a second place in the compute queue (a deadlock here, fine with one
    waiting entry). At a 24 MHz target (no check_lookahead: the compute unit's checks are not
    looked ahead)."""
    from sim.fast import FastRunner
    cfg = tiny.replace(queue_depth=0, clock_mhz=24)
    if cfg not in _DIRECT:
        _DIRECT[cfg] = FastRunner(cfg, quiet=True)
    mem = MemoryImage(bytearray(256))
    if case == "capacity":
        E = isa.encode
        words = [E(Opcode.SYNC, queue=Q.COMPUTE, wait=mask(Q.STORE)), E(Opcode.SYNC, queue=Q.COMPUTE),
                 E(Opcode.SYNC, queue=Q.STORE, release=mask(Q.COMPUTE)), E(Opcode.END)]
        for c, code in ((cfg, "DEADLOCK"), (tiny.replace(queue_depth=1), None)):
            p = Program(words, c.hash)
            _, gs = Machine(c).run(p, mem)
            assert gs["error"] == code, f"queue_depth={c.queue_depth}: golden says {gs['error']}"
        _, vs = _DIRECT[cfg].run(Program(words, cfg.hash), mem, max_cycles=200_000)
        assert vs["error"] == "DEADLOCK", f"RTL says {vs['error']}"
        return
    code, p = CASES(cfg)[case]
    _, gs = Machine(cfg).run(p, mem)
    _, vs = _DIRECT[cfg].run(p, mem, max_cycles=200_000)
    assert gs["error"] == code.name, f"{case}: golden says {gs['error']}"
    assert vs["error"] == code.name, f"{case}: RTL says {vs['error']}"
