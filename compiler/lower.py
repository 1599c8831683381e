"""Lowering a quantized linear layer onto the accelerator: tiling, scratchpad allocation,
double-buffering, and the program + memory image.

Layouts in external memory (all int8 unless said, rows padded so every row is whole bus
beats): activations feature-major ``X^T [K, Mp]`` (Mp = M rounded up to the array rows),
weights ``W [K, Np]`` (Np = N rounded up to the array columns), per-channel int16
multipliers ``[Np]``, outputs ``Y^T [Np, Mp]`` -- the next layer's input layout.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hw.isa import Buffer, Engine, Opcode, buffer_entry_bytes
from sw.program import MemoryImage, Program
from .schedule import Scheduler

__all__ = ["LinearKernel", "lower_linear", "CompileError", "Target", "pad_to"]


class CompileError(ValueError):
    """The layer cannot be mapped onto this configuration (says which limit and why)."""


def pad_to(x, m):
    return (x + m - 1) // m * m


class Target:
    """What the compiler knows about a configuration: tiles, buffers, engines, peak.

    Lowering choices read as data: which engine runs which weight format.
    """
    ENGINE_FOR_FORMAT = {"int8": Engine.SYSTOLIC}

    def __init__(self, config):
        self.config = config
        self.tile_m, self.tile_n = config.rows, config.cols

    def engine_for(self, fmt):
        try:
            return self.ENGINE_FOR_FORMAT[fmt]
        except KeyError:
            raise CompileError(f"weight format {fmt!r} has no engine on {self.config.name!r}; "
                               f"supported: {', '.join(self.ENGINE_FOR_FORMAT)}") from None

    def linear_cost(self, m, k, n):
        """Ideal cycles on the array (compute bound) for an M x K x N linear."""
        c = self.config
        return pad_to(m, c.rows) // c.rows * pad_to(n, c.cols) // c.cols * k


class _Emit:
    """Instruction emission with the scratchpad/DRAM ranges each one touches."""

    def __init__(self, cfg):
        self.cfg = cfg
        self.s = Scheduler(cfg)
        self.eb = buffer_entry_bytes(cfg)

    def _span(self, buf, addr, rows, stride):
        return ("dram", addr, addr + (rows - 1) * stride + self.eb[buf])

    def load(self, buf, sp, addr, rows, stride, comment=""):
        self.s.emit(Opcode.LOAD, buf=buf, sp_addr=sp, dram_addr=addr, rows=rows, stride=stride,
                    reads=[self._span(buf, addr, rows, stride)], writes=[(buf, sp, sp + rows)],
                    comment=comment)

    def store(self, buf, sp, addr, rows, stride, comment=""):
        self.s.emit(Opcode.STORE, buf=buf, sp_addr=sp, dram_addr=addr, rows=rows, stride=stride,
                    reads=[(buf, sp, sp + rows)], writes=[self._span(buf, addr, rows, stride)],
                    comment=comment)

    def matmul(self, act, wgt, acc, k, accumulate, engine, comment=""):
        reads = [(Buffer.ACT, act, act + k), (Buffer.WGT, wgt, wgt + k)]
        if accumulate:
            reads.append((Buffer.ACC, acc, acc + self.cfg.cols))
        self.s.emit(Opcode.MATMUL, act_addr=act, wgt_addr=wgt, acc_addr=acc, k=k,
                    accumulate=int(accumulate), engine=engine, reads=reads,
                    writes=[(Buffer.ACC, acc, acc + self.cfg.cols)], comment=comment)

    def requant(self, acc, out, scale, count, shift, res, relu, comment=""):
        lanes = self.cfg.scale_lanes
        reads = [(Buffer.ACC, acc, acc + count),
                 (Buffer.SCALE, scale // lanes, (scale + count + lanes - 1) // lanes)]
        if res is not None:
            reads.append((Buffer.ACT, res, res + count))
        self.s.emit(Opcode.REQUANT, acc_addr=acc, out_addr=out, scale_addr=scale, count=count,
                    shift=shift, residual=int(res is not None), res_addr=res or 0,
                    relu=int(relu), reads=reads, writes=[(Buffer.ACT, out, out + count)],
                    comment=comment)


@dataclass
class LinearKernel:
    """One compiled linear layer: program, memory image and how to use them."""
    name: str
    m: int
    k: int
    n: int
    program: Program
    memory: MemoryImage
    x_scale: float          # X_int8 = round(X / x_scale)
    y_scale: np.ndarray     # per output channel: Y = Y_int8 * y_scale
    macs: int

    def write_input(self, memory: MemoryImage, x_int8):
        """Place an int8 activation [M, K] as X^T [K, Mp] into ``memory`` (in place)."""
        sym = memory.symbols["x"]
        xt = np.zeros((self.k, sym.row_stride), np.int8)
        xt[:, :self.m] = x_int8.T
        memory.data[sym.addr:sym.addr + xt.nbytes] = xt.tobytes()

    def read_output(self, memory: MemoryImage):
        """int8 output [M, N] from Y^T [Np, Mp]."""
        return memory.read("y")[:self.n, :self.m].T.copy()


def lower_linear(config, name, m, w_int8, mult, shift, *, relu=False, x_scale=1.0,
                 y_scale=None, engine=Engine.SYSTOLIC) -> LinearKernel:
    """Compile ``Y = requant(X @ W^T)`` for ``X [m, K]`` int8 and ``w_int8 [N, K]`` (torch
    layout) with per-channel int16 ``mult`` and one ``shift``."""
    cfg = config
    R, C, B = cfg.rows, cfg.cols, cfg.bus_bytes
    n, k = w_int8.shape
    mp, np_ = pad_to(m, R), pad_to(n, C)
    lanes = cfg.scale_lanes
    scale_entries = pad_to(np_, lanes) // lanes
    if scale_entries > cfg.scale_depth:
        raise CompileError(f"{name}: {n} output channels need {scale_entries} scale entries; "
                           f"{cfg.name!r} has scale_depth={cfg.scale_depth}")
    if m > 65535 or k > 65535:
        raise CompileError(f"{name}: M={m}, K={k} exceed the 16-bit instruction fields")
    if k == 0 or n == 0 or m == 0:
        raise CompileError(f"{name}: empty layer (M={m}, K={k}, N={n})")

    # scratchpad plan. Resident case (X^T of a row tile fits): a group of `g` row tiles
    # keeps its X^T on chip and each weight chunk, loaded once, serves the whole group, so
    # weights are fetched once per group instead of once per row tile.
    mt, nt = mp // R, np_ // C
    x_cap = cfg.act_depth - 2 * C                       # keep room for 2 output tiles
    resident = k <= x_cap
    def balanced(limit):        # equal K chunks: a short last chunk would stall the pipeline
        return -(-k // -(-k // limit))
    kc = balanced(cfg.wgt_depth // 2)
    if resident:
        g = max(1, min(mt, x_cap // k, cfg.acc_depth // (2 * C)))
        x_slots = 2 if 2 * g * k <= x_cap else 1
        x_size = g * k
    else:                       # K too long for the activations: stream X^T in chunks too
        g = 1
        kc = balanced(min(cfg.wgt_depth // 2, x_cap // 2))
        x_slots, x_size = 2, kc
    if kc < 1 or 2 * C > cfg.acc_depth:
        raise CompileError(f"{name}: {cfg.name!r} scratchpads are too small for one tile")
    # output tiles rotate through as many regions as fit (at least 2, up to 2 per row tile
    # of the group), so REQUANT rarely waits for a STORE to drain a region
    n_out = max(2, min(2 * g, (cfg.act_depth - x_slots * x_size) // C))
    act_out = [x_slots * x_size + i * C for i in range(n_out)]
    # up to 4 weight buffers: a chunk's buffer is free only once the MATMUL reading it has
    # drained, so a third and fourth buffer keep the loads running ahead
    n_w = max(2, min(4, cfg.wgt_depth // kc))
    wgt_slot = [i * kc for i in range(n_w)]

    mem = MemoryImage(bytearray())
    w_t = np.zeros((k, np_), np.int8)
    w_t[:, :n] = w_int8.T
    mult_p = np.zeros(pad_to(np_, lanes), np.int16)
    mult_p[:n] = mult
    a_w = mem.write("w", w_t)
    a_s = mem.write("mult", mult_p)
    a_x = mem.reserve("x", (k, mp), np.int8, row_stride=mp)
    a_y = mem.reserve("y", (np_, mp), np.int8, row_stride=mp)

    e = _Emit(cfg)
    steps = []      # (loads, computes): loads of step i+1 are emitted before computes of i
    e.load(Buffer.SCALE, 0, a_s, scale_entries, B, comment=f"{name} scales")
    chunk = 0       # weight chunks so far (weight slot parity)
    tile = 0        # output tiles so far (output region parity)
    for gi, m0 in enumerate(range(0, mt, g)):
        group = list(range(m0, min(mt, m0 + g)))
        x_base = (gi % x_slots) * x_size
        for ni in range(nt):
            acc_base = (ni % 2) * g * C     # this N tile's accumulators, one per row tile
            for k0 in range(0, k, kc):
                kk = min(kc, k - k0)
                loads, comps = [], []
                if resident and ni == 0 and k0 == 0:
                    for j, mi in enumerate(group):
                        loads.append((Buffer.ACT, x_base + j * k, a_x + mi * R, k, mp,
                                      f"{name} x rows {mi * R}:{mi * R + R}"))
                if not resident:
                    loads.append((Buffer.ACT, (chunk % 2) * x_size, a_x + k0 * mp + m0 * R,
                                  kk, mp, f"{name} x k {k0}:{k0 + kk}"))
                ws = wgt_slot[chunk % n_w]
                loads.append((Buffer.WGT, ws, a_w + k0 * np_ + ni * C, kk, np_,
                              f"{name} w n {ni * C} k {k0}"))
                for j, mi in enumerate(group):
                    a_off = x_base + j * k + k0 if resident else (chunk % 2) * x_size
                    comps.append(("mm", a_off, ws, acc_base + j * C, kk, k0 > 0,
                                  f"{name} m {mi * R} n {ni * C} k {k0}:{k0 + kk}"))
                if k0 + kk == k:
                    for j, mi in enumerate(group):
                        out = act_out[tile % n_out]
                        tile += 1
                        comps.append(("rq", acc_base + j * C, out, ni * C, C, shift, None, relu,
                                      f"{name} tile"))
                        comps.append(("st", Buffer.ACT, out, a_y + ni * C * mp + mi * R, C, mp,
                                      f"{name} y n {ni * C} m {mi * R}"))
                steps.append((loads, comps))
                chunk += 1

    def emit_loads(loads):
        for buf, sp, addr, rows, stride, c in loads:
            e.load(buf, sp, addr, rows, stride, comment=c)

    def emit_comps(comps):
        for c in comps:
            if c[0] == "mm":
                e.matmul(*c[1:6], engine=engine, comment=c[6])
            elif c[0] == "rq":
                e.requant(*c[1:8], comment=c[8])
            else:
                e.store(*c[1:6], comment=c[6])

    # Software pipelining: a tile's REQUANT and STORE are emitted after the next step's
    # MATMULs, so the array streams the next tile while this one drains and requantizes.
    deferred = []
    for i, (loads, comps) in enumerate(steps):
        if i == 0:
            emit_loads(loads)
        if i + 1 < len(steps):
            emit_loads(steps[i + 1][0])
        emit_comps([c for c in comps if c[0] == "mm"])
        emit_comps(deferred)
        deferred = [c for c in comps if c[0] != "mm"]
    emit_comps(deferred)
    prog = e.s.program()
    y_scale = np.ones(n) if y_scale is None else np.asarray(y_scale, np.float64)
    return LinearKernel(name, m, k, n, prog, mem, x_scale, y_scale, m * k * n)
