"""Accumulating MATMULs whose output ranges overlap by one entry, back to back, on both
engines (random programs only accumulate onto the same range): each one's first column
accumulates onto the entry the one before wrote last, while the accumulator writer (which
reads an entry two stages before it writes it) may still hold that write. RTL = golden
model, and for the int8 array the exact integer product."""

import numpy as np
import pytest

from compiler.asm import Assembler, mask
from hw.isa import Buffer, Engine, Queue
from sw.golden import Machine
from sw.program import MemoryImage

SEED = 77


def _chain(cfg, engine, wbits=0):
    rng = np.random.default_rng(SEED)
    R = cfg.rows
    lut = engine == Engine.LUT
    ch = 2 * cfg.cols if lut else cfg.cols
    kmax = 4 * (ch + 4) if lut else 2 * ch + 6
    mem = MemoryImage(bytearray())
    act = rng.integers(-128, 128, (kmax, R), dtype=np.int8)
    a_addr = mem.write("act", act, row_stride=R)
    if lut:     # bit planes: kmax / 4 groups x wbits planes, one byte per channel pair
        wgt = rng.integers(0, 256, (kmax // 4 * wbits, cfg.cols), dtype=np.uint8).view(np.int8)
    else:
        wgt = rng.integers(-128, 128, (kmax, cfg.cols), dtype=np.int8)
    w_addr = mem.write("wgt", wgt, row_stride=cfg.cols)
    n_acc = cfg.acc_depth
    out = mem.reserve("acc", (n_acc, R), np.int32, row_stride=4 * R)

    asm = Assembler(cfg)
    asm.load(Buffer.ACT, 0, a_addr, kmax, R)
    asm.load(Buffer.WGT, 0, w_addr, len(wgt), cfg.cols, release=mask(Queue.COMPUTE))
    kw = dict(engine=engine, mode=dict(wbits=wbits) if lut else 0)
    # every entry written once, then the overlapping chain accumulates over them
    for base in range(0, n_acc - ch + 1, ch):
        asm.matmul(0, 0, base, 4 if lut else 1, wait=mask(Queue.LOAD) if base == 0 else 0,
                   **kw)
    step = ch - 1
    ks = list(range(4, kmax + 1, 4)) if lut else list(range(1, kmax + 1))
    for i, base in enumerate(range(0, n_acc - ch + 1, step)):
        asm.matmul(0, 0, base, ks[i % len(ks)], accumulate=True, **kw)
    asm.sync(Queue.COMPUTE, release=mask(Queue.STORE))
    asm.store(Buffer.ACC, 0, out, n_acc, 4 * R, wait=mask(Queue.COMPUTE))
    return asm.program(), mem, act, wgt, ks, step


@pytest.mark.parametrize("engine,wbits", [(Engine.SYSTOLIC, 0), (Engine.LUT, 2)])
def test_overlapping_accumulations_back_to_back(tiny, tiny_rtl, engine, wbits):
    prog, mem, act, wgt, ks, step = _chain(tiny, engine, wbits)
    gm, gs = Machine(tiny).run(prog, mem)
    vm, vs = tiny_rtl.run(prog, mem)
    ctx = f"seed={SEED} engine={engine.name}"
    assert gs["error"] is None and vs["error"] is None, f"{ctx}: {gs['error']} / {vs['error']}"
    np.testing.assert_array_equal(vm.read("acc"), gm.read("acc"), err_msg=f"RTL vs golden, {ctx}")
    if engine == Engine.SYSTOLIC:      # the exact integer oracle
        C, n = tiny.cols, tiny.acc_depth
        exp = np.zeros((n, tiny.rows), np.int64)
        for base in range(0, n - C + 1, C):
            exp[base:base + C] = wgt[:1].T.astype(np.int64) @ act[:1].astype(np.int64)
        for i, base in enumerate(range(0, n - C + 1, step)):
            k = ks[i % len(ks)]
            exp[base:base + C] += wgt[:k].T.astype(np.int64) @ act[:k].astype(np.int64)
        np.testing.assert_array_equal(vm.read("acc"), exp.astype(np.int32),
                                      err_msg=f"RTL vs oracle, {ctx}")
