"""Bit-serial engine: 4-bit weight codes of several data types x int8, term by term (BitMoD).

Every weight value of the data types (docs/bitserial.md) is a sum of at most two signed
powers of two, so a processing element needs no multiplier: per cycle it adds one term of
each of its four weights, the activation shifted by the term's exponent and negated by its
sign. A step (one weight entry: four features' codes for every channel) takes two cycles,
its two terms; int8 weights are two such steps (nibble planes, radix-4 Booth with the low
plane's top bit carried into the high plane's first digit).

``BitSerialArray`` is ``rows x ch`` elements behind one shared term decoder per channel and
feature: a step is held in the input stage while its two terms are decoded, registered, and
added into the elements' accumulators; results drain one channel per cycle while the next
MATMUL streams in (the LUT array's drain and its rule on new MATMULs).
"""

from amaranth import Module, Signal, Mux, Cat, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In

from .drain import ColumnDrain, drain_members
from .isa import BitSerialType
from .systolic import column_layout

__all__ = ["BitSerialArray", "step_layout", "fp_terms", "ACC_BITS", "FP_MAGS", "EXTRA"]

ACC_BITS = 32       # |sum| <= 65535 features x 128 x 128 < 2**31
SHIFT_BITS = 3      # a term's exponent, 0..4
#: FP code magnitudes (index = code bits 2..0)
FP_MAGS = (0, 1, 2, 3, 4, 6, 8, 12)
#: FPX extra values by selector (BitMoD's ER_POS, ER_NEG, EA_POS, EA_NEG)
EXTRA = (10, -10, 16, -16)


def _pow2_terms(v):
    """``|v|`` as at most two powers of two (exponents, largest first, None for none)."""
    v = abs(v)
    bits = [b for b in range(5, -1, -1) if v >> b & 1]
    assert len(bits) <= 2, v
    return (bits + [None, None])[:2]


def fp_terms(mag):
    """The two terms (exponent or None) of an FP magnitude: low term first."""
    hi, lo = _pow2_terms(mag)
    return (lo, hi) if lo is not None else (hi, None)


def step_layout(rows, ch, tag_bits, plane_bits):
    return data.StructLayout({
        "act": data.ArrayLayout(data.ArrayLayout(signed(8), rows), 4),
        "codes": data.ArrayLayout(data.ArrayLayout(4, ch), 4),  # [feature][channel]
        "plane": plane_bits,
        "first": 1, "last": 1,
        "dtype": BitSerialType,
        "steps": 16,
        "tag": tag_bits,
    })


def _term_layout(ch):
    """A decoded term per feature and channel: add ``(neg ? -1 : 1) * a << shift`` if nz."""
    t = data.StructLayout({"nz": 1, "neg": 1, "shift": SHIFT_BITS})
    return data.ArrayLayout(data.ArrayLayout(t, ch), 4)


class BitSerialArray(wiring.Component):
    """``rows x ch`` bit-serial elements, a dot product of 4 features each, and their drain.

    Input: one step at a time, taken every two cycles (its two terms); an FPX MATMUL's
    first step is its selector entry (2 bits a channel, see ``EXTRA``), taken in one cycle.
    Drained column j carries, per token, the exact sum over the MATMUL's features of code
    value times activation, sign-extended to 32 bits.
    """

    GAP = 1

    def __init__(self, *, rows, ch, tag_bits, plane_bits):
        self._rows, self._ch, self._tag, self._pb = rows, ch, tag_bits, plane_bits
        super().__init__({
            "i": In(stream.Signature(step_layout(rows, ch, tag_bits, plane_bits))),
            **drain_members(column_layout(rows, tag_bits), tag_bits),
            # steps past the input (not yet a drain job), for the REQUANT hazard
            "staged": wiring.Out(2), "staged_tags": wiring.Out(data.ArrayLayout(tag_bits, 2)),
        })

    def elaborate(self, platform):
        m = Module()
        R, N, T = self._rows, self._ch, self._tag
        inp = self.i.payload
        go = self.i.valid & self.i.ready

        # --- input stage: the step whose terms are being decoded --------------------------
        cur = Signal(step_layout(R, N, T, self._pb), name="cur", reset_less=True)
        busy = Signal(name="cur_busy")
        term = Signal(name="cur_term")          # the term of ``cur`` decoded this cycle
        cin = Signal(data.ArrayLayout(data.ArrayLayout(1, N), 4), name="cur_cin",
                     reset_less=True)
        carry = Signal(4 * N, name="carry", reset_less=True)   # the last plane's top bits
        sel = Signal(2 * N, name="sel", reset_less=True)       # FPX selectors
        head = inp.first & (inp.dtype == BitSerialType.FPX)    # the selector entry
        frees = ~busy | term                    # ``cur`` is done after this cycle
        first_ok = Signal(init=1, name="first_ok")
        m.d.comb += self.i.ready.eq(frees & (~inp.first | first_ok))
        b3 = Cat(*(inp.codes[f][c][3] for f in range(4) for c in range(N)))
        with m.If(busy):
            m.d.sync += term.eq(~term)
        with m.If(go & head):
            m.d.sync += sel.eq(inp.codes.as_value()[:2 * N])
        with m.If(go & ~head):
            m.d.sync += [cur.eq(inp), busy.eq(1), term.eq(0), carry.eq(b3),
                         cin.as_value().eq(Mux((inp.dtype == BitSerialType.INT8) & inp.plane[0],
                                               carry, 0))]
        with m.Elif(frees):
            m.d.sync += busy.eq(0)

        # --- term decode, one per feature and channel (shared by the rows), registered -----
        terms = Signal(_term_layout(N), name="terms", reset_less=True)
        en, lat = Signal(name="b_en"), Signal(name="b_lat")
        clr = Signal(init=1, name="b_clr")
        hi_plane = Signal(name="b_hi_plane", reset_less=True)
        act = Signal(data.ArrayLayout(data.ArrayLayout(signed(8), R), 4), name="b_act",
                     reset_less=True)
        tag = Signal(T, name="b_tag", reset_less=True)
        done = busy & term & cur.last
        m.d.sync += [en.eq(busy), lat.eq(done), clr.eq(done), act.eq(cur.act), tag.eq(cur.tag),
                     hi_plane.eq((cur.dtype == BitSerialType.INT8) & cur.plane[0])]
        for f in range(4):
            for c in range(N):
                nz, neg, sh = self._decode(m, cur.codes[f][c], cur.dtype, cin[f][c],
                                           sel[2 * c:2 * c + 2], term, f"{f}_{c}")
                t = terms[f][c]
                m.d.sync += [t.nz.eq(nz & busy), t.neg.eq(neg), t.shift.eq(sh)]

        # --- the elements -----------------------------------------------------------------
        res = [[None] * N for _ in range(R)]
        sums = [[None] * N for _ in range(R)]
        for r in range(R):
            for c in range(N):
                parts = []
                negs = []
                for f in range(4):
                    t = terms[f][c]
                    a = act[f][r]
                    sh = Signal(signed(13), name=f"pe{r}_{c}_sh{f}")
                    m.d.comb += sh.eq(Mux(t.nz, a << t.shift, 0))
                    # negation as one's complement plus a carry-in counted below
                    n = t.neg & t.nz
                    parts.append(sh ^ Cat(*([n] * 13)).as_signed())
                    negs.append(n)
                v = Signal(signed(17), name=f"pe{r}_{c}_v")
                m.d.comb += v.eq(sum(parts) + sum(negs))
                acc = Signal(signed(ACC_BITS), name=f"pe{r}_{c}_acc", reset_less=True)
                out = Signal(signed(ACC_BITS), name=f"pe{r}_{c}_res", reset_less=True)
                total = Signal(signed(ACC_BITS), name=f"pe{r}_{c}_sum")
                m.d.comb += total.eq(acc + Mux(hi_plane, v << 4, v))
                with m.If(clr):
                    m.d.sync += acc.eq(0)
                with m.Elif(en):
                    m.d.sync += acc.eq(total)
                res[r][c], sums[r][c] = out, total

        self._drain(m, go, inp, lat, en, tag, res, sums, busy, cur, first_ok)
        m.d.comb += [self.staged.eq(Cat(busy, en)),
                     self.staged_tags[0].eq(cur.tag), self.staged_tags[1].eq(tag)]
        return m

    @staticmethod
    def _decode(m, code, dtype, cin, sel, term, name):
        """Term ``term`` (0: low, 1: high) of one code: (nonzero, negative, exponent)."""
        nz = Signal(name=f"dec{name}_nz")
        neg = Signal(name=f"dec{name}_neg")
        sh = Signal(SHIFT_BITS, name=f"dec{name}_sh")
        is_int = (dtype == BitSerialType.INT) | (dtype == BitSerialType.INT8)
        with m.If(is_int):
            # radix-4 Booth digit: bits (2t+1, 2t, 2t-1), the bit below the nibble is cin
            lo = Mux(term, code[1], cin)
            mid = Mux(term, code[2], code[0])
            top = Mux(term, code[3], code[1])
            two = (top & ~mid & ~lo) | (~top & mid & lo)
            m.d.comb += [nz.eq((top != mid) | (mid != lo)), neg.eq(top),
                         sh.eq(Cat(two, term))]
        with m.Else():
            # FP: sign (bit 3) and magnitude index; the negative zero is FPX's extra value
            mag = code[:3]
            extra = (code == 0b1000) & (dtype == BitSerialType.FPX)
            e_lo = Signal(SHIFT_BITS, name=f"dec{name}_elo")
            e_nz = Signal(name=f"dec{name}_enz")
            with m.Switch(Cat(mag, term)):
                for i, (a, b) in enumerate(map(fp_terms, FP_MAGS)):
                    for t, e in ((0, a), (1, b)):
                        with m.Case(i | t << 3):
                            m.d.comb += [e_nz.eq(e is not None), e_lo.eq(e or 0)]
            # extra: +-10 = 8 + 2 (exponents 1, 3), +-16 (exponent 4, one term)
            ea = sel[1]
            x_sh = Mux(ea, Mux(term, 0, 4), Mux(term, 3, 1))
            x_nz = ~(ea & term)
            m.d.comb += [nz.eq(Mux(extra, x_nz, e_nz)),
                         neg.eq(Mux(extra, sel[0], code[3])),
                         sh.eq(Mux(extra, x_sh, e_lo))]
        return nz, neg, sh

    def _drain(self, m, go, inp, lat, en, tag, res, sums, busy, cur, first_ok):
        """Latched results out through channel 0, and the rule on new MATMULs (as the LUT
        array's: a first step is taken only if every earlier result has left by the time
        its own results latch, ``steps`` cycles later at the earliest)."""
        R, N = self._rows, self._ch
        drain = ColumnDrain(m, ncols=N, tag_bits=self._tag, gap=self.GAP)
        drain.create(lat, tag)
        for r in range(R):
            for c in range(N):
                with m.If(lat):
                    m.d.sync += res[r][c].eq(sums[r][c])
                if c + 1 < N:
                    with m.Elif(drain.act_valid):
                        m.d.sync += res[r][c].eq(res[r][c + 1])
        assert self.GAP == 1
        bl = drain.busy_left_counter()
        left2 = Mux(drain.pend_valid, Mux(drain.pend_cnt > bl, drain.pend_cnt, bl) + (N + 3),
                    bl + Mux(drain.act_valid, 1, 2))
        # a job in the making: a last step taken, in the input stage, or latching
        created = (go & inp.last) | (busy & cur.last) | lat
        bound2 = Signal(18, name="bound2")
        m.d.sync += bound2.eq(Mux(created, 2 * N + self.GAP + 3, left2))
        m.d.sync += first_ok.eq(~created & (drain.idle | (self.i.valid & ~go
                                                          & (bound2 <= inp.steps))))
        column = Cat(*(res[r][0] for r in range(R)))
        drained = Signal(32 * R)
        for r in range(R):
            m.d.comb += drained.word_select(r, 32).eq(column.word_select(r, ACC_BITS))
        drain.connect(self, drained, self._tag, busy=busy | en)

