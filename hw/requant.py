"""Requant/vector unit: per-channel scale, shift with round-half-to-even, residual, clamp."""

from amaranth import Cat, Const, Module, Signal, Mux, Value, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from .config import REQUANT_MULT_BITS
from .dsp import registered_product
from .lib import registered

__all__ = ["RequantUnit", "LaneSerialRequant", "make_requant", "requant_in_layout",
           "rne_sat_parts", "rne_wrap_parts", "lean_shift", "gather_groups", "split_product"]


#: Bits of the requant unit's shifted value: a quotient outside the signed 9-bit range
#: [-256, 255] clamps to the same int8 as the range's end after the rounding increment
#: (0 or 1) and a residual in [-128, 127] (255 - 128 >= 127, -256 + 1 + 127 <= -128).
Q_BITS = 9


def split_product(m, platform, a, mult, name, en=None):
    """``a * mult`` (``a`` 32 bits, ``mult`` signed 16) from the products of ``a``'s 16-bit
    halves, one MULT18X18D each: ``a`` and ``mult`` are registered, then the halves'
    products (``hw.dsp.registered_product``, loaded while ``en``). Returns their sum:
    comb, two registers later than ``a`` and ``mult``."""
    a = Value.cast(a)
    lo = registered_product(m, platform, a[:16], mult, f"{name}_lo", en=en)
    hi = registered_product(m, platform, a[16:].as_signed(), mult, f"{name}_hi", en=en)
    return (hi << 16) + lo


def lean_shift(m, p, shift, bits, name, split=None):
    """Comb: a right shifter built for the ``bits`` low bits of ``p >> shift`` that are
    kept: its stages go from the largest shift (32) to the smallest (1), each keeping only
    the ``bits + 2**k - 1`` low bits the later stages still need. A stage that shifts hands
    its shifted-out bits on as the guard (the top one) and the sticky bit (the others, and
    the guard before), so the rounding needs no masks. Returns ``(cur, guard, sticky,
    fits)``: ``cur`` the kept bits, ``fits`` that the bits dropped off the top all equal
    the sign (the quotient fits ``bits`` signed bits).

    ``split = (k, reg, late_shift)`` puts a register after the stage of shift ``2**k``:
    ``reg(value, name)`` returns a registered copy of ``value``; the stages below use
    ``late_shift``, the shift amount one register later. ``k`` and ``late_shift`` may be
    tuples (from the largest ``k``): a register after each of those stages, the stages
    after the i-th using ``late_shift[i]``."""
    p = Value.cast(p)
    W = len(p)
    sign = p[W - 1]
    cur = p.as_unsigned()
    guard, sticky, fits = Const(0, 1), Const(0, 1), Const(1, 1)
    points, shifts = (), ()
    if split is not None:
        points, shifts = split[0], split[2]
        if not isinstance(points, tuple):
            points, shifts = (points,), (shifts,)
    for k in reversed(range(len(shift))):
        if k + 1 in points:
            i = points.index(k + 1)
            reg = split[1]
            tag = "m" if len(points) == 1 else f"m{i}"
            cur, guard, sticky, fits, sign = (reg(v, f"{name}_{x}")
                                              for v, x in ((cur, f"{tag}id"), (guard, f"{tag}guard"),
                                                           (sticky, f"{tag}sticky"),
                                                           (fits, f"{tag}fits"), (sign, f"{tag}sign")))
            shift = shifts[i]
        sh = 1 << k
        keep = bits + sh - 1            # what the stages after this one still need
        n = len(cur)
        ext = Cat(cur, sign.replicate(sh + keep))
        res = Mux(shift[k], ext[sh:sh + n], cur)
        out = ext[:sh]                   # the bits this stage shifts out, if it shifts
        g, st, f = (Signal(name=f"{name}_{x}{k}") for x in ("guard", "sticky", "fits"))
        c = Signal(min(n, keep), name=f"{name}_sh{k}")
        below = out[:sh - 1].any() if sh > 1 else 0
        m.d.comb += [g.eq(Mux(shift[k], out[sh - 1], guard)),
                     st.eq(Mux(shift[k], sticky | guard | below, sticky)),
                     f.eq(fits & ((res[keep:] == sign.replicate(n - keep)) if n > keep else 1)),
                     c.eq(res[:keep])]
        guard, sticky, fits, cur = g, st, f, c
    return cur, guard, sticky, fits, sign


def rne_sat_parts(m, p, shift, name, split=None):
    """Comb: ``(q, up)``: ``q`` the floor quotient ``p >> shift`` saturated to ``Q_BITS``
    signed bits, ``up`` the round-half-to-even increment (``shift`` <= 63), so that
    ``q + up`` saturates ``sw.golden.rne_shift(p, shift)``; from the lean shifter (183
    iCE40 LUTs for a 48-bit product, against 439 for masks over a full 64-bit shifter): the
    quotient fits when the bits dropped off the top equal the sign. ``split`` registers
    the shifter halfway (``lean_shift``)."""
    cur, guard, sticky, fits, sign = lean_shift(m, p, shift, Q_BITS, name, split)
    fits = fits & (cur[Q_BITS - 1] == sign)
    hi, lo = (1 << (Q_BITS - 1)) - 1, -(1 << (Q_BITS - 1))
    q = Mux(fits, cur[:Q_BITS].as_signed(), Mux(sign, lo, hi))
    return q, guard & (sticky | cur[0])


def rne_wrap_parts(m, p, shift, bits, name, split=None):
    """Comb: ``(q, up)`` for a result wrapped to ``bits`` bits (``shift`` <= 63): ``q`` is
    the low ``bits`` of ``p >> shift`` (floor), ``up`` the round-half-to-even increment, so
    ``(q + up) mod 2**bits`` is ``sw.golden.rne_shift(p, shift)`` wrapped, from the lean
    shifter (``split`` registers it halfway, see ``lean_shift``)."""
    cur, guard, sticky, _, _ = lean_shift(m, p, shift, bits, name, split)
    return cur[:bits], guard & (sticky | cur[0])


def gather_groups(m, take, payload, groups, name):
    """Collects ``groups`` successive ``payload`` values, first in the lowest bits (a lane
    group's results into a whole entry). Returns ``(value, index, last)``: ``index`` is the
    group the next take fills, ``last`` says this take fills the final one."""
    payload = Value.cast(payload)
    width = len(payload)
    value = Signal(width * groups, name=f"{name}_value")
    index = Signal(range(groups), name=f"{name}_index")
    last = take & (index == groups - 1)
    with m.If(take):
        m.d.sync += [value.word_select(index, width).eq(payload),
                     index.eq(Mux(index == groups - 1, 0, index + 1))]
    return value, index, last


def requant_in_layout(rows):
    return data.StructLayout({
        "acc": data.ArrayLayout(signed(32), rows),
        "mult": signed(16),
        "res": data.ArrayLayout(signed(8), rows),
        "shift": 6,
        "residual": 1,
        "relu": 1,
    })


def requant_signature(rows):
    """Both requant units' ports: an accumulator entry in, ``rows`` int8 out, ``idle``."""
    return {
        "i": In(stream.Signature(requant_in_layout(rows))),
        "o": Out(stream.Signature(data.ArrayLayout(signed(8), rows))),
        "idle": Out(1),
    }


class RequantUnit(wiring.Component):
    """Three-stage pipeline over ``rows`` lanes: one accumulator entry per cycle (products;
    shift and rounding decision; round, residual and clamp). With ``mult_bits`` < 16 the
    products take ``16 / mult_bits`` cycles (``acc x mult_bits`` partial products, no wide
    multiplier) and an entry is taken every ``16 / mult_bits + 1`` cycles.

    ``deep`` (for high clocks, with ``mult_bits`` 16) adds seven registers: two on the
    inputs (the first in the fabric, where the scratchpads' reads arrive; the second, on an
    ECP5, the DSP blocks' own input registers, as the products' are), between the products of
    the accumulator's 16-bit halves and their sum, after the shifter's shifts
    by 32 and by 8 (three segments), and between the rounded sum and the clamp (ten
    stages).

    ``late_res`` (with ``deep``): the residual comes on ``res_late``, a cycle after its
    entry (``i``'s ``res`` is not used): the caller registers it from its block RAMs first.
    Only for a caller whose output is always ready (the pipeline never stalls).

    ``q = clamp(rne(acc * mult, shift) + (res if residual), relu ? 0 : -128, 127)``, exactly
    as ``sw.golden.requant``.
    """

    def __init__(self, *, rows, mult_bits=16, deep=False, late_res=False):
        assert mult_bits in REQUANT_MULT_BITS
        self._rows, self._mult_bits = rows, mult_bits
        self._deep = deep and mult_bits == 16
        self._late_res = late_res
        assert not late_res or self._deep
        members = requant_signature(rows)
        if late_res:
            members["res_late"] = In(data.ArrayLayout(signed(8), rows))
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        R = self._rows
        adv = self.o.ready | ~self.o.valid
        deep = self._deep
        inner = []      # the deep pipeline's extra stages' valid bits

        def reg(value, name, reset=False):      # advancing with the pipeline
            return registered(m, value, name, en=adv, reset=reset)

        # stage 1: products
        v1 = Signal()
        res1 = Signal(data.ArrayLayout(signed(8), R))
        shift1, residual1, relu1 = Signal(6), Signal(), Signal()

        def side_of(p):     # what stage 1 carries beside the products
            return [(res1, p.res), (shift1, p.shift), (residual1, p.residual),
                    (relu1, p.relu)]
        side = side_of(self.i.payload)
        if self._mult_bits == 16:
            prod = [Signal(signed(48), name=f"prod{i}") for i in range(R)]
            m.d.comb += self.i.ready.eq(adv)
            inp, valid = self.i.payload, self.i.valid
            if deep:        # inputs registered twice; the halves' products registered
                # first in the fabric, where the entry leaves the scratchpads (their block
                # RAMs' outputs and the lane and bank multiplexers behind them would go
                # straight into the DSP blocks' input registers otherwise)
                inner += [reg(valid, "v_in0", reset=True)]
                inp = data.View(inp.shape(), reg(inp, "in0"))
                valid, side = inner[-1], side_of(inp)
                if self._late_res:      # the residual comes a cycle after the entry
                    side[0] = (res1, self.res_late)
                inner += [reg(valid, "v_in", reset=True)]
                inner += [reg(inner[-1], "v_part", reset=True)]
                valid = inner[-1]
                # (the operands' and the halves' products' registers: in the DSP blocks
                # on an ECP5)
                products = [split_product(m, platform, inp.acc[i], inp.mult, f"prod{i}",
                                          en=adv) for i in range(R)]
                side = [(r, reg(reg(v, f"side_in{k}"), f"side_part{k}"))
                        for k, (r, v) in enumerate(side)]
            else:
                products = [inp.acc[i] * inp.mult for i in range(R)]
            with m.If(adv):
                m.d.sync += v1.eq(valid)
                m.d.sync += [prod[i].eq(products[i]) for i in range(R)]
                m.d.sync += [r.eq(v) for r, v in side]
        else:
            prod = self._serial_products(m, adv, v1, side)

        # stage 2: shift, and whether rounding half to even goes up (deep: in two)
        v2 = Signal()
        q2 = [Signal(signed(Q_BITS), name=f"q{i}") for i in range(R)]
        up2 = Signal(R)
        res2 = Signal(data.ArrayLayout(signed(8), R))
        residual2, relu2 = Signal(), Signal()
        v_s, res_s, residual_s, relu_s = v1, res1, residual1, relu1
        split = None
        if deep:
            # registers after the shifts by 32 and by 8: three segments of at most two
            # shift stages, with their guard, sticky and fit verdicts
            sh_a = reg(shift1, "shift_mid0")
            split = ((5, 3), reg, (sh_a, reg(sh_a, "shift_mid1")))
            for j in range(2):
                v_s = reg(v_s, f"v_mid{j}", reset=True)
                res_s, residual_s, relu_s = (reg(x, f"{n}_mid{j}") for x, n in (
                    (res_s, "res"), (residual_s, "residual"), (relu_s, "relu")))
                inner.append(v_s)
        with m.If(adv):
            m.d.sync += [v2.eq(v_s), res2.eq(res_s), residual2.eq(residual_s),
                         relu2.eq(relu_s)]
        for i in range(R):
            q, up = rne_sat_parts(m, prod[i], shift1, f"rq{i}", split)
            with m.If(adv):
                m.d.sync += [q2[i].eq(q), up2[i].eq(up)]

        # stage 3: round, residual, clamp (deep: the sum registered before the clamp)
        v3, relu3 = v2, relu2
        if deep:
            v3 = reg(v2, "v_sum", reset=True)
            relu3 = reg(relu2, "relu_sum")
            inner.append(v3)
        lo = Mux(relu3, 0, -128)
        with m.If(adv):
            m.d.sync += self.o.valid.eq(v3)
        for i in range(R):
            # (a comb assignment under `If(adv)` would zero t while adv is low: the stall
            # would sit in front of the adder and the clamp instead of on the flops' CE)
            t = Signal(signed(Q_BITS + 2), name=f"t{i}")     # q, rounding and residual
            m.d.comb += t.eq(q2[i] + up2[i] + Mux(residual2, res2[i], 0))
            if deep:
                t = reg(t, f"t_sum{i}")
            with m.If(adv):
                m.d.sync += self.o.payload[i].eq(Mux(t > 127, 127, Mux(t < lo, lo, t)))
        m.d.comb += self.idle.eq(~v1 & ~v2 & ~self.o.valid & ~Cat(*inner).any())
        return m

    def _serial_products(self, m, adv, v1, side):
        """Stage 1 over ``16 / mult_bits`` cycles: the multiplier's digits from the top (the
        first one signed), ``partial = partial * 2**s + acc * digit``, an ``acc x s`` product
        per cycle in place of ``acc x 16`` (with 2 bits, Booth digits: an add or subtract of
        acc or 2 acc). The partial sums are stage 1's output (returned): a new entry is taken
        once stage 2 takes the last product, in that very cycle at the earliest."""
        R, s = self._rows, self._mult_bits
        n = 16 // s
        left = Signal(range(n + 1))         # digits still to add; 0: idle
        acc = [Signal(signed(32), name=f"sacc{i}") for i in range(R)]
        part = [Signal(signed(48), name=f"part{i}") for i in range(R)]
        mult = Signal(16)
        held = [Signal(len(Value.cast(r)), name=f"held{k}") for k, (r, _) in enumerate(side)]
        free = (left == 0) & (~v1 | adv)       # stage 2 has the product, or takes it now
        take = self.i.valid & free
        m.d.comb += self.i.ready.eq(free)
        nxt = [Signal(signed(48), name=f"pnext{i}") for i in range(R)]
        if s == 2:
            # radix-4 Booth: the digit of bits (15, 14) and the bit below (13) is one of
            # 0, +-1, +-2 (signed by construction), so a cycle is a choice and one add or
            # subtract, never a multiplication
            # (one adder: a negative digit adds the inverted operand and a carry of 1)
            b1, b0, bm = mult[15], mult[14], mult[13]
            zero = (b1 == b0) & (b0 == bm)
            two = (b0 == bm) & (b1 != b0)
            for i in range(R):
                x = Signal(signed(48), name=f"booth{i}")
                m.d.comb += x.eq(Mux(zero, 0, Mux(two, acc[i] << 1, acc[i])))
                flipped = x.as_unsigned() ^ b1.replicate(48)
                m.d.comb += nxt[i].eq(((part[i] << 2).as_unsigned()[:48] + flipped + b1)[:48])
        else:
            digit = Mux(left == n, mult[16 - s:].as_signed(), mult[16 - s:].as_unsigned())
            m.d.comb += [nxt[i].eq((part[i] << s) + acc[i] * digit) for i in range(R)]
        with m.If(adv):
            m.d.sync += v1.eq(0)
        with m.If(take):
            m.d.sync += [left.eq(n), mult.eq(self.i.payload.mult)]
            m.d.sync += [acc[i].eq(self.i.payload.acc[i]) for i in range(R)]
            m.d.sync += [part[i].eq(0) for i in range(R)]
            m.d.sync += [h.eq(v) for h, (_, v) in zip(held, side)]
        with m.Elif(left != 0):
            m.d.sync += [left.eq(left - 1), mult.eq(mult << s)]
            m.d.sync += [part[i].eq(nxt[i]) for i in range(R)]
            with m.If(left == 1):       # the last digit: on to stage 2
                m.d.sync += [v1.eq(1), *(r.eq(h) for (r, _), h in zip(side, held))]
        return part


class LaneSerialRequant(wiring.Component):
    """The requant unit's interface over ``rows`` lanes, computed ``lanes`` at a time by a
    ``RequantUnit(rows=lanes)``: an entry is taken whole, fed in ``rows / lanes`` beats, and
    its results are gathered and given out whole (``rows / lanes + 1`` cycles per entry)."""

    def __init__(self, *, rows, lanes, mult_bits=16, deep=False):
        assert rows % lanes == 0
        self._rows, self._lanes, self._mult_bits, self._deep = rows, lanes, mult_bits, deep
        super().__init__(requant_signature(rows))

    def elaborate(self, platform):
        m = Module()
        R, L = self._rows, self._lanes
        n = R // L
        m.submodules.core = core = RequantUnit(rows=L, mult_bits=self._mult_bits,
                                               deep=self._deep)

        held = Signal(requant_in_layout(R))
        busy = Signal()
        beat = Signal(range(n))
        m.d.comb += self.i.ready.eq(~busy)
        with m.If(self.i.valid & ~busy):
            m.d.sync += [held.eq(self.i.payload), busy.eq(1), beat.eq(0)]
        ci = core.i.payload
        m.d.comb += [
            core.i.valid.eq(busy),
            ci.acc.as_value().eq(held.acc.as_value().word_select(beat, 32 * L)),
            ci.res.as_value().eq(held.res.as_value().word_select(beat, 8 * L)),
            ci.mult.eq(held.mult), ci.shift.eq(held.shift),
            ci.residual.eq(held.residual), ci.relu.eq(held.relu),
        ]
        with m.If(core.i.valid & core.i.ready):
            m.d.sync += beat.eq(beat + 1)
            with m.If(beat == n - 1):
                m.d.sync += [busy.eq(0), beat.eq(0)]

        out, obeat, last = gather_groups(m, core.o.valid & core.o.ready, core.o.payload, n,
                                         "out")
        m.d.comb += [core.o.ready.eq(~self.o.valid), self.o.payload.eq(out)]
        with m.If(last):
            m.d.sync += self.o.valid.eq(1)
        with m.If(self.o.valid & self.o.ready):
            m.d.sync += self.o.valid.eq(0)
        m.d.comb += self.idle.eq(~busy & core.idle & ~self.o.valid & (obeat == 0))
        return m


def make_requant(config):
    """The requant unit ``config`` asks for (all lanes at once, or ``requant_lanes``)."""
    lanes = config.requant_lanes or config.rows
    kw = {"mult_bits": config.requant_mult_bits,
          "deep": config.pipelining.requant_registered_inputs}
    if lanes == config.rows:
        return RequantUnit(rows=config.rows, **kw)
    return LaneSerialRequant(rows=config.rows, lanes=lanes, **kw)
