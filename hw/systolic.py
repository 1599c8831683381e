"""Output-stationary int8 x int8 -> int32 systolic array with its own result drain."""

from amaranth import Module, Signal, Mux, Array, Cat, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from .drain import ColumnDrain, drain_members
from .dsp import products
from .protect import mod3

__all__ = ["SystolicArray", "step_layout", "column_layout"]


def step_layout(rows, cols, tag_bits):
    return data.StructLayout({
        "a": data.ArrayLayout(signed(8), rows),    # one input feature of `rows` tokens
        "b": data.ArrayLayout(signed(8), cols),    # its weights for `cols` output channels
        "first": 1,                                # first k step of a MATMUL
        "last": 1,                                 # last k step
        "k": 16,                                   # number of k steps (read on `first`)
        "tag": tag_bits,                           # carried to the drained columns
    })


def column_layout(rows, tag_bits):
    return data.StructLayout({
        "data": data.ArrayLayout(signed(32), rows),
        "col": 8,
        "last": 1,
        "tag": tag_bits,
    })


class SystolicArray(wiring.Component):
    """``rows x cols`` processing elements, output-stationary.

    Each accepted step k feeds ``a`` (skewed down the rows) and ``b`` (skewed across the
    columns); PE(i, j) adds ``a[i] * b[j]`` to its accumulator (cleared the cycle before
    ``first`` arrives) and latches the sum into its result register on ``last``. A finished
    MATMUL is drained one column per cycle on ``o`` (always ready), while the next MATMUL
    already streams in.

    A new MATMUL (a ``first`` step) is accepted only if the pending drain starts soon enough
    that its results cannot be overwritten by the new one, which takes ``k`` cycles to reach
    the result registers; otherwise ``i.ready`` is low until it is safe.

    ``drain="direct"`` builds no result registers: columns are drained straight from the
    accumulators, and a new MATMUL's first step waits until the previous one's drain has
    started. It saves ``acc_bits * rows * cols`` flip-flops. With ``late``,
    ``o.payload.data`` is the column that was valid the cycle before (a reader that
    registers the column's address first needs no copy of its data), and a new MATMUL
    waits one cycle more.

    ``tile_rows``: rows per tile (Gemmini's tileRows). Within a tile the weights pass down
    without registers, so its rows take each step in the same cycle; registers (and the
    activations' skew) sit only between tiles. Fewer flip-flops, a longer path from a
    weight register through the tile's multipliers, and columns complete ``rows - 1 -
    (rows - 1) // tile_rows`` cycles sooner.

    ``acc_bits`` (17..32): the accumulators' width. A MATMUL of at most ``K`` steps sums
    products of magnitude at most 2**14, so ``AccelConfig.systolic_acc_bits`` (the bits
    of ``K * 2**14`` and a sign) holds every sum exactly; results leave sign-extended to
    int32, the same as 32-bit accumulators give.
    """

    GAP = 1     # idle cycles between two drains (lets the accumulate read-modify-write settle)

    def __init__(self, *, rows, cols, tag_bits=20, residue=False, drain="overlap", late=False,
                 acc_bits=32, tile_rows=1):
        assert drain in ("overlap", "direct") and (drain == "direct" or not late)
        assert 17 <= acc_bits <= 32 and rows % tile_rows == 0
        self._rows, self._cols, self._tag, self._acc_bits = rows, cols, tag_bits, acc_bits
        self._tr = tile_rows
        self._residue, self._direct, self._late = residue, drain == "direct", late
        super().__init__({
            "i": In(stream.Signature(step_layout(rows, cols, tag_bits))),
            **drain_members(column_layout(rows, tag_bits), tag_bits),
            # a drained result disagrees with its mod-3 residue (hw/protect.py)
            "fault": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        R, C, A, TR = self._rows, self._cols, self._acc_bits, self._tr
        p = self.i.payload
        go = self.i.valid & self.i.ready

        # input stage
        s_a = [Signal(signed(8), name=f"in_a{i}") for i in range(R)]
        s_b = [Signal(signed(8), name=f"in_b{j}") for j in range(C)]
        s_first, s_last = Signal(), Signal()
        m.d.sync += [x.eq(Mux(go, p.a[i], 0)) for i, x in enumerate(s_a)]
        m.d.sync += [x.eq(Mux(go, p.b[j], 0)) for j, x in enumerate(s_b)]
        m.d.sync += [s_first.eq(go & p.first), s_last.eq(go & p.last)]

        def stages(sig, n, name):
            """``sig`` and its ``n`` delayed copies, one register each."""
            out = [sig]
            for s in range(n):
                out.append(Signal.like(sig, name=f"{name}_d{s}"))
                m.d.sync += out[-1].eq(out[-2])
            return out

        def delay(sig, n, name):
            return stages(sig, n, name)[-1]

        # `first` with what it is the cycle before (the input of the register it comes from)
        row_in = []
        for i in range(R):
            f_chain = [go & p.first, *stages(s_first, i // TR, f"skf{i}")]
            row_in.append((delay(s_a[i], i // TR, f"ska{i}"), f_chain[-1], f_chain[-2],
                           delay(s_last, i // TR, f"skl{i}")))
        col_in = [delay(s_b[j], j, f"skb{j}") for j in range(C)]
        chk = self._residue
        if chk:     # operand residues travel beside the operands, skewed the same way
            row_r = [delay(mod3(m, s_a[i], f"in_ra{i}"), i // TR, f"skra{i}") for i in range(R)]
            col_r = [delay(mod3(m, s_b[j], f"in_rb{j}"), j, f"skrb{j}") for j in range(C)]
            rres = [[None] * C for _ in range(R)]
            rb_down = list(col_r)

        # A PE only adds: its accumulator is cleared the cycle before a MATMUL's first step
        # reaches it (when `first` is at its register's input), so no multiplexer sits on
        # the adder's input (on an FPGA the sum feeds the register straight and the clear is
        # the register's synchronous reset). Upsets while it idles are cleared away too.

        def result(acc, total, last, name):
            """What the drain reads of a PE: its accumulator (direct), or a result register
            that takes the sum with the last step."""
            if self._direct:
                return acc
            r = Signal.like(acc, name=name)
            with m.If(last):
                m.d.sync += r.eq(total)
            return r

        # PE grid
        res = [[None] * C for _ in range(R)]
        ops = []        # (a, b, product) of every PE: hw/dsp.py builds the multipliers
        b_down = list(col_in)
        for i in range(R):
            a, f, f_next, l = row_in[i]
            ra = row_r[i] if chk else None
            for j in range(C):
                b = b_down[j]
                acc = Signal(signed(A), name=f"pe{i}_{j}_acc")
                a_r = Signal(signed(8), name=f"pe{i}_{j}_a")
                b_r = Signal(signed(8), name=f"pe{i}_{j}_b")
                f_r = Signal(name=f"pe{i}_{j}_first")
                l_r = Signal(name=f"pe{i}_{j}_last")
                total = Signal(signed(A), name=f"pe{i}_{j}_sum")
                prod = Signal(signed(16), name=f"pe{i}_{j}_prod")
                ops.append((a, b, prod))
                m.d.comb += total.eq(acc + prod)
                m.d.sync += [acc.eq(Mux(f_next, 0, total)), a_r.eq(a), b_r.eq(b), f_r.eq(f),
                             l_r.eq(l)]
                res[i][j] = result(acc, total, l, f"pe{i}_{j}_res")
                if chk:
                    rb = rb_down[j]
                    racc = Signal(2, name=f"pe{i}_{j}_racc")
                    ra_r = Signal(2, name=f"pe{i}_{j}_ra")
                    rb_r = Signal(2, name=f"pe{i}_{j}_rb")
                    rtot = Signal(2, name=f"pe{i}_{j}_rsum")
                    # (ra * rb) mod 3 for residues in {0, 1, 2}: 0 if either is 0, else
                    # 1 when equal (1*1, 2*2=4), 2 when not -- a 4-input function, no multiplier
                    rprod = Mux((ra == 0) | (rb == 0), 0, Mux(ra == rb, 1, 2))
                    m.d.comb += rtot.eq((racc + rprod) % 3)
                    m.d.sync += [racc.eq(Mux(f_next, 0, rtot)), ra_r.eq(ra), rb_r.eq(rb)]
                    rres[i][j] = result(racc, rtot, l, f"pe{i}_{j}_rres")
                    ra = ra_r
                a, f, f_next, l = a_r, f_r, f, l_r
                if (i + 1) % TR == 0:       # a register between tiles; within one, b goes on
                    b_down[j] = b_r
                    if chk:
                        rb_down[j] = rb_r

        products(m, platform, ops, name="pe_mul")

        # drain: a pending job (waiting for the last step to reach every PE) and an active one
        drain = ColumnDrain(m, ncols=C, tag_bits=self._tag, gap=self.GAP, max_wait=R)
        # res(i, j) of this job is complete (i // TR) + 2 + j cycles after its last step.
        wait = (R - 1) // TR
        drain.create(go & p.last, p.tag, wait=wait)

        # Accept a new MATMUL only if the pending drain (if any) starts in fewer than k
        # cycles (with a safety margin of 2): its first column must leave before the new
        # MATMUL's last step reaches row 0.
        # The bound is registered, so no path runs from the drain's counters through this
        # comparison into the feeder: a cycle later the remaining time is at most what it
        # is now (it never grows, except when a job is created: then the worst case), and
        # a pending job then is at most one pending now or created now.
        if self._direct:
            # Column j is read in cycle D + j, and the new MATMUL's first step (accepted in
            # cycle T') reaches PE(0, j) in cycle T' + 1 + j, its accumulators cleared the
            # cycle before: the drain must have started by T', none may still be pending.
            # (late: read in D + j + 1, so started by T' - 1: not in its first cycle either.)
            just_started = drain.act_valid & (drain.act_col == 0) if self._late else 0
            m.d.comb += self.i.ready.eq(~p.first | ~(drain.pend_valid | just_started))
        else:
            remaining = Signal(16)
            busy_left = drain.busy_left()
            m.d.comb += remaining.eq(Mux(drain.pend_cnt > busy_left, drain.pend_cnt, busy_left))
            created = go & p.last
            bound3, pend_r = Signal(16), Signal()
            m.d.sync += [bound3.eq(Mux(created, max(wait, C + self.GAP), remaining) + 3),
                         pend_r.eq(drain.pend_valid | created)]
            safe = ~pend_r | (bound3 <= p.k)
            m.d.comb += self.i.ready.eq(~p.first | safe)

        cols = Array(Cat(*(res[i][j] for i in range(R))) for j in range(C))
        out_col, out_valid = drain.act_col, drain.act_valid
        if self._late:
            out_col, out_valid = Signal.like(drain.act_col), Signal()
            m.d.sync += [out_col.eq(drain.act_col), out_valid.eq(drain.act_valid)]
        sel = cols[out_col]      # A bits a row, sign-extended to the int32 results
        words = [sel[A * i:A * (i + 1)] for i in range(R)]
        drain.connect(self, Cat(*(Cat(w, w[A - 1].replicate(32 - A)) for w in words)),
                      self._tag)
        if chk:     # every result leaving the array is checked against its residue
            rcols = Array(Cat(*(rres[i][j] for i in range(R))) for j in range(C))
            sel_r = rcols[out_col]
            bad = [mod3(m, self.o.payload.data[i], f"out_r{i}") != sel_r[2 * i:2 * i + 2]
                   for i in range(R)]
            m.d.comb += self.fault.eq(out_valid & Cat(*bad).any())
        return m
