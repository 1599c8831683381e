"""Seeded random programs that are legal and race-free, for RTL-vs-golden verification.

Each program is a chain of matmul jobs on random engines (systolic int8, or the LUT engine
with random weight widths and grids) with random shapes (K any size, partial output tiles),
random pipelining (serial or double-buffered), random splitting of loads and of K into
accumulating MATMULs, random per-MATMUL group scales, random requant options (shift, relu, residual), raw-accumulator and/or
int8 stores, and dependency tokens relayed through random SYNCs. Alongside it comes an
independent oracle: the exact integer results computed straight from the job's operands.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from types import SimpleNamespace

from hw.engines import specs_of
from hw.isa import Buffer, Queue
from sw.golden import requant, rne_shift, wrap32
from sw.program import MemoryImage, Program
from .asm import Assembler, mask
from .engines import plugin

__all__ = ["random_program", "RandomProgram"]

L, Cq, S = Queue.LOAD, Queue.COMPUTE, Queue.STORE


@dataclass
class RandomProgram:
    program: Program
    memory: MemoryImage
    expected: dict = field(default_factory=dict)   # symbol -> exact array (independent oracle)
    description: str = ""
    pos: int = 0            # the run's position (hw.position)


def random_program(config, seed, *, max_jobs=4, max_k=None, engines=None, wbits=None,
                   ternary=False) -> RandomProgram:
    """``engines`` restricts the engines (tags) jobs draw from; ``wbits`` fixes the LUT weight
    width; ``ternary`` draws LUT weights from {-1, 0, 1} (2 planes)."""
    rng = np.random.default_rng(seed)
    R, C, B = config.rows, config.cols, config.bus_bytes
    lanes = config.scale_lanes
    slots = int(rng.integers(1, 3))
    # scratchpad plan: per slot an act input region, a weight region, a residual region,
    # an output region and an accumulator tile
    built = [s for s in specs_of(config) if engines is None or s.tag in engines]
    CH = max(s.channels(config) for s in specs_of(config))     # widest MATMUL output tile
    align = max(s.act_group for s in specs_of(config))
    max_k = max(1, min(max_k or 3 * R + 5, (config.act_depth - 4 * CH) // (2 * slots) - 3,
                       config.wgt_depth // slots))
    span = (max_k + align - 1) // align * align       # every engine's activations aligned
    act_in = [s * span for s in range(slots)]
    act_res = [slots * span + s * CH for s in range(slots)]
    act_out = [slots * span + slots * CH + s * CH for s in range(slots)]
    wgt_in = [s * max_k for s in range(slots)]
    acc_t = [s * CH for s in range(slots)]
    assert act_out[-1] + CH <= config.act_depth and slots * CH <= config.acc_depth
    engines = [s for s in built if s.act_group <= max_k]

    mem = MemoryImage(bytearray())
    asm = Assembler(config)
    n_scales = min(config.scale_depth * lanes, 4 * CH)
    scales = rng.integers(-(1 << 15), 1 << 15, n_scales).astype(np.int16)
    small = rng.random(n_scales) < 0.7                 # mostly realistic multipliers
    scales[small] = rng.integers(1, 1 << 12, int(small.sum()))
    s_addr = mem.write("scales", scales)
    n_scale_rows = (2 * n_scales + B - 1) // B
    expected = {}
    njobs = int(rng.integers(1, max_jobs + 1))
    desc = [f"slots={slots}"]
    for j in range(njobs):
        s = j % slots
        if not engines:
            continue
        es = engines[int(rng.integers(0, len(engines)))]
        plug = plugin(es.tag)
        mode = plug.random_mode(rng, config, wbits=wbits, ternary=ternary)
        mode_ns = SimpleNamespace(**mode)
        ch = es.channels(config)
        unit = es.act_group
        k = unit * int(rng.integers(1, max_k // unit + 1))
        one = plug.group(config, mode)      # features per MATMUL at most (its own layout)
        ncols = int(rng.integers(1, ch + 1))           # partial output tile on store
        a = rng.integers(-128, 128, (k, R), dtype=np.int8)
        res = rng.integers(-128, 128, (ch, R), dtype=np.int8)
        w = plug.random_weights(rng, (k, ch), mode, ternary=ternary, group=one)
        w_rows = plug.pack(w, mode, config)            # [steps(k), entry bytes]
        # rows padded to a random multiple of the bus width: strided DMA
        pad_a = R + B * int(rng.integers(0, 3))
        pad_w = C + B * int(rng.integers(0, 3))
        a_addr = mem.write(f"a{j}", a, row_stride=pad_a)
        w_addr = mem.write(f"w{j}", w_rows, row_stride=pad_w)
        use_res = bool(rng.random() < 0.4)
        relu = bool(rng.random() < 0.3)
        shift = int(rng.integers(0, 24))
        scale_off = int(rng.integers(0, n_scales - ch + 1))
        store_act = bool(rng.random() < 0.8)
        store_acc = (not store_act) or bool(rng.random() < 0.4)
        if use_res:
            r_addr = mem.write(f"res{j}", res)

        # --- loads (the last one of the job releases to compute) ----------------------
        loads = []
        if j == 0:
            loads.append((Buffer.SCALE, 0, s_addr, n_scale_rows, B))
        if k > 1 and rng.random() < 0.3:               # split the activation load
            h = int(rng.integers(1, k))
            loads += [(Buffer.ACT, act_in[s], a_addr, h, pad_a),
                      (Buffer.ACT, act_in[s] + h, a_addr + h * pad_a, k - h, pad_a)]
        else:
            loads.append((Buffer.ACT, act_in[s], a_addr, k, pad_a))
        loads.append((Buffer.WGT, wgt_in[s], w_addr, len(w_rows), pad_w))
        if use_res:
            loads.append((Buffer.ACT, act_res[s], r_addr, ch, R))
        rng.shuffle(loads)
        for i, (buf, sp, addr, rows, stride) in enumerate(loads):
            wait = mask(Cq) if (i == 0 and j >= slots) else 0
            rel = mask(Cq) if i == len(loads) - 1 else 0
            asm.load(buf, sp, addr, rows, stride, wait=wait, release=rel,
                     comment=f"job {j} load {buf.name.lower()}")

        # --- compute: K split into accumulating MATMULs, then REQUANT -------------------
        n_units = k // unit
        cuts = sorted(set(unit * int(x) for x in rng.integers(1, n_units, int(rng.integers(0, 3)))
                          )) if n_units > 1 else []
        if one:                             # a MATMUL per group
            cuts = list(range(one, k, one))
        bounds = [0] + cuts + [k]
        scaled = config.group_scale and bool(rng.random() < 0.4)
        acc = np.zeros((ch, R), np.int64)
        parts = []
        for i in range(len(bounds) - 1):
            k0, k1 = bounds[i], bounds[i + 1]
            wait = mask(L) if i == 0 else 0
            if i == 0 and j >= slots:
                wait |= mask(S)                         # the store of job j-slots is done
            g_addr = int(rng.integers(0, n_scales - ch + 1)) if scaled else 0
            g_shift = int(rng.integers(0, 20)) if scaled else 0
            w_off = es.steps(config, k0, mode_ns)
            asm.matmul(act_in[s] + k0, wgt_in[s] + w_off, acc_t[s], k1 - k0, accumulate=i > 0,
                       wait=wait, engine=es.tag, mode=mode, scaled=scaled,
                       shift=g_shift, scale_addr=g_addr,
                       comment=f"job {j} k[{k0}:{k1}]")
            # independent oracle: the exact integer product of this K slice
            part = wrap32(w[k0:k1].astype(np.int64).T @ a[k0:k1].astype(np.int64))
            if scaled:
                part = wrap32(rne_shift(part.astype(np.int64)
                                         * scales[g_addr:g_addr + ch, None], g_shift))
            acc = wrap32(acc.astype(np.int64) + part)
            parts.append(f"{k1 - k0}" + (f"*m@{g_addr}>>{g_shift}" if scaled else ""))
        relay = bool(rng.random() < 0.3)
        asm.requant(acc_t[s], act_out[s], scale_off, ch, shift,
                    res_addr=act_res[s] if use_res else None, relu=relu,
                    release=mask(L) | (0 if relay else mask(S)), comment=f"job {j}")
        if relay:
            asm.sync(Cq, release=mask(S), comment="relay")
        if rng.random() < 0.2:
            asm.sync(L if rng.random() < 0.5 else S, comment="idle sync")

        # --- stores: the last one releases to compute -------------------------------------
        stores = []
        if store_act:
            o = mem.reserve(f"out{j}", (ncols, R), np.int8, row_stride=R)
            stores.append((Buffer.ACT, act_out[s], o, ncols, R))
        if store_acc:
            o = mem.reserve(f"acc{j}", (ncols, R), np.int32, row_stride=4 * R)
            stores.append((Buffer.ACC, acc_t[s], o, ncols, 4 * R))
        for i, (buf, sp, addr, rows, stride) in enumerate(stores):
            asm.store(buf, sp, addr, rows, stride, wait=mask(Cq) if i == 0 else 0,
                      release=mask(Cq) if i == len(stores) - 1 else 0,
                      comment=f"job {j} store {buf.name.lower()}")

        if store_acc:
            expected[f"acc{j}"] = acc[:ncols]
        if store_act:
            q = requant(acc, scales[scale_off:scale_off + ch], shift,
                        res if use_res else None, relu)
            expected[f"out{j}"] = q[:ncols]
        eng_s = plug.describe(mode)
        desc.append(f"job{j}: {eng_s} k={k} cols={ncols} parts={'+'.join(parts)} res={use_res} "
                    f"relu={relu} shift={shift} relay={relay}")
    return RandomProgram(asm.program(), mem, expected, "; ".join(desc))
