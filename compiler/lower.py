"""Lowering a quantized linear layer onto the accelerator: tiling, scratchpad allocation,
double-buffering, and the program + memory image.

Layouts in external memory (all int8 unless said, rows padded so every row is whole bus
beats): activations feature-major ``X^T [K, Mp]`` (Mp = M rounded up to the array rows),
per-channel int16 multipliers ``[Np]``, outputs ``Y^T [Np, Mp]`` -- the next layer's input
layout (Np = N rounded up to the engine's tile). Weights: systolic ``W [K, Np]`` int8; LUT
bit-plane entries ``[Kp // 4 * wbits, Np // 2]`` (Kp = K rounded up to 4; see
compiler.lutpack) and, when grouped, int16 group multipliers ``[Np // tile, groups, tile]``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from types import SimpleNamespace

from hw.engines import spec
from hw.isa import Buffer, Engine, Opcode, buffer_entry_bytes
from sw.program import MemoryImage, Program
from sw.sfu import uses
from .engines import plugin
from .quantize import WeightFormat, weight_format
from .schedule import Scheduler

__all__ = ["LinearKernel", "lower_linear", "CompileError", "Target", "pad_to", "Shared"]


class CompileError(ValueError):
    """The layer cannot be mapped onto this configuration (says which limit and why)."""


def pad_to(x, m):
    return (x + m - 1) // m * m


class Target:
    """What the compiler knows about a configuration's engines: the weight-format table
    (compiler.quantize.FORMATS) names each format's engine, checked against what this
    configuration builds."""

    def __init__(self, config):
        self.config = config

    def engine_for(self, fmt):
        """The engine for weight format ``fmt`` (a name or a WeightFormat), checked against
        what this configuration builds."""
        f = fmt if isinstance(fmt, WeightFormat) else weight_format(fmt)
        eng = f.engine
        if eng.name.lower() not in self.config.engines:
            raise CompileError(f"weight format {f.name!r} needs the {eng.name.lower()} engine; "
                               f"config {self.config.name!r} has engines "
                               f"{', '.join(self.config.engines)}")
        es, plug = spec(eng), plugin(eng)
        # the hardware's own legality rule, on the smallest legal k
        if es.illegal(self.config, es.act_group, SimpleNamespace(**plug.mode_of(f))):
            raise CompileError(plug.why_illegal(self.config, f))
        return eng


class _Emit:
    """Instruction emission with the scratchpad/DRAM ranges each one touches."""

    def __init__(self, cfg):
        self.cfg = cfg
        self.s = Scheduler(cfg)
        self.eb = buffer_entry_bytes(cfg)

    def _span(self, buf, addr, rows, stride):
        return ("dram", addr, addr + (rows - 1) * stride + self.eb[buf])

    def load(self, buf, sp, addr, rows, stride, comment="", *, pos_mult=0, span=None):
        """``span``: the external range a position-relative access may touch (lo, hi)."""
        self.s.emit(Opcode.LOAD, buf=buf, sp_addr=sp, dram_addr=addr, rows=rows, stride=stride,
                    pos_mult=pos_mult,
                    reads=[("dram", *span) if span else self._span(buf, addr, rows, stride)],
                    writes=[(buf, sp, sp + rows)], comment=comment)

    def store(self, buf, sp, addr, rows, stride, comment="", *, pos_mult=0, span=None):
        self.s.emit(Opcode.STORE, buf=buf, sp_addr=sp, dram_addr=addr, rows=rows, stride=stride,
                    pos_mult=pos_mult, reads=[(buf, sp, sp + rows)],
                    writes=[("dram", *span) if span else self._span(buf, addr, rows, stride)],
                    comment=comment)

    def sfu(self, func, src, dst, count, *, src2=0, comment="", **imm):
        """An SFU op; its scratchpad reads and writes follow from the function (sw.sfu)."""
        lanes = self.cfg.scale_lanes
        a, b, writes = uses(func)
        bufs = {"act": Buffer.ACT, "acc": Buffer.ACC}
        reads = [(bufs[a], src, src + count)]
        if b == "act":
            reads.append((Buffer.ACT, src2, src2 + count))
        elif b == "scale":
            reads.append((Buffer.SCALE, src2 // lanes, -(-(src2 + count) // lanes)))
        self.s.emit(Opcode.SFU, func=func, src=src, src2=src2, dst=dst, count=count,
                    reads=reads, writes=[(Buffer.ACT, dst, dst + count)] if writes else [],
                    comment=comment, **imm)

    def matmul(self, act, wgt, acc, k, accumulate, *, engine, mode, channels, w_entries,
               scale=None, shift=0, comment=""):
        """``scale``: the int16 lane index of the group multipliers (a scaled MATMUL)."""
        lanes = self.cfg.scale_lanes
        reads = [(Buffer.ACT, act, act + k), (Buffer.WGT, wgt, wgt + w_entries)]
        if accumulate:
            reads.append((Buffer.ACC, acc, acc + channels))
        if scale is not None:
            reads.append((Buffer.SCALE, scale // lanes, (scale + channels + lanes - 1) // lanes))
        self.s.emit(Opcode.MATMUL, act_addr=act, wgt_addr=wgt, acc_addr=acc, k=k,
                    accumulate=int(accumulate), engine=engine, mode=mode,
                    scaled=int(scale is not None), scale_addr=scale or 0, shift=shift,
                    reads=reads, writes=[(Buffer.ACC, acc, acc + channels)], comment=comment)

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


class Shared:
    """A program under construction that several layers join: one scheduler, one memory
    image, named activation slots (``[rows, Mp]`` int8 symbols, Mp a multiple of the
    array's rows). ``x_sym`` / ``y_sym`` name the slots the next linear layer reads and
    writes."""

    def __init__(self, cfg, mem=None):
        self.cfg, self.emit = cfg, _Emit(cfg)
        self.mem = mem if mem is not None else MemoryImage(bytearray())
        self.x_sym = self.y_sym = None

    def put(self, name, array):
        """``mem.write``, except that a symbol already written (by another program of the
        same model) is reused: weights are in memory once."""
        sym = self.mem.symbols.get(name)
        if sym is None:
            return self.mem.write(name, array)
        if not np.array_equal(self.mem.read(name), array):
            raise CompileError(f"{name}: two programs of one model disagree on its contents")
        return sym.addr

    def slot(self, name, rows, mp):
        """The address of activation slot ``name``, checked to hold ``rows`` x ``mp``."""
        sym = self.mem.symbols.get(name)
        if sym is None or sym.shape[0] < rows or sym.row_stride != mp:
            raise CompileError(f"activation slot {name!r} does not hold [{rows}, {mp}]")
        return sym.addr


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
    engine: Engine = Engine.SYSTOLIC
    wbits: int = 8
    peak: float = 0.0       # the engine's peak weight-MACs per cycle at this weight width
    w_dequant: np.ndarray = None    # float [N, K]: the weights the kernel really multiplies by

    def write_input(self, memory: MemoryImage, x_int8):
        """Place an int8 activation [M, K] as X^T [K, Mp] into ``memory`` (in place)."""
        sym = memory.symbols["x"]
        xt = np.zeros((self.k, sym.row_stride), np.int8)
        xt[:, :self.m] = x_int8.T
        memory.data[sym.addr:sym.addr + xt.nbytes] = xt.tobytes()

    def read_output(self, memory: MemoryImage):
        """int8 output [M, N] from Y^T [Np, Mp]."""
        return memory.read("y")[:self.n, :self.m].T.copy()


def _ones_mode(cfg, engine, mode):
    """The MATMUL mode an offset's weights of 1 use: on the LUT engine the binary grid
    (one plane) when the configuration builds it, else the layer's own mode."""
    if engine == Engine.LUT and 1 in cfg.lut_wbits:
        return {"wbits": 1, "odd": 1}
    return dict(mode)


def lower_linear(config, name, m, w_int, mult, shift, *, fmt="int8", relu=False,
                 x_scale=1.0, y_scale=None, group=None, gmult=None,
                 gshift=0, goff=None, x_perm=None, into=None) -> LinearKernel:
    """Compile ``Y = requant(X @ W^T)`` for ``X [m, K]`` int8 and integer ``w_int [N, K]``
    (torch layout, on the grid of weight format ``fmt``) with per-channel int16 ``mult`` and
    one ``shift``, on the engine the format names.

    With ``group`` < K the K axis is cut into groups (the last may be short) whose partial
    sums are scaled by int16 ``gmult [N, groups]`` >> ``gshift`` on their way into the
    accumulators (the MATMUL's scaled drain). ``goff [N, groups]`` int16 adds, per group,
    the group's activation sum times ``goff >> gshift`` (an asymmetric format's offset: a
    MATMUL of the group against weights of 1, kept in the weight scratchpad).
    ``x_perm [K]``: ``w_int``'s column ``i`` is input feature ``x_perm[i]`` (GPTQ's
    act-order, its groups made contiguous): the input is gathered in that order as it is
    loaded, a LOAD per run of consecutive features.

    ``into``: a ``Shared`` program under construction (a whole model's): the layer's
    weights join its memory image as ``{name}.w`` etc., X and Y are its symbols ``x_sym``
    and ``y_sym`` (``[>= Kp, Mp]`` and ``[>= Np, Mp]``), the instructions join its
    scheduler, and the returned kernel has no program of its own."""
    cfg = config
    R, C, B = cfg.rows, cfg.cols, cfg.bus_bytes
    fmt = fmt if isinstance(fmt, WeightFormat) else weight_format(fmt)
    engine = Target(cfg).engine_for(fmt)
    es, plug = spec(engine), plugin(engine)
    mode = plug.mode_of(fmt)
    mode_ns = SimpleNamespace(**mode)
    n, k = w_int.shape
    if k == 0 or n == 0 or m == 0:
        raise CompileError(f"{name}: empty layer (M={m}, K={k}, N={n})")
    if m > 65535 or k > 65535:
        raise CompileError(f"{name}: M={m}, K={k} exceed the 16-bit instruction fields")
    tn = es.channels(cfg)                               # output channels per MATMUL
    align = es.act_group                                # K padded with zero activations
    kp = pad_to(k, align)
    grouped = group is not None and (group < kp or goff is not None)
    if grouped and not cfg.group_scale:
        raise CompileError(f"{name}: group scales need the scaled drain, which config "
                           f"{cfg.name!r} does not build")
    if grouped and (group <= 0 or group % align):
        raise CompileError(f"{name}: group size {group} must be a positive multiple of "
                           f"{align} (the {es.name} engine's activation group)")
    unit = group if grouped else align                  # K chunks are whole units
    one = plug.group(cfg, mode)     # the engine's MATMULs cover one such group at most
    if one and (group != one if grouped else kp > one):
        raise CompileError(f"{name}: weight format {fmt.name!r} runs in groups of {one} "
                           f"features on config {cfg.name!r} (bitserial_group), not "
                           f"{group if grouped else kp}")
    if one and not grouped:
        unit = kp

    def w_entries(kk):          # weight entries, and engine steps, for kk features
        return es.steps(cfg, kk, mode_ns)

    # offsets: a block of weights of 1 (on the LUT engine its cheapest grid holding 1) at
    # the top of the weight scratchpad, loaded once, read by every group's offset MATMUL
    ones_mode = _ones_mode(cfg, engine, mode) if goff is not None else None
    ones_n = es.steps(cfg, group, SimpleNamespace(**ones_mode)) if goff is not None else 0
    wgt_depth = cfg.wgt_depth - ones_n
    per_group = 2 if goff is not None else 1      # scale memory lanes per group and channel

    mp, np_ = pad_to(m, R), pad_to(n, tn)
    lanes = cfg.scale_lanes
    mult_lanes = pad_to(np_, lanes)
    scale_entries = mult_lanes // lanes
    if scale_entries > cfg.scale_depth:
        raise CompileError(f"{name}: {n} output channels need {scale_entries} scale entries; "
                           f"{cfg.name!r} has scale_depth={cfg.scale_depth}")

    # scratchpad plan. Resident case (X^T of a row tile fits): a group of `g` row tiles
    # keeps its X^T on chip and each weight chunk, loaded once, serves the whole group, so
    # weights are fetched once per group instead of once per row tile.
    mt, nt = mp // R, np_ // tn
    x_cap = cfg.act_depth - 2 * tn                      # keep room for 2 output tiles
    resident = kp <= x_cap

    def balanced(limit):        # equal K chunks: a short last chunk would stall the pipeline
        units, per = -(-kp // unit), max(1, limit // unit)
        if limit < unit:
            return 0
        return -(-units // -(-units // per)) * unit
    w_limit = wgt_depth // 2 // w_entries(align) * align
    if grouped:                 # the chunk's group multipliers share the scale memory
        free = cfg.scale_depth * lanes - mult_lanes
        w_limit = min(w_limit, free // 2 // (per_group * tn) * group)
    kc = balanced(w_limit)
    if resident:
        # Two shapes of plan: the most row tiles that fit (weights fetched least often, but
        # one activation slot: loading the next group's X^T stalls the engine), or as many
        # as fit twice (double-buffered X^T, weights fetched more often). A small cost
        # model (max of engine and memory time, plus the stalls) picks one.
        g_max = max(1, min(mt, x_cap // kp, cfg.acc_depth // (2 * tn)))
        g_two = min(g_max, x_cap // (2 * kp))
        steps = w_entries(kp)                          # engine cycles per (row, N) tile
        bw = cfg.mem_bytes_per_cycle

        def cost(g, slots):
            groups = -(-mt // g)
            mem = (groups * nt * w_entries(kp) * C + mt * kp * R + mt * nt * tn * R) / bw
            stall = 0 if slots == 2 else (groups - 1) * g * kp * R / bw
            return max(mt * nt * steps, mem) + stall
        plans = [(cost(g_max, 2 if 2 * g_max * kp <= x_cap else 1), g_max)]
        if g_two >= 1:
            plans.append((cost(g_two, 2), g_two))
        g = min(plans)[1]
        x_slots = 2 if 2 * g * kp <= x_cap else 1
        x_size = g * kp
    else:                       # K too long for the activations: stream X^T in chunks too
        g = 1
        kc = balanced(min(w_limit, x_cap // 2 // 4 * 4))
        x_slots, x_size = 2, kc
    if kc < 1 or 2 * tn > cfg.acc_depth:
        raise CompileError(f"{name}: {cfg.name!r} scratchpads are too small for one tile"
                           + (f" with group size {group}" if grouped else ""))
    # output tiles rotate through as many regions as fit (at least 2, up to 2 per row tile
    # of the group), so REQUANT rarely waits for a STORE to drain a region
    n_out = max(2, min(2 * g, (cfg.act_depth - x_slots * x_size) // tn))
    act_out = [x_slots * x_size + i * tn for i in range(n_out)]
    # up to 4 weight buffers: a chunk's buffer is free only once the MATMUL reading it has
    # drained, so a third and fourth buffer keep the loads running ahead
    n_w = max(2, min(4, wgt_depth // w_entries(kc)))
    if grouped:
        n_w = max(2, min(n_w, (cfg.scale_depth * lanes - mult_lanes)
                         // (-(-kc // group) * per_group * tn)))
    wgt_slot = [i * w_entries(kc) for i in range(n_w)]
    gs_lanes = -(-kc // group) * per_group * tn if grouped else 0
    gs_slot = [mult_lanes + i * gs_lanes for i in range(n_w)]

    mem = into.mem if into else MemoryImage(bytearray())
    pre = f"{name}." if into else ""
    wfull = np.full((kp, np_), plug.pad_value(mode), np.int64)   # pads meet zero activations
    wfull[:k, :n] = np.asarray(w_int).T
    w_rows = plug.pack(wfull, mode, cfg)                               # [w_entries(kp), entry]
    w_stride = w_rows.shape[1]
    mult_p = np.zeros(mult_lanes, np.int16)
    mult_p[:n] = mult
    put = into.put if into else mem.write
    a_w = put(pre + "w", w_rows)
    a_s = put(pre + "mult", mult_p)
    if grouped:
        ng = -(-kp // group)
        gm = np.zeros((np_, ng, per_group), np.int16)       # per group: scale, offset
        gm[:n, :, 0] = gmult
        if goff is not None:
            gm[:n, :, 1] = goff
        a_g = put(pre + "gmult", gm.reshape(nt, tn, ng, per_group).transpose(0, 2, 3, 1)
                  .reshape(-1))
        if goff is not None:
            ones = plug.pack(np.ones((group, tn), np.int64), ones_mode, cfg)
            a_ones = put(pre + "ones", ones)
    if into:
        a_x = into.slot(into.x_sym, kp, mp)
        a_y = into.slot(into.y_sym, np_, mp)
    else:
        a_x = mem.reserve("x", (kp, mp), np.int8, row_stride=mp)
        a_y = mem.reserve("y", (np_, mp), np.int8, row_stride=mp)
    order = np.arange(kp)
    if x_perm is not None:
        order[:k] = x_perm

    def x_loads(sp, f0, count, lane, comment):
        """Features ``f0..f0+count`` of the kernel's order into ``sp..``, lanes from
        ``lane``: one LOAD per run of consecutive source features."""
        src = order[f0:f0 + count]
        cuts = [0, *(np.flatnonzero(np.diff(src) != 1) + 1), count]
        return [(Buffer.ACT, sp + a, a_x + int(src[a]) * mp + lane, b - a, mp, comment)
                for a, b in zip(cuts, cuts[1:])]

    e = into.emit if into else _Emit(cfg)
    steps = []      # (loads, computes): loads of step i+1 are emitted before computes of i
    first = [(Buffer.SCALE, 0, a_s, scale_entries, B, f"{name} scales")]
    if goff is not None:
        first.append((Buffer.WGT, wgt_depth, a_ones, ones_n, ones.shape[1], f"{name} ones"))
    chunk = 0       # weight chunks so far (weight slot parity)
    tile = 0        # output tiles so far (output region parity)
    # With one activation slot, the next row group's X^T is reloaded chunk by chunk during
    # this group's last N tile, each chunk as soon as the MATMULs reading it are done.
    progressive = resident and x_slots == 1
    starts = list(range(0, mt, g))
    acc_parity = 0
    for gi, m0 in enumerate(starts):
        group_rows = list(range(m0, min(mt, m0 + g)))
        next_rows = list(range(starts[gi + 1], min(mt, starts[gi + 1] + g))) \
            if gi + 1 < len(starts) else []
        x_base = (gi % x_slots) * x_size
        for ni in range(nt):
            # this N tile's accumulators, one per row tile; alternating over consecutive N
            # tiles across row groups too (a tile's REQUANT is emitted after the next
            # tile's first MATMULs)
            acc_base = (acc_parity % 2) * g * tn
            acc_parity += 1
            for k0 in range(0, kp, kc):
                kk = min(kc, kp - k0)
                loads, comps = [], []
                if resident and ni == 0 and k0 == 0 and not (progressive and gi > 0):
                    for j, mi in enumerate(group_rows):
                        loads += x_loads(x_base + j * kp, 0, kp, mi * R,
                                         f"{name} x rows {mi * R}:{mi * R + R}")
                if not resident:
                    loads += x_loads((chunk % 2) * x_size, k0, kk, m0 * R,
                                     f"{name} x k {k0}:{k0 + kk}")
                slot = chunk % n_w
                ws = wgt_slot[slot]
                loads.append((Buffer.WGT, ws, a_w + w_entries(k0) * w_stride + ni * C,
                              w_entries(kk), w_stride, f"{name} w n {ni * tn} k {k0}"))
                segs = [(s0, min(group, kp - s0)) for s0 in range(k0, k0 + kk, group)] \
                    if grouped else [(k0, kk)]
                if grouped:
                    gaddr = a_g + 2 * per_group * (ni * ng * tn + k0 // group * tn)
                    loads.append((Buffer.SCALE, gs_slot[slot] // lanes, gaddr,
                                  len(segs) * per_group * tn // lanes, B,
                                  f"{name} group scales"))
                for j, mi in enumerate(group_rows):
                    a_off = x_base + j * kp + k0 if resident else (chunk % 2) * x_size
                    for si, (s0, sk) in enumerate(segs):
                        at = f"{name} m {mi * R} n {ni * tn} k {s0}:{s0 + sk}"
                        gs = gs_slot[slot] + si * per_group * tn if grouped else None
                        comps.append(("mm", a_off + s0 - k0, ws + w_entries(s0 - k0),
                                      acc_base + j * tn, sk, s0 > 0, gs, at, mode))
                        if goff is not None:
                            comps.append(("mm", a_off + s0 - k0, wgt_depth,
                                          acc_base + j * tn, sk, True, gs + tn,
                                          f"{at} offset", ones_mode))
                if k0 + kk == kp:
                    for j, mi in enumerate(group_rows):
                        out = act_out[tile % n_out]
                        tile += 1
                        comps.append(("rq", acc_base + j * tn, out, ni * tn, tn, shift, None,
                                      relu, f"{name} tile"))
                        comps.append(("st", Buffer.ACT, out, a_y + ni * tn * mp + mi * R, tn,
                                      mp, f"{name} y n {ni * tn} m {mi * R}"))
                post = []
                if progressive and ni == nt - 1:
                    for j, mi in enumerate(next_rows):
                        post += x_loads(j * kp + k0, k0, kk, mi * R,
                                        f"{name} x rows {mi * R}:{mi * R + R} k {k0} (early)")
                steps.append((loads, comps, post))
                chunk += 1

    def emit_loads(loads):
        for buf, sp, addr, rows, stride, c in loads:
            e.load(buf, sp, addr, rows, stride, comment=c)

    def emit_comps(comps):
        for c in comps:
            if c[0] == "mm":
                _, act, wgt, acc, kk, accum, sc, comment, md = c
                e.matmul(act, wgt, acc, kk, accum, engine=engine, mode=md, channels=tn,
                         w_entries=es.steps(cfg, kk, SimpleNamespace(**md)), scale=sc,
                         shift=gshift if sc is not None else 0, comment=comment)
            elif c[0] == "rq":
                e.requant(*c[1:8], comment=c[8])
            else:
                e.store(*c[1:6], comment=c[6])

    # Software pipelining: a tile's REQUANT and STORE are emitted after the next step's
    # MATMULs, so the array streams the next tile while this one drains and requantizes.
    # The first two steps' weights go first: they stream while the op before this one
    # (whose output this one loads, whose scales this one replaces) is still running. (Not
    # more: the input then arrives later, and the first MATMUL waits for it.)
    def weights(loads, want=True):
        return [ld for ld in loads if (ld[0] == Buffer.WGT) == want]
    early = min(2, len(steps))
    for loads, _, _ in steps[:early]:
        emit_loads(weights(loads))
    deferred = []
    for i, (loads, comps, post) in enumerate(steps):
        if i == 0:
            emit_loads(first + weights(loads, False))
        if i + 1 < len(steps):
            nxt = steps[i + 1][0]
            emit_loads(weights(nxt, False) if i + 1 < early else nxt)
        emit_comps([c for c in comps if c[0] == "mm"])
        emit_comps(deferred)
        emit_loads(post)        # after the MATMULs that still read what they overwrite
        deferred = [c for c in comps if c[0] != "mm"]
    emit_comps(deferred)
    prog = None if into else e.s.program()
    y_scale = np.ones(n) if y_scale is None else np.asarray(y_scale, np.float64)
    return LinearKernel(name, m, k, n, prog, mem, x_scale, y_scale, m * k * n, engine,
                        fmt.wbits, es.peak_macs(cfg, mode_ns))
