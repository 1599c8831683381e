"""Seeded random programs of special-function ops, for RTL-vs-golden verification.

Each program runs a few SFU ops on fresh inputs loaded from memory (softmax scores made by a
systolic MATMUL), at random counts and addresses, some in place, on inputs drawn to hit the
extremes: saturated values, all-equal and one-hot rows, zeros, causal rows of length 1; a
softmax row runs whole or in chunks (SOFTMAX_MAX, _SUM, _OUT per chunk).
``expected`` holds each output computed by sw/sfu.py's functions from the host-side
inputs.

Each program runs at a random position: some LOADs and STOREs and some SOFTMAX and MERGE
immediates are position-relative (hw.position), and ``expected`` applies the position to
them with plain integer arithmetic.
"""

from __future__ import annotations

import numpy as np

from hw.isa import SOFTMAX_PASSES, Buffer, Engine, Opcode, SfuFunc
from hw.position import POS_BITS, block, lane
from sw import sfu
from sw.program import MemoryImage
from .randprog import RandomProgram
from .lower import _Emit

__all__ = ["random_sfu_program", "int8_inputs"]

ACT, ACC, SCALE = Buffer.ACT, Buffer.ACC, Buffer.SCALE


def _s16(v):
    return v - (1 << 16) if v >= 1 << 15 else v


def int8_inputs(rng, n, rows):
    """int8 [n, rows] drawn from one of several kinds, extremes included."""
    kind = rng.integers(6)
    if kind == 0:
        return rng.integers(-128, 128, (n, rows)).astype(np.int8)
    if kind == 1:       # saturated
        return rng.choice(np.array([-128, 127], np.int8), (n, rows))
    if kind == 2:       # all equal within a lane
        return np.repeat(rng.integers(-128, 128, (1, rows)), n, 0).astype(np.int8)
    if kind == 3:       # one-hot per lane
        x = np.zeros((n, rows), np.int8)
        x[rng.integers(n, size=rows), np.arange(rows)] = rng.choice([-128, 127, 50], rows)
        return x
    if kind == 4:       # zeros
        return np.zeros((n, rows), np.int8)
    return rng.integers(-12, 13, (n, rows)).astype(np.int8)     # small


def _scores(rng, n, k, rows, cols):
    """Activations [k, rows] and weights [k, n] (n a multiple of cols) whose product spans
    the int32 scores a softmax meets, flat rows and one-hot rows included."""
    x = int8_inputs(rng, k, rows)
    kind = rng.integers(4)
    if kind == 0:
        w = rng.integers(-128, 128, (k, n))
    elif kind == 1:     # every key the same
        w = np.repeat(rng.integers(-128, 128, (k, 1)), n, 1)
    elif kind == 2:     # one key far ahead
        w = rng.integers(-3, 4, (k, n))
        w[:, rng.integers(n)] = 127
    else:
        w = rng.integers(-4, 5, (k, n))
    return x, w.astype(np.int8)


class _Plan:
    """Bump allocation of scratchpad entries and memory symbols."""

    def __init__(self, cfg, rng):
        self.cfg, self.next = cfg, {ACT: 0, ACC: 0, SCALE: 0, Buffer.WGT: 0}
        self.mem = MemoryImage(bytearray())
        self.rng = rng
        # the position; the memory starts with room for the furthest relative move
        self.pos = int(rng.integers(0, 1 << POS_BITS)) if rng.integers(2) else \
            int(rng.integers(0, 4 * cfg.rows))
        self.max_mult = max(cfg.act_entry_bytes, cfg.scale_entry_bytes, cfg.wgt_entry_bytes)
        if block(self.pos, cfg.rows) * self.max_mult <= cfg.dram_bytes // 8:
            self.mem.reserve("room", (block(self.pos, cfg.rows) * self.max_mult,), np.uint8,
                             row_stride=0)

    def rel(self, addr, eb):
        """A DMA address and ``pos_mult`` that reach ``addr``: relative (moved back by the
        position's block of entries) on a coin flip, where the room allows."""
        move = block(self.pos, self.cfg.rows) * eb
        if "room" in self.mem.symbols and self.rng.integers(2):
            return addr - move, eb
        return addr, 0

    def take(self, buf, n):
        a = self.next[buf]
        self.next[buf] += n
        return a

    def fits(self):
        cfg = self.cfg
        return (self.next[ACT] <= cfg.act_depth and self.next[ACC] <= cfg.acc_depth
                and self.next[SCALE] <= cfg.scale_depth and self.next[Buffer.WGT] <= cfg.wgt_depth)


def _load(s, p, buf, name, array):
    """Put ``array`` in memory and LOAD it into ``buf`` at a fresh address; return that."""
    cfg = p.cfg
    eb = {ACT: cfg.act_entry_bytes, SCALE: cfg.scale_entry_bytes,
          Buffer.WGT: cfg.wgt_entry_bytes}[buf]
    raw = np.ascontiguousarray(array).view(np.uint8).reshape(-1, eb)
    addr = p.mem.write(name, raw)
    sp = p.take(buf, raw.shape[0])
    at, mult = p.rel(addr, eb)
    s.emit(Opcode.LOAD, buf=buf, sp_addr=sp, dram_addr=at, rows=raw.shape[0], stride=eb,
           pos_mult=mult, reads=[("dram", addr, addr + raw.nbytes)], writes=[(buf, sp, sp + raw.shape[0])])
    return sp


def _store(s, p, name, sp, n):
    cfg = p.cfg
    eb = cfg.act_entry_bytes
    addr = p.mem.reserve(name, (n, cfg.rows), np.int8, row_stride=eb)
    at, mult = p.rel(addr, eb)
    s.emit(Opcode.STORE, buf=ACT, sp_addr=sp, dram_addr=at, rows=n, stride=eb, pos_mult=mult,
           reads=[(ACT, sp, sp + n)], writes=[("dram", addr, addr + n * eb)])


def random_sfu_program(cfg, seed, *, ops=None, max_count=None) -> RandomProgram:
    """``ops``: the functions to draw from (default: all)."""
    rng = np.random.default_rng(seed)
    R, C = cfg.rows, cfg.cols
    # TABLE comes with LOOKUP, the softmax passes with SOFTMAX (a row in chunks)
    funcs = [f for f in (ops or list(SfuFunc)) if f not in (SfuFunc.TABLE, *SOFTMAX_PASSES)]
    max_count = max_count or 3 * R + 5
    e = _Emit(cfg)
    s = e.s
    p = _Plan(cfg, rng)
    expected, desc = {}, []
    table = np.zeros(sfu.TABLE_SIZE, np.int8)
    for j in range(int(rng.integers(1, 4))):
        f = SfuFunc(rng.choice([x.value for x in funcs]))
        n = int(rng.integers(1, max_count + 1))
        if f == SfuFunc.ROPE:
            n = 2 * max(1, n // 2)
        if f == SfuFunc.TRANSPOSE:
            n = R * int(rng.integers(1, 4))
        shift = int(rng.integers(0, 20))
        imm0 = imm1 = 0
        causal = 0
        src2 = 0
        a = int8_inputs(rng, n, R)
        b = int8_inputs(rng, n, R)
        inplace = bool(rng.integers(2))
        rel = int(f in (SfuFunc.SOFTMAX, SfuFunc.MERGE, SfuFunc.BROADCAST)
                  and rng.integers(2))
        if f == SfuFunc.SOFTMAX:
            k = int(rng.integers(1, 24))
            nk = (n + C - 1) // C * C
            x, w = _scores(rng, nk, k, R, C)
            xa = _load(s, p, ACT, f"x{j}", x)
            src = p.take(ACC, nk)
            for t in range(nk // C):      # a key tile: its C columns of weights, k entries
                wa = _load(s, p, Buffer.WGT, f"w{j}_{t}",
                           np.ascontiguousarray(w[:, t * C:(t + 1) * C]))
                s.emit(Opcode.MATMUL, engine=Engine.SYSTOLIC, act_addr=xa,
                       wgt_addr=wa, acc_addr=src + t * C, k=k, mode=0,
                       reads=[(ACT, xa, xa + k), (Buffer.WGT, wa, wa + k)],
                       writes=[(ACC, src + t * C, src + (t + 1) * C)])
            scores = (x.astype(np.int64).T @ w.astype(np.int64)).T[:n]     # [keys, lanes]
            imm0 = int(rng.integers(1, 1 << 16))
            shift = int(rng.integers(10, 34))
            causal = int(rng.integers(2))
            imm1 = int(rng.integers(0, n + 2)) if rng.integers(4) else (1 << 16) - R
            q0 = _s16((imm1 + p.pos) % (1 << 16) if rel else imm1)
            out = sfu.softmax(scores, imm0, shift, bool(causal), q0, bool(rel))
            dst = p.take(ACT, n)
            if n > 1 and rng.integers(2):   # the row in chunks, a pass per instruction
                cuts = [0] + sorted(rng.choice(np.arange(1, n), int(rng.integers(1, min(
                    n, 4))), replace=False).tolist()) + [n]
                chunks = list(zip(cuts[:-1], cuts[1:]))
                for pf in SOFTMAX_PASSES:
                    for lo, hi in chunks:
                        i0 = int(lo == 0) if pf == SfuFunc.SOFTMAX_MAX else imm0
                        e.sfu(pf, src + lo, dst + lo, hi - lo, shift=shift, imm0=i0,
                              imm1=(imm1 - lo) & 0xFFFF, causal=causal, rel=rel)
                f = "chunked softmax"
        else:
            src = _load(s, p, ACT, f"a{j}", a)
            dst = src if inplace else p.take(ACT, n)
            if f in (SfuFunc.RMSNORM, SfuFunc.LAYERNORM):
                lanes = cfg.scale_lanes
                g = rng.integers(-(1 << 15), 1 << 15, n).astype(np.int16)
                if rng.integers(2):
                    g = np.abs(g // 64).astype(np.int16)
                gp = np.zeros(-(-n // lanes) * lanes, np.int16)
                gp[:n] = g
                src2 = _load(s, p, SCALE, f"g{j}", gp.reshape(-1, lanes)) * lanes
                imm0 = int(rng.integers(0, 1 << 16)) if rng.integers(2) else 0
                shift = int(rng.integers(0, 16)) if rng.integers(4) else int(rng.integers(64))
                fn = sfu.rmsnorm if f == SfuFunc.RMSNORM else sfu.layernorm
                out = fn(a, g, imm0, shift)
            elif f == SfuFunc.LOOKUP:
                table = rng.integers(-128, 128, sfu.TABLE_SIZE).astype(np.int8)
                ta = _load(s, p, ACT, f"t{j}", table.reshape(-1, R))
                e.sfu(SfuFunc.TABLE, ta, 0, sfu.TABLE_SIZE // R)
                out = sfu.lookup(a, table)
            elif f == SfuFunc.TRANSPOSE:
                out = sfu.transpose(a)
            elif f == SfuFunc.BROADCAST:
                imm0 = int(rng.integers(0, 2 * R))
                out = sfu.broadcast(a, imm0 + (lane(p.pos, R) if rel else 0))
            else:
                if f == SfuFunc.ROPE:
                    h = n // 2
                    theta = rng.uniform(0, 2 * np.pi, (h, R))
                    b = np.clip(np.round(128 * np.concatenate([np.cos(theta),
                                                               np.sin(theta)])), -128, 127)
                    b = b.astype(np.int8)
                    shift = int(rng.integers(5, 9))
                src2 = _load(s, p, ACT, f"b{j}", b)
                if f == SfuFunc.MUL:
                    shift = int(rng.integers(12, 30))
                    imm0 = int(rng.integers(-(1 << 15), 1 << 15))
                    out = sfu.mul(a, b, imm0, shift)
                elif f == SfuFunc.ADD:
                    shift = int(rng.integers(6, 24))
                    imm0 = int(rng.integers(-(1 << 15), 1 << 15))
                    imm1 = int(rng.integers(-(1 << 15), 1 << 15))
                    out = sfu.add(a, b, imm0, imm1, shift)
                elif f == SfuFunc.ROPE:
                    out = sfu.rope(a, b, shift)
                else:
                    imm0 = int(rng.integers(0, R + 1))
                    imm1 = int(rng.integers(0, R + 2))
                    if rel:
                        imm0, imm1 = (int(rng.integers(0, 2)), int(rng.integers(1, 3))) \
                            if rng.integers(2) else (imm0, imm1)
                        out = sfu.merge(a, b, imm0 + lane(p.pos, R), imm1 + lane(p.pos, R))
                    else:
                        out = sfu.merge(a, b, imm0, imm1)
        if f != "chunked softmax":
            e.sfu(f, src, dst, n, src2=src2, shift=shift, imm0=imm0 & 0xFFFF,
                  imm1=imm1 & 0xFFFF, causal=causal, rel=rel)
        _store(s, p, f"out{j}", dst, n)
        expected[f"out{j}"] = out
        desc.append(f"{getattr(f, 'name', f).lower()}(n={n}, shift={shift}, imm={imm0},{imm1}"
                    f"{', causal' if causal else ''}{', rel' if rel else ''}"
                    f"{', in place' if dst == src else ''})")
    if not p.fits():
        return random_sfu_program(cfg, seed + 10_000, ops=ops, max_count=max_count)
    return RandomProgram(s.program(), p.mem, expected, f"pos {p.pos}: " + "; ".join(desc),
                         p.pos)
