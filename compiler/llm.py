"""A whole decoder-only model compiled to programs over one memory plan (docs/models.md).

Memory: every weight once, a KV-cache arena, the RoPE table, and per token count ``Mp``
activation slots (feature-major ``[features, Mp]`` int8, one lane per token). The host looks
up the embedding and writes it into slot ``x``; the program runs every layer and the LM head
and leaves int8 logits in slot ``logits``; the host samples.

Programs:
- ``prefill{T}``: the prompt at positions 0..T-1 (a prompt of up to T tokens, padded), run
  at position 0; it writes the whole KV cache of those positions.
- ``decode{L}``: one token at any position ``pos < L`` (the run's position, hw.position),
  in lane ``pos % rows``; it appends that token's K and V to the cache and attends to keys
  0..L-1 with the causal mask at ``pos``. One program serves every position of its bucket.
  The query heads that share a key/value head (GQA) are lanes of one MATMUL, so the cache
  streams once per key/value head.

KV cache, per layer and key/value head, int8 at the site's static scale (per-tensor):
K^T ``[head_dim, max_len]`` (positions contiguous: the score MATMUL's weights) and V
``[max_len, head_dim]`` (the P V MATMUL's weights). A decode step appends by loading the
cache block of ``rows`` positions around ``pos``, merging its token's lane in (MERGE; V
through TRANSPOSE) and storing the block back.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from dataclasses import dataclass, field

import numpy as np

from hw.engines import spec
from hw.isa import SOFTMAX_PASSES, Buffer, Engine, SfuFunc
from sw.program import MemoryImage
from sw.sfu import TABLE_SIZE
from .frontend import lower_layer
from .lower import CompileError, Shared, Target, pad_to
from .llmquant import QuantModel
from .qweight import QWeight
from .quantize import weight_format
from .sfuops import ROPE_SHIFT, rope_table

__all__ = ["CompiledLLM", "check_fits", "compile_llm", "buckets"]

ACT, WGT, ACC, SCALE = Buffer.ACT, Buffer.WGT, Buffer.ACC, Buffer.SCALE


def buckets(lo, hi):
    """Powers of two times ``lo`` up to ``hi`` (``hi`` itself last)."""
    out, b = [], lo
    while b < hi:
        out.append(b)
        b *= 2
    return out + [hi]


@dataclass
class CompiledLLM:
    """A model's memory image and programs, and where the host puts and finds things."""
    config: object          # AccelConfig
    model: object           # ModelConfig
    quant: QuantModel
    memory: MemoryImage
    programs: dict          # name -> Program
    prefill: list           # prefill buckets (token counts)
    decode: list            # decode buckets (cache lengths)
    max_len: int
    wformat: str = "int8"
    group: int = 128        # LUT formats: input features per group scale
    requantize: bool = False    # a file's format no engine holds: re-quantize it
    head: bool = True       # the final norm and LM head (False: the layers only, output x)
    kernels: dict = field(default_factory=dict)     # linear name -> LinearKernel (info)
    #: program -> [(instructions, slot, site)]: after its first ``instructions`` the slot
    #: holds activation site ``site`` (compiler.llmquant.float_forward's names)
    sites: dict = field(default_factory=dict)

    def prefill_bucket(self, t):
        for b in self.prefill:
            if t <= b:
                return b
        raise CompileError(f"a prompt of {t} tokens is longer than the longest prefill "
                           f"bucket ({self.prefill[-1]})")

    def decode_bucket(self, pos):
        for b in self.decode:
            if pos < b:
                return b
        raise CompileError(f"position {pos} is past the KV cache ({self.max_len} positions)")

    def embed_slot(self, ids, mp, lane0=0):
        """The int8 ``x`` slot contents [hidden, mp] for tokens ``ids`` from lane ``lane0``."""
        sym = self.memory.symbols[f"x@{mp}"]
        out = np.zeros(sym.shape, np.int8)
        out[:self.model.hidden_size, lane0:lane0 + len(ids)] = self.quant.embed[ids].T
        return out


class _Ring:
    """Scratchpad space handed out round-robin: the scheduler's hazard tokens keep reuse
    safe, and consecutive requests get different space so loads run ahead."""

    def __init__(self, lo, hi):
        self.lo, self.hi, self.at = lo, hi, lo

    def take(self, n):
        if n > self.hi - self.lo:
            raise CompileError(f"a scratchpad region of {self.hi - self.lo} entries cannot "
                               f"hold {n}")
        if self.at + n > self.hi:
            self.at = self.lo
        a = self.at
        self.at += n
        return a


class _Builder:
    """The instructions of one program (``mp`` token lanes), kernel by kernel."""

    def __init__(self, cm: CompiledLLM, mp, decode_len=None):
        self.cm, self.cfg, self.q, self.m = cm, cm.config, cm.quant, cm.model
        self.mp, self.decode_len = mp, decode_len
        self.sh = Shared(self.cfg, cm.memory)
        self.e = self.sh.emit
        self.R, self.C = self.cfg.rows, self.cfg.cols
        self.tiles = mp // self.R
        self.sites = []

    # --- memory -----------------------------------------------------------------------------
    def slot(self, name):
        return self.cm.memory.symbols[f"{name}@{self.mp}"].addr

    def tile(self, name, row0, mi):
        """External address of rows ``row0..`` of slot ``name``, lanes of row tile ``mi``."""
        return self.slot(name) + row0 * self.mp + mi * self.R

    def rel(self):
        return self.decode_len is not None

    # --- kernels ----------------------------------------------------------------------------
    def norm(self, src, dst, params, what):
        e, n = self.e, self.m.hidden_size
        gamma, eps, shift = params
        lanes = self.cfg.scale_lanes
        g = np.zeros(pad_to(n, lanes), np.int16)
        g[:n] = gamma
        ga = self.sh.put(f"{what}.gamma", g.reshape(-1, lanes))
        e.load(SCALE, 0, ga, len(g) // lanes, self.cfg.scale_entry_bytes, f"{what} gamma")
        ring = _Ring(0, self.cfg.act_depth)
        for mi in range(self.tiles):
            a = ring.take(n)
            e.load(ACT, a, self.tile(src, 0, mi), n, self.mp, f"{what} x {mi}")
            e.sfu(SfuFunc.RMSNORM, a, a, n, src2=0, imm0=eps, shift=shift, comment=what)
            e.store(ACT, a, self.tile(dst, 0, mi), n, self.mp, f"{what} out {mi}")

    def linear(self, name, x, y, params):
        """A linear layer; one with more output channels than the scale scratchpad holds
        multipliers for (an LM head) is cut into several, each writing its rows of ``y``."""
        w, sx, sy = params
        cfg, mem = self.cfg, self.cm.memory
        cap = cfg.scale_depth * cfg.scale_lanes // 2 // _feature_pad(cfg) * _feature_pad(cfg)
        self.sh.x_sym = f"{x}@{self.mp}"
        ysym = mem.symbols[f"{y}@{self.mp}"]
        for n0 in range(0, w.shape[0], cap):
            part = f"{name}[{n0}:]" if w.shape[0] > cap else name
            rows = min(cap, w.shape[0] - n0)
            self.sh.y_sym = f"{y}@{self.mp}" if n0 == 0 else f"{y}@{self.mp}[{n0}:]"
            if self.sh.y_sym not in mem.symbols:     # a view of the slot's rows n0..
                mem.symbols[self.sh.y_sym] = dataclasses.replace(
                    ysym, addr=ysym.addr + n0 * self.mp, shape=(ysym.shape[0] - n0, self.mp))
            cut = w.rows(slice(n0, n0 + rows)) if isinstance(w, QWeight) else w[n0:n0 + rows]
            k = lower_layer(cfg, part, self.mp, cut, sx * 127, sy * 127, self.cm.wformat,
                            group=self.cm.group, into=self.sh, requantize=self.cm.requantize)
            self.cm.kernels.setdefault(part, k)

    def rope(self, slot, heads, what):
        e, hd = self.e, self.m.head_dim
        tab = self.cm.memory.symbols["rope"]
        n = heads * hd
        ring = _Ring(hd, self.cfg.act_depth)
        for mi in range(self.tiles):
            # the cos/sin of the tile's positions: block(pos) + lane when decoding
            e.load(ACT, 0, tab.addr + mi * self.R, hd, tab.row_stride, f"{what} cos/sin",
                   pos_mult=int(self.rel()),
                   span=(tab.addr, tab.addr + hd * tab.row_stride) if self.rel() else None)
            a = ring.take(n)
            e.load(ACT, a, self.tile(slot, 0, mi), n, self.mp, f"{what} {mi}")
            for h in range(heads):
                e.sfu(SfuFunc.ROPE, a + h * hd, a + h * hd, hd, src2=0, shift=ROPE_SHIFT,
                      comment=f"{what} head {h}")
            e.store(ACT, a, self.tile(slot, 0, mi), n, self.mp, f"{what} {mi} out")

    def kv_append(self, li):
        e, hd, R = self.e, self.m.head_dim, self.R
        L = self.cm.max_len
        for g in range(self.m.num_key_value_heads):
            kc = self.cm.memory.symbols[f"L{li}.k{g}"]
            vc = self.cm.memory.symbols[f"L{li}.v{g}"]
            kspan = (kc.addr, kc.addr + kc.nbytes())
            vspan = (vc.addr, vc.addr + vc.nbytes())
            if not self.rel():
                for mi in range(self.tiles):
                    e.load(ACT, 0, self.tile("k", g * hd, mi), hd, self.mp, "k new")
                    e.store(ACT, 0, kc.addr + mi * R, hd, L, f"K cache {li}.{g} tile {mi}")
                    e.load(ACT, hd, self.tile("v", g * hd, mi), hd, self.mp, "v new")
                    e.sfu(SfuFunc.TRANSPOSE, hd, 2 * hd, hd, comment="v to position-major")
                    for b in range(hd // R):
                        e.store(ACT, 2 * hd + b * R, vc.addr + mi * R * hd + b * R, R, hd,
                                f"V cache {li}.{g} tile {mi} features {b * R}")
                continue
            # decode: the token's lane merged into the cache block of its position
            a, old, t1, t2 = 0, hd, 2 * hd, 3 * hd
            e.load(ACT, a, self.tile("k", g * hd, 0), hd, self.mp, "k new")
            e.load(ACT, old, kc.addr, hd, L, f"K cache {li}.{g} block", pos_mult=1, span=kspan)
            e.sfu(SfuFunc.MERGE, a, old, hd, src2=old, imm0=0, imm1=1, rel=1,
                  comment="k into its lane")
            e.store(ACT, old, kc.addr, hd, L, f"K cache {li}.{g} block", pos_mult=1,
                    span=kspan)
            e.load(ACT, a, self.tile("v", g * hd, 0), hd, self.mp, "v new")
            for b in range(hd // R):
                e.load(ACT, old + b * R, vc.addr + b * R, R, hd,
                       f"V cache {li}.{g} block features {b * R}", pos_mult=hd, span=vspan)
            e.sfu(SfuFunc.TRANSPOSE, old, t1, hd, comment="V block to feature-major")
            e.sfu(SfuFunc.MERGE, a, t1, hd, src2=t1, imm0=0, imm1=1, rel=1,
                  comment="v into its lane")
            e.sfu(SfuFunc.TRANSPOSE, t1, t2, hd, comment="V block back")
            for b in range(hd // R):
                e.store(ACT, t2 + b * R, vc.addr + b * R, R, hd,
                        f"V cache {li}.{g} block features {b * R}", pos_mult=hd, span=vspan)

    def attention(self, li, lp):
        e, cfg, hd = self.e, self.cfg, self.m.head_dim
        lanes = cfg.scale_lanes
        pm = np.zeros(pad_to(hd, lanes), np.int16)
        pm[:hd] = lp.pv[0]
        pa_addr = self.sh.put(f"L{li}.pv_mult", pm.reshape(-1, lanes))
        e.load(SCALE, 0, pa_addr, len(pm) // lanes, cfg.scale_entry_bytes, "P V multipliers")
        if self.rel():
            self._attention_decode(li, lp)
        else:
            self._attention_prefill(li, lp)

    def _kv(self, li, g):
        sy = self.cm.memory.symbols
        return sy[f"L{li}.k{g}"], sy[f"L{li}.v{g}"]

    def _head(self, wring, aring, qa, kc, vc, keys, q0, lp, what):
        """The accumulator address of one attention's output (its lanes' queries at qa)."""
        if keys <= min(self.cfg.acc_depth, self.cfg.wgt_depth):
            return self._head_whole(wring, aring, qa, kc, vc, keys, q0, lp, what)
        return self._head_chunked(wring, aring, qa, kc, vc, keys, q0, lp, what)

    def _attention_prefill(self, li, lp):
        """Lanes are tokens: each head and row tile of queries on its own, the causal mask
        per lane."""
        e, cfg, hd, R, C = self.e, self.cfg, self.m.head_dim, self.R, self.C
        rep = self.m.num_attention_heads // self.m.num_key_value_heads
        wring = _Ring(0, cfg.wgt_depth)
        aring = _Ring(0, cfg.act_depth)
        for h in range(self.m.num_attention_heads):
            kc, vc = self._kv(li, h // rep)     # GQA: the key/value head, shared, not copied
            for mi in range(self.tiles):
                qa = aring.take(hd)
                e.load(ACT, qa, self.tile("q", h * hd, mi), hd, self.mp, f"q head {h}")
                acc_o = self._head(wring, aring, qa, kc, vc, pad_to((mi + 1) * R, C), mi * R,
                                   lp, f"head {h}")
                oa = aring.take(hd)
                e.requant(acc_o, oa, 0, hd, lp.pv[1], None, False, comment=f"o head {h}")
                e.store(ACT, oa, self.tile("o", h * hd, mi), hd, self.mp, f"o head {h}")

    def _attention_decode(self, li, lp):
        """One token: the query heads that share a key/value head sit in lanes of one
        activation (BROADCAST the token's lane, MERGE each head into its lane), so each KV
        chunk streams once per group, not once per head; the softmax masks every lane at
        the token's position (``rel``). Each head's output is broadcast back to every lane,
        the token's among them."""
        e, cfg, hd, R = self.e, self.cfg, self.m.head_dim, self.R
        nh = self.m.num_attention_heads
        rep = nh // self.m.num_key_value_heads
        n = nh * hd
        qb, ob = 0, n                           # every head's query, every head's output
        wring = _Ring(0, cfg.wgt_depth)
        aring = _Ring(2 * n, cfg.act_depth)
        e.load(ACT, qb, self.tile("q", 0, 0), n, self.mp, "q")
        e.sfu(SfuFunc.BROADCAST, qb, qb, n, imm0=0, rel=1, comment="q to every lane")
        for g, t0 in itertools.product(range(nh // rep), range(0, rep, R)):
            heads = range(g * rep + t0, g * rep + min(rep, t0 + R))
            h0 = heads[0]
            qa = qb + h0 * hd
            for j, h in enumerate(heads[1:], 1):
                e.sfu(SfuFunc.MERGE, qb + h * hd, qa, hd, src2=qa, imm0=j, imm1=j + 1,
                      comment=f"q head {h} into lane {j}")
            kc, vc = self._kv(li, g)
            what = f"heads {h0}..{heads[-1]}"
            acc_o = self._head(wring, aring, qa, kc, vc, self.decode_len, 0, lp, what)
            oa = aring.take(hd)
            e.requant(acc_o, oa, 0, hd, lp.pv[1], None, False, comment=f"o {what}")
            for j, h in enumerate(heads):
                e.sfu(SfuFunc.BROADCAST, oa, ob + h * hd, hd, imm0=j,
                      comment=f"o head {h} from lane {j}")
        e.store(ACT, ob, self.tile("o", 0, 0), n, self.mp, "o")

    def _scores(self, ring, qa, kc, lo, hi, acc0, h):
        """Scores of keys lo..hi-1 (QK^T, the K^T cache's columns) into acc[acc0..]."""
        C, L = self.C, self.cm.max_len
        for kt in range(lo // C, hi // C):
            self._cache_matmul(ring, qa, kc.addr + kt * C, self.m.head_dim, L,
                               acc0 + kt * C - lo, f"scores {h} keys {kt * C}")

    def _pv(self, ring, pa, vc, lo, hi, acc0, accumulate, h):
        """P V over keys lo..hi-1 (the V cache's rows) into acc[acc0..acc0 + head_dim)."""
        hd, C = self.m.head_dim, self.C
        for ft in range(hd // C):
            self._cache_matmul(ring, pa, vc.addr + lo * hd + ft * C, hi - lo, hd,
                               acc0 + ft * C, f"P V {h} features {ft * C}", accumulate)

    def _head_whole(self, wring, aring, qa, kc, vc, keys, q0, lp, h):
        """One head's attention with the whole row of scores in the accumulators."""
        sm_mult, sm_shift = lp.softmax
        self._scores(wring, qa, kc, 0, keys, 0, h)
        pa = aring.take(keys)
        self.e.sfu(SfuFunc.SOFTMAX, 0, pa, keys, imm0=sm_mult, shift=sm_shift, causal=1,
                   imm1=q0, rel=int(self.rel()), comment=f"softmax {h}")
        # P V in pieces of at most half the weights, so one piece's V streams while the
        # piece before it multiplies
        step = max(self.C, self.cfg.wgt_depth // 2 // self.C * self.C)
        for lo in range(0, keys, step):
            self._pv(wring, pa + lo, vc, lo, min(keys, lo + step), 0, lo > 0, h)
        return 0

    def _head_chunked(self, wring, aring, qa, kc, vc, keys, q0, lp, h):
        """One head's attention over more keys than the accumulators hold: the softmax's
        three passes (maximum, sum, output) each over the row's chunks, the scores computed
        again for each pass; P V accumulates chunk by chunk after the scores' space. The
        probabilities equal the whole row's SOFTMAX bit for bit."""
        cfg, C = self.cfg, self.C
        sm_mult, sm_shift = lp.softmax
        acc_o = _chunk_keys(cfg, self.m.head_dim)
        n = -(-keys // acc_o)
        size = pad_to(-(-keys // n), C)
        chunks = [(lo, min(keys, lo + size)) for lo in range(0, keys, size)]
        for func in SOFTMAX_PASSES:
            what = func.name.removeprefix("SOFTMAX_").lower()
            for ci, (lo, hi) in enumerate(chunks):
                self._scores(wring, qa, kc, lo, hi, 0, h)
                first = func == SfuFunc.SOFTMAX_MAX and ci == 0
                imm0 = int(first) if func == SfuFunc.SOFTMAX_MAX else sm_mult
                pa = aring.take(hi - lo) if func == SfuFunc.SOFTMAX_OUT else 0
                self.e.sfu(func, 0, pa, hi - lo, imm0=imm0, shift=sm_shift, causal=1,
                           imm1=(q0 - lo) & 0xFFFF, rel=int(self.rel()),
                           comment=f"softmax {what} {h} keys {lo}")
                if func == SfuFunc.SOFTMAX_OUT:
                    self._pv(wring, pa, vc, lo, hi, acc_o, ci > 0, h)
        return acc_o

    def _cache_matmul(self, ring, act, addr, k, stride, acc, what, accumulate=False):
        """One systolic MATMUL whose weights are ``k`` rows of the KV cache at ``addr``
        (``cols`` bytes each, ``stride`` apart), loaded into the next space of ``ring``."""
        wa = ring.take(k)
        self.e.load(WGT, wa, addr, k, stride, what)
        self.e.matmul(act, wa, acc, k, accumulate, engine=Engine.SYSTOLIC, mode={},
                      channels=self.C, w_entries=k, comment=what)

    def add(self, x, y, params, what):
        e, n = self.e, self.m.hidden_size
        ma, mb, shift = params
        ring = _Ring(0, self.cfg.act_depth)
        for mi in range(self.tiles):
            a, b = ring.take(n), ring.take(n)
            e.load(ACT, a, self.tile(x, 0, mi), n, self.mp, f"{what} a")
            e.load(ACT, b, self.tile(y, 0, mi), n, self.mp, f"{what} b")
            e.sfu(SfuFunc.ADD, a, a, n, src2=b, imm0=ma & 0xFFFF, imm1=mb & 0xFFFF,
                  shift=shift, comment=what)
            e.store(ACT, a, self.tile(x, 0, mi), n, self.mp, f"{what} out")

    def act_mul(self, li, lp):
        e, n = self.e, self.m.intermediate_size
        R = self.R
        ta = self.sh.put(f"L{li}.act", lp.act.reshape(-1, R))
        e.load(ACT, 0, ta, TABLE_SIZE // R, self.cfg.act_entry_bytes, "activation table")
        e.sfu(SfuFunc.TABLE, 0, 0, TABLE_SIZE // R, comment="activation table")
        m, shift = lp.mul
        ring = _Ring(TABLE_SIZE // R, self.cfg.act_depth)
        for mi in range(self.tiles):
            a, b = ring.take(n), ring.take(n)
            e.load(ACT, a, self.tile("g", 0, mi), n, self.mp, "gate")
            e.sfu(SfuFunc.LOOKUP, a, a, n, comment="activation")
            e.load(ACT, b, self.tile("u", 0, mi), n, self.mp, "up")
            e.sfu(SfuFunc.MUL, a, a, n, src2=b, imm0=m & 0xFFFF, shift=shift,
                  comment="act(gate) * up")
            e.store(ACT, a, self.tile("a", 0, mi), n, self.mp, "gated")

    # --- the whole model --------------------------------------------------------------------
    def mark(self, slot, site):
        self.sites.append((len(self.e.s.insns), slot, site))

    def build(self):
        mark = self.mark
        for li, lp in enumerate(self.q.layers):
            self.norm("x", "h", lp.norm1, f"L{li}.input_norm")
            mark("h", f"{li}.h")
            for name, dst in (("q_proj", "q"), ("k_proj", "k"), ("v_proj", "v")):
                self.linear(f"L{li}.{name}", "h", dst, lp.linears[name])
            mark("v", f"{li}.v")
            self.rope("q", self.m.num_attention_heads, f"L{li} rope q")
            mark("q", f"{li}.q")
            self.rope("k", self.m.num_key_value_heads, f"L{li} rope k")
            mark("k", f"{li}.k")
            self.kv_append(li)
            self.attention(li, lp)
            mark("o", f"{li}.o")
            self.linear(f"L{li}.o_proj", "o", "y", lp.linears["o_proj"])
            mark("y", f"{li}.yo")
            self.add("x", "y", lp.add1, f"L{li} residual 1")
            mark("x", f"{li}.xa")
            self.norm("x", "h", lp.norm2, f"L{li}.post_norm")
            mark("h", f"{li}.h2")
            self.linear(f"L{li}.gate_proj", "h", "g", lp.linears["gate_proj"])
            mark("g", f"{li}.g")
            self.linear(f"L{li}.up_proj", "h", "u", lp.linears["up_proj"])
            mark("u", f"{li}.u")
            self.act_mul(li, lp)
            mark("a", f"{li}.a")
            self.linear(f"L{li}.down_proj", "a", "y", lp.linears["down_proj"])
            mark("y", f"{li}.yd")
            self.add("x", "y", lp.add2, f"L{li} residual 2")
            mark("x", f"{li}.xb")
        if self.cm.head:
            self.norm("x", "h", self.q.final_norm, "final_norm")
            mark("h", "hf")
            self.linear("lm_head", "h", "logits", self.q.lm_head)
            mark("logits", "logits")
        return self.e.s.program()


#: Positions the softmax's causal mask reaches (its query position is a signed 16-bit field).
MAX_LEN = 1 << 15


def _chunk_keys(cfg, hd):
    """The most keys of a chunk of a long softmax row: the accumulators hold its scores and
    the head's output, the weights two chunks of V."""
    return min(cfg.acc_depth - pad_to(hd, cfg.cols), cfg.wgt_depth // 2) // cfg.cols * cfg.cols


def check_fits(cfg, m, max_len):
    """CompileError unless model ``m`` (a ModelConfig) fits ``cfg`` with ``max_len``
    cache positions."""
    R, C = cfg.rows, cfg.cols
    hd = m.head_dim
    if not cfg.sfu:
        raise CompileError(f"config {cfg.name!r} has no special-function unit (sfu = true): "
                           f"a whole model needs it")
    if hd % R or hd % C:
        raise CompileError(f"head_dim {hd} must be a multiple of the array's rows ({R}) and "
                           f"columns ({C})")
    if max_len % C or max_len % cfg.bus_bytes:
        raise CompileError(f"max_len {max_len} must be a multiple of {max(C, cfg.bus_bytes)}")
    if max_len > min(cfg.acc_depth, cfg.wgt_depth) and _chunk_keys(cfg, hd) < C:
        raise CompileError(f"{cfg.name!r}'s accumulators ({cfg.acc_depth} entries) cannot "
                           f"hold a chunk of keys next to a head of {hd} features")
    n = m.num_attention_heads * hd
    row = min(max_len, cfg.acc_depth, cfg.wgt_depth)
    if 2 * n + row + hd > cfg.act_depth:
        raise CompileError(f"{cfg.name!r}'s activation scratchpad ({cfg.act_depth} entries) "
                           f"cannot hold a decode step's queries and outputs ({n} features "
                           f"each) and a row of {row} probabilities")
    need = 2 * max(m.hidden_size, m.intermediate_size) + TABLE_SIZE // R
    if need > cfg.act_depth:
        raise CompileError(f"{cfg.name!r}'s activation scratchpad ({cfg.act_depth} entries) "
                           f"cannot hold two rows of {max(m.hidden_size, m.intermediate_size)}"
                           f" features")


def compile_llm(config, qm: QuantModel, *, max_len=None, prefill=None, decode=None,
                wformat="int8", group=128, head=True, requantize=False,
                progress=None) -> CompiledLLM:
    """Programs for ``qm`` on ``config``: prefill buckets ``prefill`` (token counts,
    multiples of the array's rows) and decode buckets ``decode`` (cache lengths, the last
    one ``max_len``), over one memory image. ``head=False`` leaves out the final norm and
    the LM head: the programs end with the last layer's output in slot ``x``.

    Linear layers with float weights are quantized in ``wformat``; a model file's integer
    weights (compiler.qweight.QWeight) keep their codes, or with ``requantize`` are
    re-quantized where no engine of ``config`` holds them."""
    m = qm.config
    R, C = config.rows, config.cols
    max_len = max_len or min(m.max_position_embeddings, config.acc_depth)
    check_fits(config, m, max_len)
    Target(config).engine_for(weight_format(wformat))
    if max_len > MAX_LEN:
        raise CompileError(f"max_len {max_len}: the causal mask's positions reach {MAX_LEN}")
    prefill = buckets(2 * R, min(max_len, 8 * R)) if prefill is None else prefill
    decode = buckets(max(C, 16), max_len) if decode is None else decode
    for t in prefill:
        if t % R or t > max_len:
            raise CompileError(f"prefill bucket {t} must be a multiple of {R} and at most "
                               f"max_len {max_len}")
    mem = MemoryImage(bytearray())
    cm = CompiledLLM(config, m, qm, mem, {}, sorted(prefill), sorted(decode), max_len, wformat,
                     group, requantize, head)
    _plan_memory(cm, sorted(set(prefill) | {R}))
    jobs = [("prefill", t, t, None) for t in cm.prefill] + \
        [("decode", b, R, b) for b in cm.decode]
    for kind, n, mp, decode_len in jobs:
        if progress:
            progress(f"{kind} {n}")
        builder = _Builder(cm, mp, decode_len)
        cm.programs[f"{kind}{n}"] = builder.build()
        cm.sites[f"{kind}{n}"] = builder.sites
    return cm


def _feature_pad(cfg):
    """Slot rows are padded to every engine's output tile and activation group."""
    f = 1
    for eng in Engine:
        if eng.name.lower() in cfg.engines:
            es = spec(eng)
            f = math.lcm(f, es.channels(cfg), es.act_group)
    return f


def _plan_memory(cm, mps):
    """The RoPE table, the KV-cache arena and the activation slots (weights are added as
    the programs are built, once each)."""
    cfg, m, mem = cm.config, cm.model, cm.memory
    hd, L = m.head_dim, cm.max_len
    mem.write("rope", rope_table(np.arange(L), hd, m.rope_theta))
    for li in range(m.num_hidden_layers):
        for g in range(m.num_key_value_heads):
            mem.reserve(f"L{li}.k{g}", (hd, L), np.int8, row_stride=L)
            mem.reserve(f"L{li}.v{g}", (L, hd), np.int8, row_stride=hd)
    fp = _feature_pad(cfg)
    sizes = {"x": m.hidden_size, "h": m.hidden_size, "y": m.hidden_size,
             "q": m.num_attention_heads * hd, "o": m.num_attention_heads * hd,
             "k": m.num_key_value_heads * hd, "v": m.num_key_value_heads * hd,
             "g": m.intermediate_size, "u": m.intermediate_size, "a": m.intermediate_size,
             "logits": m.vocab_size}
    for mp in mps:
        for name, n in sizes.items():
            mem.reserve(f"{name}@{mp}", (pad_to(n, fp), mp), np.int8, row_stride=mp)
