"""The special-function unit: norms, softmax, a function table, RoPE, element-wise ops and
transposes, over ``rows`` lanes in parallel, in the compute queue.

The arithmetic is sw/sfu.py's, bit for bit (docs/sfu.md). An instruction makes passes over
its entries, reading one scratchpad entry per cycle:

- a statistics pass (the norms' sums, the softmax's maximum; the softmax's second pass, the
  sum of its exponentials), each lane keeping its own;
- for norms and softmax, a scalar phase: each lane's integer square root (two bits a cycle)
  and a reciprocal by long division (a bit a cycle), all lanes in lockstep;
- an output pass: an item's operands (1, 2 or 4 reads: ``a``; ``a, b``; ``x, y, cos, sin``)
  go through three stages (A: first products; B: second products, the table's read, the
  exponential; C: rounding and clamping) into the activations. A TRANSPOSE block is read
  whole, then written a column a cycle, while reading waits.

A softmax row longer than the accumulators runs its passes as separate instructions over
chunks of the row (SOFTMAX_MAX, SOFTMAX_SUM, SOFTMAX_OUT): the lanes' maximum and sum stay in
their registers between them, and SOFTMAX_OUT does the reciprocal before its output pass.
"""

import math

from amaranth import Array, Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from .isa import SfuFunc, SfuInsn
from .requant import lean_shift, rne_sat_parts

__all__ = ["Sfu", "EXP2", "EXP_FRAC_BITS", "D_MAX", "NORM_BITS", "SHIFT_MAX", "TABLE_SIZE"]

# The arithmetic's constants (sw/sfu.py states the ops with them)
#: The exponential's argument is in units of 2**-EXP_FRAC_BITS of a power of two.
EXP_FRAC_BITS = 6
#: Largest exponent argument: 2**-16 of the row's maximum is below an output step.
D_MAX = (16 << EXP_FRAC_BITS) - 1
#: 2**15 * 2**(-f / 64), rounded to nearest: the fraction's table (EXP2[0] = 2**15).
EXP2 = tuple(int(math.floor(2 ** 15 * 2 ** (-f / (1 << EXP_FRAC_BITS)) + 0.5))
             for f in range(1 << EXP_FRAC_BITS))
#: The norms' reciprocal has this many fraction bits above the square root's: r in
#: (2**NORM_BITS, 2**(NORM_BITS + 1)].
NORM_BITS = 14
#: Any shift at or above this turns every product the unit makes into 0 (they are below
#: 2**61 in magnitude), so the shifters stop here.
SHIFT_MAX = 62
#: Entries of the function table (one per int8 input).
TABLE_SIZE = 256

#: isqrt's operand bits (the layer norm's N*Q - S^2 + eps stays below 2**47)
V_BITS = 48
#: the reciprocals' long division: quotient bits, and each one's start remainder (what is
#: left of 2**38 and 2**31 once the quotient bits known to be 0 are done)
DIV_STEPS = 17
NORM_REM0 = 1 << (NORM_BITS + 24 - DIV_STEPS)
SOFTMAX_REM0 = 1 << (31 - DIV_STEPS)
#: the square root's digits: bit pairs from 2**46 down
SQRT_STEPS = V_BITS // 2


def _sat8(m, p, shift, name):
    """clamp(rne(p, shift), -128, 127) for signed ``p``, ``shift`` < 64."""
    q, up = rne_sat_parts(m, p, shift, name)
    s = Signal(signed(10), name=f"{name}_s")
    m.d.comb += s.eq(q + up)
    return Mux(s > 127, 127, Mux(s < -128, -128, s))[:8]


def _bitlen(v, width):
    """The bit length of unsigned ``v`` (0 for 0)."""
    out = Const(0, range(width + 1))
    for i in range(width):
        out = Mux(v[i], i + 1, out)
    return out


class Sfu(wiring.Component):
    """``start`` (a pulse) begins the instruction ``insn`` (held until ``done``); ``done``
    stays up from its last write until the next start. The scratchpad ports read with a
    cycle's latency (data the cycle after ``*_en``)."""

    def __init__(self, cfg):
        self._cfg = cfg
        R = cfg.rows
        super().__init__({
            "start": In(1), "insn": In(SfuInsn),
            "done": Out(1), "busy": Out(1),
            "act_addr": Out(16), "act_en": Out(1), "act_data": In(8 * R),
            "acc_addr": Out(16), "acc_en": Out(1), "acc_data": In(32 * R),
            "scale_addr": Out(16), "scale_en": Out(1), "scale_data": In(8 * cfg.bus_bytes),
            "wr_addr": Out(16), "wr_data": Out(8 * R), "wr_en": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        cfg = self._cfg
        R = cfg.rows
        rb = (R - 1).bit_length()
        lanes = cfg.scale_lanes
        lane_bits = lanes.bit_length() - 1
        insn = self.insn
        f = insn.func
        is_ = {fn: Signal(name=f"is_{fn.name.lower()}") for fn in SfuFunc}
        m.d.comb += [is_[fn].eq(f == fn) for fn in SfuFunc]
        norm = is_[SfuFunc.RMSNORM] | is_[SfuFunc.LAYERNORM]
        # the softmax's passes: SOFTMAX makes them all; a chunked row one per instruction
        smax, ssum, sout = (is_[SfuFunc.SOFTMAX_MAX], is_[SfuFunc.SOFTMAX_SUM],
                            is_[SfuFunc.SOFTMAX_OUT])
        whole = is_[SfuFunc.SOFTMAX]
        soft = whole | smax | ssum | sout
        # the lanes' maximum and sum start afresh
        fresh = whole | (smax & insn.imm0[0])
        pair = is_[SfuFunc.MUL] | is_[SfuFunc.ADD] | is_[SfuFunc.MERGE]
        rope, trans, table = is_[SfuFunc.ROPE], is_[SfuFunc.TRANSPOSE], is_[SfuFunc.TABLE]
        count = insn.count
        half = count >> 1

        # --- control: passes over the entries, then a scalar phase -----------------------
        STAT1, STAT2, OUT = 0, 1, 2
        phase = Signal(2)
        IDLE, READ, DRAIN, SCALAR, DONE = range(5)
        state = Signal(range(5))
        it = Signal(16)         # the item being read
        sub = Signal(max(2, rb + 1))    # its read
        hold = Signal()         # a TRANSPOSE block is being written: no reads
        items = Mux(rope, half, Mux(trans, count >> rb, count))
        subs = Mux(pair, 2, Mux(rope, 4, Mux(trans, R, 1)))
        last_sub = sub == subs - 1
        issue = (state == READ) & ~hold
        m.d.comb += [self.busy.eq((state != IDLE) & (state != DONE)),
                     self.done.eq(state == DONE)]

        # read addresses: ROPE reads x_i, x_{i+h}, cos_i, sin_i; the pairs a_n, b_n; a
        # TRANSPOSE block its rows
        base = Mux((rope & sub[1]) | (pair & sub[0]), insn.src2, insn.src)
        off = Mux(rope & sub[0], half, 0) + Mux(trans, (it << rb) | sub, it)
        rd_addr = (base + off)[:16]
        sidx = (insn.src2 + it)[:16]
        m.d.comb += [self.act_addr.eq(rd_addr), self.acc_addr.eq(rd_addr),
                     self.act_en.eq(issue & ~soft), self.acc_en.eq(issue & soft),
                     self.scale_addr.eq(sidx >> lane_bits),
                     self.scale_en.eq(issue & norm & (phase == OUT))]

        # stage 1: the read's data is here
        v1, last1, sub1 = Signal(), Signal(), Signal.like(sub)
        it1 = Signal(16)
        lane1 = Signal(max(1, lane_bits))
        m.d.sync += [v1.eq(issue), last1.eq(last_sub), sub1.eq(sub), it1.eq(it),
                     lane1.eq(sidx[:max(1, lane_bits)] if lane_bits else 0)]
        # stages A and B, then C (the write)
        vA, vB = Signal(), Signal()
        itA, itB = Signal(16), Signal(16)
        out_pass = phase == OUT
        m.d.sync += [vA.eq(v1 & last1 & (soft & (phase == STAT2) | out_pass)
                           & ~trans & ~table),
                     vB.eq(vA), itA.eq(it1), itB.eq(itA)]
        rope2 = Signal()            # ROPE's second write is next
        rope2_addr = Signal(16)
        rope2_data = Signal(8 * R)
        tw = Signal()               # a TRANSPOSE block is being written
        tw_col = Signal(rb + 1)
        tw_it = Signal(16)
        pipe_empty = ~(v1 | vA | vB | rope2 | tw)

        with m.Switch(state):
            with m.Case(IDLE, DONE):
                with m.If(self.start):
                    # SOFTMAX_OUT begins with the scalar phase (the reciprocal), from DRAIN
                    m.d.sync += [state.eq(Mux(sout, DRAIN, READ)), it.eq(0), sub.eq(0),
                                 phase.eq(Mux(ssum | sout, STAT2,
                                              Mux(norm | whole | smax, STAT1, OUT)))]
            with m.Case(READ):
                with m.If(issue):
                    with m.If(last_sub):
                        m.d.sync += [sub.eq(0), it.eq(it + 1), hold.eq(trans)]
                        with m.If(it + 1 == items):
                            m.d.sync += state.eq(DRAIN)
                    with m.Else():
                        m.d.sync += sub.eq(sub + 1)
            with m.Case(DRAIN):
                with m.If(pipe_empty):
                    m.d.sync += [it.eq(0), sub.eq(0)]
                    with m.If((phase == OUT) | smax | (ssum & (phase == STAT2))):
                        m.d.sync += state.eq(DONE)
                    with m.Elif(whole & (phase == STAT1)):
                        m.d.sync += [phase.eq(STAT2), state.eq(READ)]
                    with m.Else():
                        m.d.sync += state.eq(SCALAR)
        scalar_start = (state == DRAIN) & pipe_empty & (phase != OUT) \
            & ~(soft & (phase == STAT1)) & ~ssum
        scalar_done = Signal()
        with m.If((state == SCALAR) & scalar_done):
            m.d.sync += [state.eq(READ), phase.eq(OUT)]

        # --- the lanes ---------------------------------------------------------------
        data = self.act_data
        gamma = self.scale_data.word_select(lane1, 16).as_signed() if lanes > 1 else \
            self.scale_data[:16].as_signed()
        # the operands of an item: the earlier reads in registers, the last one live
        ops = [Signal(8 * R, name=f"op{k}") for k in range(3)]
        with m.If(v1 & ~last1):
            m.d.sync += Array(ops)[sub1[:2]].eq(data)
        tb = [Signal(8 * R, name=f"tb{j}") for j in range(R)]     # a TRANSPOSE block
        with m.If(v1 & trans):
            m.d.sync += Array(tb)[sub1[:rb] if rb else 0].eq(data)

        # the function table: a copy per lane, entry e holding bytes eR .. eR + R - 1
        tdepth = TABLE_SIZE // R
        tables = []
        for i in range(R):
            m.submodules[f"table{i}"] = mem = Memory(shape=unsigned(8 * R), depth=tdepth,
                                                    init=[])
            wp, rp = mem.write_port(), mem.read_port()
            m.d.comb += [wp.addr.eq(it1), wp.data.eq(data), wp.en.eq(v1 & table)]
            tables.append(rp)

        # scalar phase: a counter and its sub-phases
        sc = Signal(range(SQRT_STEPS + DIV_STEPS + 4))
        SQ0 = 1                         # sqrt steps 1 .. SQRT_STEPS
        DV_PREP = SQ0 + SQRT_STEPS      # the divisor and the shift
        DV0 = DV_PREP + 1               # division steps
        DV_END = DV0 + DIV_STEPS
        with m.If(scalar_start):
            m.d.sync += sc.eq(Mux(soft, DV_PREP, 0))
        with m.Elif(state == SCALAR):
            m.d.sync += sc.eq(sc + 1)
        m.d.comb += scalar_done.eq(sc == DV_END)
        sq_bit = Signal(V_BITS)         # the square root's digit (every lane's)
        with m.If(sc == 0):
            m.d.sync += sq_bit.eq(1 << (V_BITS - 2))
        with m.Elif((sc >= SQ0) & (sc < DV_PREP)):
            m.d.sync += sq_bit.eq(sq_bit >> 2)
        in_sqrt = (state == SCALAR) & (sc >= SQ0) & (sc < DV_PREP)
        in_div = (state == SCALAR) & (sc >= DV0) & (sc < DV_END)

        # BROADCAST's source lane (imm0 mod rows)
        picked = data.word_select(insn.imm0[:rb], 8).as_signed() if rb else data[:8].as_signed()
        outs, outs2 = [], []
        for lane in range(R):
            # (a lane reads what is built above)
            out, out2 = self._lane(m, lane, locals())
            outs.append(out)
            outs2.append(out2)

        # --- writes: C's result, ROPE's second half, TRANSPOSE's columns ---------------
        m.d.sync += [rope2.eq(vB & rope), rope2_addr.eq((insn.dst + half + itB)[:16]),
                     rope2_data.eq(Cat(*outs2))]
        with m.If(v1 & trans & last1):
            m.d.sync += [tw.eq(1), tw_col.eq(0), tw_it.eq(it1)]
        with m.If(tw):
            m.d.sync += tw_col.eq(tw_col + 1)
            with m.If(tw_col == R - 1):
                m.d.sync += [tw.eq(0), hold.eq(0)]
        col = Cat(*(Array(tb[j].word_select(i, 8) for i in range(R))[tw_col[:rb] if rb else 0]
                    for j in range(R)))
        with m.If(tw):
            m.d.comb += [self.wr_en.eq(1), self.wr_data.eq(col),
                         self.wr_addr.eq((insn.dst + (tw_it << rb) + tw_col)[:16])]
        with m.Elif(rope2):
            m.d.comb += [self.wr_en.eq(1), self.wr_data.eq(rope2_data),
                         self.wr_addr.eq(rope2_addr)]
        with m.Else():
            m.d.comb += [self.wr_en.eq(vB & (phase == OUT)), self.wr_data.eq(Cat(*outs)),
                         self.wr_addr.eq((insn.dst + itB)[:16])]
        return m

    def _lane(self, m, lane, x):
        """One lane's statistics, scalar phase and stages A-C; returns its two output bytes
        (the second one ROPE's upper half)."""
        insn, data, ops, v1, it1, phase = (x[k] for k in ("insn", "data", "ops", "v1", "it1",
                                                           "phase"))
        norm, soft, rope, is_, vA, vB = (x[k] for k in ("norm", "soft", "rope", "is_", "vA",
                                                        "vB"))
        STAT1, STAT2, DV_PREP, rb = x["STAT1"], x["STAT2"], x["DV_PREP"], x["rb"]
        sc, sq_bit, in_sqrt, in_div = x["sc"], x["sq_bit"], x["in_sqrt"], x["in_div"]
        n = f"l{lane}"

        def byte(v):
            return v.word_select(lane, 8).as_signed()
        a_live = byte(data)
        acc_live = self.acc_data.word_select(lane, 32).as_signed()
        # --- statistics -------------------------------------------------------------------
        s1 = Signal(signed(26), name=f"{n}_s1")     # sum of x
        s2 = Signal(unsigned(32), name=f"{n}_s2")   # sum of x^2
        mx = Signal(signed(32), name=f"{n}_max")
        total = Signal(unsigned(32), name=f"{n}_sum")   # sum of the exponentials
        key = Cat(it1, Const(0, 1)).as_signed()
        # with rel every lane is the current token (a decode step's query heads)
        valid1 = ~insn.causal | (key <= insn.imm1.as_signed() + Mux(insn.rel, 0, lane))
        with m.If(self.start):
            m.d.sync += [s1.eq(0), s2.eq(0)]
            with m.If(x["fresh"]):
                m.d.sync += [mx.eq(-(1 << 31)), total.eq(0)]
        with m.Elif(v1 & (phase == STAT1)):
            with m.If(norm):
                m.d.sync += [s1.eq(s1 + a_live), s2.eq(s2 + a_live * a_live)]
            with m.If(soft & valid1 & (acc_live > mx)):
                m.d.sync += mx.eq(acc_live)

        # --- scalar phase: v, its square root, the reciprocal ---------------------------
        rem = Signal(V_BITS, name=f"{n}_rem")
        res = Signal(V_BITS // 2 + 1, name=f"{n}_res")
        ln = is_[SfuFunc.LAYERNORM]
        v = Mux(ln, insn.count * s2 - s1 * s1, s2) + insn.imm0
        with m.If(sc == 0):
            m.d.sync += [rem.eq(v), res.eq(0)]
        with m.Elif(in_sqrt):
            t = res + sq_bit
            with m.If(rem >= t):
                m.d.sync += [rem.eq(rem - t), res.eq((res >> 1) + sq_bit)]
            with m.Else():
                m.d.sync += res.eq(res >> 1)
        s = Mux(res == 0, 1, res)[:24]
        b = _bitlen(s, 24)
        drem = Signal(34, name=f"{n}_drem")
        dq = Signal(DIV_STEPS, name=f"{n}_dq")
        dd = Signal(32, name=f"{n}_dd")
        recip = Signal(DIV_STEPS, name=f"{n}_r")
        sh = Signal(6, name=f"{n}_sh")
        with m.If(x["state"] == x["SCALAR"]):
            with m.If(sc == DV_PREP):
                m.d.sync += [dq.eq(0)]
                with m.If(soft):
                    m.d.sync += [dd.eq(total), drem.eq(SOFTMAX_REM0)]
                with m.Else():
                    tot = insn.shift + NORM_BITS + b
                    m.d.sync += [dd.eq(s << (Const(24, 5) - b)[:5]), drem.eq(NORM_REM0),
                                 sh.eq(Mux(tot > SHIFT_MAX, SHIFT_MAX, tot))]
            with m.Elif(in_div):
                r2 = drem << 1
                with m.If(r2 >= dd):
                    m.d.sync += [drem.eq(r2 - dd), dq.eq(Cat(1, dq))]
                with m.Else():
                    m.d.sync += [drem.eq(r2), dq.eq(Cat(0, dq))]
            with m.If(x["scalar_done"]):
                m.d.sync += recip.eq(Mux(soft & (total == 0), 0, dq))

        # --- stage A: first products ------------------------------------------------------
        a0, a1, a2 = byte(ops[0]), byte(ops[1]), byte(ops[2])
        imm0, imm1 = insn.imm0.as_signed(), insn.imm1.as_signed()
        pA = Signal(signed(51), name=f"{n}_pA")
        pA2 = Signal(signed(18), name=f"{n}_pA2")
        validA = Signal(name=f"{n}_validA")
        low = Signal(max(1, rb), name=f"{n}_low")   # the table entry's byte
        c = Mux(is_[SfuFunc.LAYERNORM], insn.count * a_live - s1, a_live)
        with m.If(v1):
            m.d.sync += validA.eq(valid1)
            with m.If(norm):
                m.d.sync += pA.eq(c * x["gamma"])
            with m.Elif(soft):
                m.d.sync += pA.eq((mx - acc_live) * insn.imm0)
            with m.Elif(is_[SfuFunc.MUL]):
                m.d.sync += pA.eq(a0 * a_live * imm0)
            with m.Elif(is_[SfuFunc.ADD]):
                m.d.sync += pA.eq(a0 * imm0 + a_live * imm1)
            with m.Elif(is_[SfuFunc.MERGE]):
                inside = (lane >= insn.imm0) & (lane < insn.imm1)
                m.d.sync += pA.eq(Mux(inside, a0, a_live))
            with m.Elif(is_[SfuFunc.BROADCAST]):
                m.d.sync += pA.eq(x["picked"])
            with m.Elif(rope):      # x = ops0, y = ops1, cos = ops2, sin = live
                m.d.sync += [pA.eq(a0 * a2 - a1 * a_live), pA2.eq(a1 * a2 + a0 * a_live)]
        # the table's read (LOOKUP): entry (x + 128) >> rb, byte (x + 128) % R
        idx = a_live.as_unsigned() ^ 0x80
        tab = x["tables"][lane]
        # read only for a LOOKUP: the table's read data stays what it was (0 from reset in
        # simulation) instead of an unwritten entry's
        m.d.comb += [tab.addr.eq(idx >> rb), tab.en.eq(v1 & is_[SfuFunc.LOOKUP])]
        if rb:
            m.d.sync += low.eq(idx[:rb])

        # --- stage B: second products, the exponential, the table byte -------------------
        pB = Signal(signed(58), name=f"{n}_pB")
        pB2 = Signal(signed(18), name=f"{n}_pB2")
        eB = Signal(16, name=f"{n}_eB")
        cur, guard, sticky, fits, _ = lean_shift(m, pA, insn.shift, 11, f"{n}_d")
        q_ok = fits & ~cur[10]
        d = Signal(11, name=f"{n}_d")
        m.d.comb += d.eq(Mux(q_ok, cur[:10] + (guard & (sticky | cur[0])), D_MAX + 1))
        dcap = Mux(d > D_MAX, D_MAX, d)[:10]
        frac = Array(Const(e, 16) for e in EXP2)[dcap[:EXP_FRAC_BITS]]
        with m.If(vA):
            m.d.sync += [pB2.eq(pA2), eB.eq(Mux(validA, frac >> dcap[EXP_FRAC_BITS:], 0))]
            with m.If(norm):
                m.d.sync += pB.eq(pA * recip)
            with m.Elif(is_[SfuFunc.LOOKUP]):
                m.d.sync += pB.eq(tab.data.word_select(low, 8).as_signed() if rb
                                  else tab.data[:8].as_signed())
            with m.Else():
                m.d.sync += pB.eq(pA)
        with m.If(vB & soft & (phase == STAT2)):
            m.d.sync += total.eq(total + eB)

        # --- stage C: rounding and clamping ----------------------------------------------
        shC = Mux(norm, sh, insn.shift)
        out = Signal(8, name=f"{n}_out")
        prob = eB * recip           # < 2**32
        pq = prob[24:] + (prob[23] & (prob[:23].any() | prob[24]))
        with m.If(soft):
            m.d.comb += out.eq(Mux(pq > 127, 127, pq))
        with m.Elif(is_[SfuFunc.LOOKUP] | is_[SfuFunc.MERGE] | is_[SfuFunc.BROADCAST]):
            m.d.comb += out.eq(pB[:8])
        with m.Else():
            m.d.comb += out.eq(_sat8(m, pB, shC, f"{n}_c"))
        return out, _sat8(m, pB2, insn.shift, f"{n}_c2")
