"""The result drain both MATMUL engines share: a pending job (results latched or about to
be) and an active one, whose tile leaves one output channel per cycle."""

from amaranth import Signal, Mux
from amaranth.lib import stream
from amaranth.lib.wiring import Out

__all__ = ["drain_members", "ColumnDrain"]


def drain_members(column_layout, tag_bits):
    return {
        "o": Out(stream.Signature(column_layout, always_ready=True)),
        "idle": Out(1),
        # drains not finished yet (so a reader can wait only for the ones it needs)
        "pending": Out(1), "pending_tag": Out(tag_bits),
        "active": Out(1), "active_tag": Out(tag_bits),
    }


class ColumnDrain:
    """Drain state for ``ncols`` channels, ``gap`` idle cycles between two drains.

    ``create(cond, tag, wait)`` queues a job that may start ``wait`` cycles later (the
    systolic array's skew); ``tag`` may carry extra bits beyond the component's tag.
    """

    def __init__(self, m, *, ncols, tag_bits, gap, max_wait=0):
        self.m, self.ncols, self.gap_cycles = m, ncols, gap
        self.pend_valid, self.act_valid = Signal(name="pend_valid"), Signal(name="act_valid")
        self.pend_cnt = Signal(range(max_wait + 1), name="pend_cnt")
        self.pend_tag = Signal(tag_bits, name="pend_tag")
        self.act_tag = Signal(tag_bits, name="act_tag")
        self.act_col = Signal(range(ncols), name="act_col")
        self.gap = Signal(range(gap + 1), name="gap")
        self.promote = promote = (self.pend_valid & (self.pend_cnt == 0) & ~self.act_valid
                                  & (self.gap == 0))
        with m.If(self.pend_valid & (self.pend_cnt != 0)):
            m.d.sync += self.pend_cnt.eq(self.pend_cnt - 1)
        with m.If(self.gap != 0):
            m.d.sync += self.gap.eq(self.gap - 1)
        with m.If(self.act_valid):
            with m.If(self.act_col == ncols - 1):
                m.d.sync += [self.act_valid.eq(0), self.gap.eq(gap)]
            with m.Else():
                m.d.sync += self.act_col.eq(self.act_col + 1)
        with m.If(promote):
            m.d.sync += [self.act_valid.eq(1), self.act_col.eq(0),
                         self.act_tag.eq(self.pend_tag), self.pend_valid.eq(0)]
        self.idle = ~self.pend_valid & ~self.act_valid & (self.gap == 0)

    def create(self, cond, tag, wait=0):
        with self.m.If(cond):
            self.m.d.sync += [self.pend_valid.eq(1), self.pend_cnt.eq(wait),
                              self.pend_tag.eq(tag)]

    def connect(self, comp, data, tag_bits, busy=None):
        """Drive ``comp``'s drain members; ``data`` is the selected column's payload; the
        component is not idle while ``busy`` (work that has not reached the drain yet)."""
        self.m.d.comb += [
            comp.o.valid.eq(self.act_valid),
            comp.o.payload.data.eq(data),
            comp.o.payload.col.eq(self.act_col),
            comp.o.payload.last.eq(self.act_col == self.ncols - 1),
            comp.o.payload.tag.eq(self.act_tag[:tag_bits]),
            comp.idle.eq(self.idle if busy is None else self.idle & ~busy),
            comp.pending.eq(self.pend_valid), comp.pending_tag.eq(self.pend_tag[:tag_bits]),
            comp.active.eq(self.act_valid), comp.active_tag.eq(self.act_tag[:tag_bits]),
        ]

    def busy_left(self):
        """Cycles until the active drain (and its gap) is over."""
        return Mux(self.act_valid, self.ncols - self.act_col + self.gap_cycles, self.gap)

    def act_valid_next(self):
        """``act_valid`` one cycle later (what its register loads): a copy of the register
        loading this equals it every cycle."""
        return self.promote | (self.act_valid & (self.act_col != self.ncols - 1))

    def busy_left_counter(self):
        """``busy_left()`` as a register of its own, equal to it every cycle (a count down
        from ``ncols + gap`` as a job starts): its readers get no adder in front of them."""
        m = self.m
        bl = Signal(range(self.ncols + self.gap_cycles + 1), name="busy_left")
        with m.If(self.promote):
            m.d.sync += bl.eq(self.ncols + self.gap_cycles)
        with m.Elif(bl != 0):
            m.d.sync += bl.eq(bl - 1)
        return bl
