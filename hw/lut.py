"""LUT tensor core engine: low-bit weights x int8 activations by table lookup.

Two stream components (docs/lut.md has the arithmetic):

* ``LutPrecompute`` turns each group of 4 int8 activations (per token) into the 8 stored
  entries of its symmetric table of signed sums, exactly (11 bits), and holds the table
  while the weight bit planes of that group stream past.
* ``LutArray`` is an elongated ``rows x cols`` tile (K = 4 per step): per step every cell
  looks up its channel's 4-bit index in its token's table (negating on index bit 0), scales
  by 2**plane and accumulates; a row accumulator keeps the activation sum for the bias of
  the {0,1} -> {-1,+1} reinterpretation. Results drain one channel per cycle, like the
  systolic array's, while the next MATMUL streams in. No multipliers.
"""

from types import SimpleNamespace

from amaranth import Module, Signal, Mux, Array, Cat, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from .drain import ColumnDrain, drain_members
from .lib import kept, kept_lut, registered, uses_ecp5_cells, take
from .lut_ecp5 import ecp5_lookup
from .systolic import column_layout

__all__ = ["LutPrecompute", "LutArray", "LutEngine", "TABLE_BITS", "ACC_BITS", "table_layout",
           "lut_step_layout", "precompute_in_layout"]

TABLE_BITS = 11     # a signed sum of 4 int8 lies in [-512, 512]
BIAS_BITS = 25      # |sum_k a_k| <= 65535 * 128 < 2**23


def acc_bits(max_wbits):
    """Cell accumulator width: ``|S| = |sum_k a_k (2u - 2**b + 1)| <= 65535 * 128 *
    (2**b - 1)`` for any MATMUL (k < 2**16), so S is exact, never wrapped."""
    return (65535 * 128 * ((1 << max_wbits) - 1)).bit_length() + 1


ACC_BITS = acc_bits(4)


def table_layout(rows):
    return data.ArrayLayout(data.ArrayLayout(signed(TABLE_BITS), 8), rows)


def _step_fields(ch, tag_bits):
    return {
        "nib": data.ArrayLayout(4, ch),     # per channel: 4-bit (inverted) table index
        "plane": 2,                         # bit plane of this step (weight 2**plane)
        "newgroup": 1,                      # first plane of a 4-feature group
        "first": 1, "last": 1,              # first / last step of the MATMUL
        "odd": 1,                           # odd weight grid: no bias term
        "steps": 16,                        # steps in this MATMUL (read on ``first``)
        "tag": tag_bits,                    # carried to the drained columns
    }


def precompute_in_layout(rows, ch, tag_bits):
    return data.StructLayout({"act": data.ArrayLayout(data.ArrayLayout(signed(8), rows), 4),
                              **_step_fields(ch, tag_bits)})


def lut_step_layout(rows, ch, tag_bits):
    return data.StructLayout({"table": table_layout(rows), **_step_fields(ch, tag_bits)})


class LutPrecompute(wiring.Component):
    """One register stage: on a ``newgroup`` step, ``table[i][u] = -a0 + sum_{t=1..3}
    (bit t-1 of u ? a_t : -a_t)`` for token i from features ``act[0..3][i]``; on the other
    planes of the group the table is held. Everything else passes through.

    ``deep`` (for high clocks) puts a skid buffer on the inputs first: the activations come
    from a block RAM's output, which on an ECP5 leaves little of a 10 ns cycle for the
    table's two adders, and the input's ready comes from a flop (the buffer's second entry
    is free), not from the LUT array's verdict through this unit. ``held``/``held_tags``
    tell of the steps in the buffer.

    ``chained``: the output feeds a ``LutArray`` directly, whose ``first_ok`` comes in
    beside its ready: the enables are computed from flops alone (see ``elaborate``)."""

    def __init__(self, *, rows, ch, tag_bits, deep=False, chained=False):
        self._rows, self._ch, self._tag, self._deep = rows, ch, tag_bits, deep
        self._chained = chained
        super().__init__({
            "i": In(stream.Signature(precompute_in_layout(rows, ch, tag_bits))),
            "o": Out(stream.Signature(lut_step_layout(rows, ch, tag_bits))),
            "held": Out(2), "held_tags": Out(data.ArrayLayout(tag_bits, 2)),
            **({"first_ok": In(1)} if chained else {}),
        })

    def elaborate(self, platform):
        m = Module()
        adv = ~self.o.valid | self.o.ready
        if self._chained:
            # feeding a LutArray, whose ready is ``~first | first_ok`` (a flop): the output
            # advances unless it holds a first step the array refuses, ``~of | first_ok``
            # with ``of`` (valid and first) a flop of its own, so each enable below is one
            # LUT4 of flops (through the array's ready it would be two)
            of = Signal(name="o_first")
            adv = ~of | self.first_ok
        if self._deep:
            # a skid buffer: the step the next stage takes (`valid`, `i`) and one more
            # (`skid`), taken while the next stage stalls; the input is ready while the
            # second entry is free. Data registers have no reset.
            layout = precompute_in_layout(self._rows, self._ch, self._tag)
            valid, skid_valid = Signal(name="in_valid"), Signal(name="skid_valid")
            i = Signal(layout, name="in_step", reset_less=True)
            skid = Signal(layout, name="skid_step", reset_less=True)
            take = self.i.valid & ~skid_valid
            m.d.comb += self.i.ready.eq(~skid_valid)
            with m.If(adv | ~valid):            # the first entry moves on, or is empty
                with m.If(skid_valid):
                    m.d.sync += [i.eq(skid), skid_valid.eq(0)]
                with m.Else():
                    m.d.sync += [i.eq(self.i.payload), valid.eq(take)]
            with m.Elif(take):                  # it stalls: the new step waits behind it
                m.d.sync += [skid.eq(self.i.payload), skid_valid.eq(1)]
            m.d.comb += [self.held.eq(Cat(valid, skid_valid)),
                         self.held_tags[0].eq(i.tag), self.held_tags[1].eq(skid.tag)]
        else:
            valid, i = self.i.valid, self.i.payload
            m.d.comb += self.i.ready.eq(adv)
        fields = ("nib", "plane", "newgroup", "first", "last", "odd", "steps", "tag")
        o = self.o.payload
        with m.If(adv):
            m.d.sync += self.o.valid.eq(valid)
            if self._chained:
                m.d.sync += of.eq(valid & i.first)
        with m.If(adv & valid):
            for name in fields:
                m.d.sync += getattr(o, name).eq(getattr(i, name))
        # The partial sums are assigned outside the enable's `If`: a comb assignment under
        # it would be zero while the enable is low, which put the enable (the LUT array's
        # ready) in front of the adders instead of on the flops' CE.
        # Each half of a row's table has its own copy of the enable (a LUT4 of its own on
        # an ECP5): one gate enabling every row's entries would be a net of hundreds of
        # pins behind the LUT array's ready, and one a row still drives flops spread
        # towards the array.
        for r in range(self._rows):
            if self._chained:
                fn, ins = (lambda of, ok, v, new: (~of | ok) & v & new,
                           [of, self.first_ok, valid, i.newgroup])
            else:
                fn, ins = (lambda ov, rdy, v, new: (~ov | rdy) & v & new,
                           [self.o.valid, self.o.ready, valid, i.newgroup])
            upd = [kept_lut(m, fn, ins, f"upd{r}_{h}", platform) for h in range(2)]
            a0, a1, a2, a3 = (i.act[t][r] for t in range(4))
            # shared partial sums: (-a0 -+ a1) and (+-a2 +-a3)
            lo = [Signal(signed(10), name=f"lo{r}_{b}") for b in range(2)]
            s, d = Signal(signed(9), name=f"s{r}"), Signal(signed(9), name=f"d{r}")
            m.d.comb += [lo[0].eq(-a0 - a1), lo[1].eq(a1 - a0), s.eq(a2 + a3), d.eq(a2 - a3)]
            # hi = -s, d, -d, s by (bit 2, bit 1) of u (signs of a3, a2), subtracted rather
            # than negated and added: a negation is a carry chain of its own
            hi = [(s, True), (d, False), (d, True), (s, False)]
            for u in range(8):
                y, sub = hi[u >> 1]
                with m.If(upd[u >> 2]):
                    m.d.sync += o.table[r][u].eq(lo[u & 1] - y if sub else lo[u & 1] + y)
        return m


class LutArray(wiring.Component):
    """``rows x ch`` LUT cells and their result drain.

    Input: one step per cycle (a table per token, a 4-bit index per channel, the plane).
    Cell (i, j) adds ``(n[0] ? -1 : 1) * (table[i][n >> 1] << plane)``, ``n`` the index of
    channel j; on ``last`` it latches ``S`` (and the row its activation sum ``A``) and
    restarts from zero (so ``first`` only matters to the drain rule below). Drained
    column j carries, per token, ``S`` (odd grid) or ``(S - A) / 2``, sign-extended to 32 bits.

    A new MATMUL (a ``first`` step) is accepted only if every earlier result will have left
    the drain before this one's results are latched (``steps`` cycles later at the earliest).
    Accepted steps pass one register stage before the cells (``staged`` while one is there).

    ``skew`` (for high clocks): the cells take a step systolically, cell (i, j) ``i + j //
    group`` cycles after the stage. The weight indices and the cells' enables pass down the
    rows and the tables across groups of ``group`` channels, one register a hop, so no
    register drives cells further than its neighbours (a broadcast index register's
    routing to every cell would dominate the cycle on a large FPGA), and each cell
    registers its lookup, adding it a cycle later. Results drain once the last cell has
    latched them, ``rows + ch // group - 1`` cycles after the stage.
    """

    GAP = 1     # idle cycles between two drains (as the systolic array)

    def __init__(self, *, rows, ch, tag_bits, max_wbits=4, skew=False, group=4):
        self._rows, self._ch, self._tag = rows, ch, tag_bits
        self._wbits = max_wbits     # planes up to 2**(max_wbits-1); sizes shifts and sums
        self._skew, self._group = skew, group
        super().__init__({
            "i": In(stream.Signature(lut_step_layout(rows, ch, tag_bits))),
            **drain_members(column_layout(rows, tag_bits), tag_bits),
            # a step in the cells' input stage (its job not yet created in the drain)
            "staged": Out(1), "staged_tag": Out(tag_bits),
            # a flop: a first step would be taken (``i.ready = ~i.payload.first | first_ok``)
            "first_ok": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        x = self._setup(m, platform)
        self._input_stage(m, x, platform)
        self._cells(m, x, platform)
        self._drain(m, x, platform)
        return m

    def _setup(self, m, platform):
        """Widths and the skew's helpers."""
        R, N = self._rows, self._ch
        inp = self.i.payload
        go = self.i.valid & self.i.ready
        A = acc_bits(self._wbits)
        T = TABLE_BITS + self._wbits - 1                  # a table entry times 2**plane
        plane = inp.plane[:(self._wbits - 1).bit_length()]
        ecp5 = uses_ecp5_cells(platform)    # the lookups from slice primitives (lut_ecp5.py)
        skew = self._skew
        G = -(-N // self._group) if skew else 1           # channel groups
        grp = [j // self._group if skew else 0 for j in range(N)]
        rdelay = [r if skew else 0 for r in range(R)]

        def hop(sig, name):
            """``sig`` one register later (a hop of the skew; data: no reset)."""
            return registered(m, sig, name)

        def delayed(sig, n, name):
            for d in range(n):
                sig = hop(sig, f"{name}_d{d}")
            return sig

        return SimpleNamespace(A=A, G=G, N=N, R=R, T=T, delayed=delayed, ecp5=ecp5, go=go,
                               grp=grp, hop=hop, inp=inp, plane=plane, rdelay=rdelay,
                               skew=skew)

    def _input_stage(self, m, x, platform):
        """The accepted step, registered: the cells' enable, clear and latch from flops."""
        N, go, inp = take(x, "N go inp")
        # The cells work on the accepted step one register stage later: no path runs from
        # the acceptance check (the drain bound, the feeder's handshake) into them, and
        # their enable (``en``), clear (``clr``) and latch (``lat``) come straight from
        # flops. ``clr`` is also set by the reset, so the cells' registers need no reset.
        en, lat = Signal(name="stage_en"), Signal(name="stage_lat")
        clr = Signal(init=1, name="stage_clr")
        nib = Signal(data.ArrayLayout(4, N), name="stage_nib", reset_less=True)
        tag = Signal(self._tag + 1, name="stage_tag")   # the grid (odd) as an extra bit
        m.d.sync += [en.eq(go), lat.eq(go & inp.last), clr.eq(go & inp.last),
                     nib.eq(inp.nib), tag.eq(Cat(inp.tag, inp.odd))]

        vars(x).update(clr=clr, en=en, lat=lat, nib=nib, tag=tag)

    def _cells(self, m, x, platform):
        """The cells: lookups, plane shifts and accumulators (skewed or broadcast)."""
        (A, G, N, R, T, clr, delayed, ecp5, en, grp, hop, inp, lat, nib, plane, rdelay, skew) = \
            take(x, "A G N R T clr delayed ecp5 en grp hop inp lat nib plane rdelay skew")
        # Control of cell group (r, g) (enable, clear, latch), r + g cycles after the
        # stage: down the rows from a chain across row 0. Registers of equal delay are
        # equal, and Yosys would merge them into one driving a whole anti-diagonal, so on an
        # ECP5 they are flop cells it leaves alone (lut_ecp5.kept).
        ctl = [[None] * G for _ in range(R)]
        ctl[0][0] = Cat(en, clr, lat)
        for r in range(R):
            for g in range(G):
                if not skew:
                    ctl[r][g] = ctl[0][0]
                elif (r, g) != (0, 0):
                    src = ctl[r - 1][g] if r else ctl[0][g - 1]
                    ctl[r][g] = kept(m, src, f"ctl{r}_{g}", platform, init=0b010)

        # With the skew the cells' lookups are registered (``pipe``): a cell adds what it
        # looked up a cycle before, so its control (and its row's bias) is a hop later.
        # (the index register's routing to the lookup's multiplexers and the adder behind
        # them are then not one path).
        pipe = int(skew)
        ctl_c = ctl if not pipe else [
            [kept(m, ctl[r][g], f"ctlc{r}_{g}", platform, init=0b010) for g in range(G)]
            for r in range(R)]

        # per channel and row: table index (3 bits) and negate flag, the index down the rows
        sel = [[None] * N for _ in range(R)]
        neg = [[None] * N for _ in range(R)]
        for j in range(N):
            n = delayed(nib[j], grp[j], f"nib_top{j}")
            for r in range(R):
                if r and skew:
                    n = hop(n, f"nib{r}_{j}")
                sel[r][j], neg[r][j] = n[1:4], n[0]

        res = [[None] * N for _ in range(R)]       # result registers
        sums = [[None] * N for _ in range(R)]      # what a cell latches
        lats = [[None] * N for _ in range(R)]      # its latch
        bias_res = []
        for r in range(R):
            # the token's table, shifted by the plane (into the stage, or with the skew
            # after it), then r cycles later for the row and one more for each group of
            # channels
            if rdelay[r]:
                # (skew) the table as it is, and a copy of the plane for the row: shifted
                # on the way to the row's first hop (one plane register shifting every
                # row's entries would be a net of hundreds of pins).
                stage_tbl = Signal(8 * TABLE_BITS, name=f"tbl{r}", reset_less=True)
                m.d.sync += stage_tbl.eq(Cat(*(inp.table[r][u] for u in range(8))))
                r_plane = kept(m, plane, f"plane{r}", platform)
                row_tbl = delayed(Cat(*(stage_tbl.word_select(u, TABLE_BITS).as_signed()
                                        << r_plane for u in range(8))), rdelay[r], f"tbl{r}")
            else:
                stage_tbl = Signal(8 * T, name=f"tbl{r}", reset_less=True)
                m.d.sync += stage_tbl.eq(Cat(*(inp.table[r][u] << plane for u in range(8))))
                row_tbl = stage_tbl
            tbls = [row_tbl]
            for g in range(1, G):
                tbls.append(hop(tbls[-1], f"tbl{r}_g{g}"))
            tbl = [[Signal(signed(T), name=f"tbl{r}_g{g}_{u}") for u in range(8)]
                   for g in range(G)]
            for g in range(G):
                m.d.comb += [tbl[g][u].eq(tbls[g].word_select(u, T)) for u in range(8)]
            # the row's control is its first group's
            r_en, r_clr, r_lat = ctl_c[r][0][0], ctl_c[r][0][1], ctl_c[r][0][2]
            bias = Signal(signed(BIAS_BITS), name=f"bias{r}", reset_less=True)
            bias_r = Signal(signed(BIAS_BITS), name=f"bias{r}_res", reset_less=True)
            bias_sum = Signal(signed(BIAS_BITS), name=f"bias{r}_sum")
            bias_in = Signal(signed(TABLE_BITS), name=f"bias{r}_in", reset_less=True)
            # sum_k a_k = -sum_groups table[0] (table[0] = -(a0 + a1 + a2 + a3))
            m.d.sync += bias_in.eq(Mux(inp.newgroup, inp.table[r][0], 0))
            bias_row = delayed(bias_in, rdelay[r] + pipe, f"bias{r}_in")
            m.d.comb += bias_sum.eq(bias - bias_row)
            with m.If(r_clr):
                m.d.sync += bias.eq(0)
            with m.Elif(r_en):
                m.d.sync += bias.eq(bias_sum)
            with m.If(r_lat):
                m.d.sync += bias_r.eq(bias_sum)
            bias_res.append(bias_r)
            for j in range(N):
                c_en, c_clr, c_lat = (ctl_c[r][grp[j]][b] for b in range(3))
                t = Array(tbl[grp[j]])
                acc = Signal(signed(A), name=f"cell{r}_{j}_acc", reset_less=True)
                out = Signal(signed(A), name=f"cell{r}_{j}_res", reset_less=True)
                v = Signal(signed(T), name=f"cell{r}_{j}_v")
                total = Signal(signed(A), name=f"cell{r}_{j}_sum")
                # conditional negation as one's complement plus carry-in: one adder
                if ecp5:
                    m.d.comb += v.eq(ecp5_lookup(m, t, sel[r][j], neg[r][j], f"cell{r}_{j}"))
                else:
                    inv = Cat(*([neg[r][j]] * T)).as_signed()
                    m.d.comb += v.eq(t[sel[r][j]] ^ inv)
                if pipe:        # the lookup registered (in its own slices, on an ECP5)
                    m.d.comb += total.eq(acc + hop(v, f"cell{r}_{j}_vr")
                                         + hop(neg[r][j], f"cell{r}_{j}_nr"))
                else:
                    m.d.comb += total.eq(acc + v + neg[r][j])
                # the accumulator restarts from 0 after the last step: a synchronous reset
                # with priority over the enable, which FPGA flops have for free
                with m.If(c_clr):
                    m.d.sync += acc.eq(0)
                with m.Elif(c_en):
                    m.d.sync += acc.eq(total)
                res[r][j], sums[r][j], lats[r][j] = out, total, c_lat

        vars(x).update(bias_res=bias_res, lats=lats, pipe=pipe, res=res, sums=sums)

    def _drain(self, m, x, platform):
        """The drain: latched results out through column 0, and the rule on new MATMULs."""
        (A, G, N, R, bias_res, en, go, inp, lat, lats, pipe, res, skew, sums, tag) = \
            take(x, "A G N R bias_res en go inp lat lats pipe res skew sums tag")
        # drain: a pending job (latched, or latching down the skew: the last cell group
        # latches R + G - 2 + pipe cycles after the stage) and an active one; the grid
        # (odd) rides along as an extra tag bit
        wait = max(0, R + G - 3 + pipe) if skew else 0
        drain = ColumnDrain(m, ncols=N, tag_bits=self._tag + 1, gap=self.GAP, max_wait=wait)
        drain.create(lat, tag, wait=wait)
        act_odd = drain.act_tag[-1]

        # The results leave through column 0: each cycle the drain is active, every column
        # moves one to the left (no multiplexer gathering the columns: each result register
        # feeds only its neighbour). A latch never meets an active drain but in its last
        # cycle (the rule on new MATMULs below), and wins then.
        # With the skew every row has a copy of the drain's active flag (kept apart on an
        # ECP5): one flop enabling the shift of all R x N result registers would be a
        # net of over a thousand pins.
        shifting = [drain.act_valid] * R if not skew else [
            kept(m, drain.act_valid_next(), f"shift{r}", platform) for r in range(R)]
        for r in range(R):
            for j in range(N):
                with m.If(lats[r][j]):
                    m.d.sync += res[r][j].eq(sums[r][j])
                if j + 1 < N:
                    with m.Elif(shifting[r]):
                        m.d.sync += res[r][j].eq(res[r][j + 1])

        # cycles until every latched result has been drained (the last drain cycle is this
        # one plus ``left - 1``): with a job pending, the longer of its wait and the active
        # drain's rest, then its own N + 1; else the active drain's rest without the gap
        # (GAP = 1), or the gap. Registered as a bound (``left + 2``), so no path runs from
        # the drain's counters into the feeder: a cycle later it is at most what it is now
        # (it only grows when a job is created: then the worst case). The drain's rest is a
        # counter of its own (no subtractor in front of the comparison); ``left`` is 0 just
        # when the drain is idle.
        assert self.GAP == 1
        bl = drain.busy_left_counter()
        left2 = Mux(drain.pend_valid,
                    Mux(drain.pend_cnt > bl, drain.pend_cnt, bl) + (N + 3),
                    bl + Mux(drain.act_valid, 1, 2))
        # (a job is created the cycle after its last step is accepted, from the stage)
        created = (go & inp.last) | lat
        bound2 = Signal(18, name="bound2")
        m.d.sync += bound2.eq(Mux(created, max(wait, N + self.GAP) + N + 3, left2))
        # A first step is accepted when the drain is empty, or on the bound's verdict on a
        # waiting first step, registered: it holds a cycle later (the bound only grows when
        # a job is created); a first step thus starts the cycle after the verdict (at once
        # when the drain is empty). Both in one flop (``first_ok``: the precompute's
        # enables use it directly).
        first_ok = Signal(init=1, name="first_ok")
        m.d.sync += first_ok.eq(~created & (drain.idle | (self.i.valid & ~go
                                                          & (bound2 <= inp.steps))))
        m.d.comb += [self.i.ready.eq(~inp.first | first_ok), self.first_ok.eq(first_ok)]

        column = Cat(*(res[r][0] for r in range(R)))
        drained = Signal(32 * R)
        for r in range(R):
            s = column.word_select(r, A).as_signed()
            unbiased = Signal(signed(A + 1), name=f"drain{r}_unbiased")
            m.d.comb += unbiased.eq(s - bias_res[r])
            m.d.comb += drained.word_select(r, 32).eq(Mux(act_odd, s, unbiased >> 1))
        drain.connect(self, drained, self._tag, busy=en)
        m.d.comb += [self.staged.eq(en), self.staged_tag.eq(tag[:self._tag])]


class LutEngine(wiring.Component):
    """The whole engine as one component: precompute unit feeding the LUT array (for unit
    tests and synthesis reports)."""

    def __init__(self, *, rows, ch, tag_bits, max_wbits=4):
        self._args = dict(rows=rows, ch=ch, tag_bits=tag_bits)
        self._wbits = max_wbits
        super().__init__({
            "i": In(stream.Signature(precompute_in_layout(rows, ch, tag_bits))),
            "o": Out(stream.Signature(column_layout(rows, tag_bits), always_ready=True)),
            "idle": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.pre = pre = LutPrecompute(**self._args, chained=True)
        m.submodules.array = arr = LutArray(**self._args, max_wbits=self._wbits)
        wiring.connect(m, wiring.flipped(self.i), pre.i)
        wiring.connect(m, pre.o, arr.i)
        m.d.comb += pre.first_ok.eq(arr.first_ok)
        wiring.connect(m, arr.o, wiring.flipped(self.o))
        m.d.comb += self.idle.eq(arr.idle & ~pre.o.valid)
        return m
