"""The compute queue's executor: MATMUL on the systolic array, REQUANT, SYNC."""

from amaranth import Module, Signal, Mux, Cat
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from .isa import view, Engine, ErrorCode, MatmulInsn, Opcode, Queue, RequantInsn, Header
from .queue import Front, executor_members
from .requant import RequantUnit
from .systolic import SystolicArray

__all__ = ["Compute", "rd_port", "wr_port"]


def rd_port(width):
    return wiring.Signature({"addr": Out(16), "en": Out(1), "data": In(width)})


def wr_port(width):
    return wiring.Signature({"addr": Out(16), "data": Out(width), "en": Out(1)})


class Compute(wiring.Component):
    """Feeds MATMULs to the array one k step per cycle, writes drained columns to the
    accumulators (adding the old value when ``accumulate``), and runs REQUANT through the
    requant unit one accumulator entry per cycle.

    A MATMUL leaves the executing slot once it is fed; its release tokens are given when its
    last column is written. A REQUANT first waits for the earlier MATMULs that still write
    the accumulators it reads; SYNC waits for every earlier MATMUL to drain.
    """

    def __init__(self, cfg):
        self._cfg = cfg
        R, C = cfg.rows, cfg.cols
        members = executor_members()
        members.update({
            "act_rd": Out(rd_port(8 * R)),
            "wgt_rd": Out(rd_port(8 * C)),
            "acc_rd": Out(rd_port(32 * R)),      # drain read-modify-write
            "acc_rq": Out(rd_port(32 * R)),      # requant reads
            "acc_wr": Out(wr_port(32 * R)),
            "scale_rd": Out(rd_port(8 * cfg.bus_bytes)),
            "act_wr": Out(wr_port(8 * R)),
            "step": Out(1),          # a k step entered the array this cycle
            "requant_busy": Out(1),
            "drain_idle": Out(1),
        })
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        cfg = self._cfg
        R, C = cfg.rows, cfg.cols
        lanes = cfg.scale_lanes
        m.submodules.array = array = SystolicArray(rows=R, cols=C)
        m.submodules.requant = rq = RequantUnit(rows=R)

        def checks(insn):
            op = view(Header, insn).opcode
            mm, r = view(MatmulInsn, insn), view(RequantInsn, insn)
            is_mm, is_rq = op == Opcode.MATMUL, op == Opcode.REQUANT
            n = r.count
            overlap = (r.residual & (r.out_addr != r.res_addr) & (r.out_addr < r.res_addr + n)
                       & (r.res_addr < r.out_addr + n))
            return [
                (is_mm & ((mm.engine != Engine.SYSTOLIC) | (mm.k == 0)), ErrorCode.ILLEGAL_FIELD),
                (is_rq & (n == 0), ErrorCode.ILLEGAL_FIELD),
                (is_mm & ((mm.act_addr + mm.k > cfg.act_depth)
                          | (mm.wgt_addr + mm.k > cfg.wgt_depth)
                          | (mm.acc_addr + C > cfg.acc_depth)), ErrorCode.SP_RANGE),
                (is_rq & ((r.acc_addr + n > cfg.acc_depth) | (r.out_addr + n > cfg.act_depth)
                          | (r.residual & (r.res_addr + n > cfg.act_depth))
                          | (r.scale_addr + n > cfg.scale_depth * lanes)), ErrorCode.SP_RANGE),
                (is_rq & overlap, ErrorCode.OVERLAP),
            ]
        front = Front(m, self, queue=Queue.COMPUTE.value, checks=checks)
        mm, rqi = view(MatmulInsn, front.insn), view(RequantInsn, front.insn)
        op = front.hdr.opcode
        run = front.state == Front.RUN

        # --- accumulator writer (drained columns -> acc scratchpad) -----------------------
        o = array.o.payload
        t_acc = o.tag[:16]
        t_accum = o.tag[16]
        t_rel = o.tag[17:20]
        w_valid = Signal()
        w_addr = Signal(16)
        w_data = Signal(32 * R)
        w_accum = Signal()
        w_last = Signal()
        w_rel = Signal(3)
        m.d.sync += [w_valid.eq(array.o.valid), w_addr.eq(t_acc + o.col), w_data.eq(o.data),
                     w_accum.eq(t_accum), w_last.eq(o.last & array.o.valid), w_rel.eq(t_rel)]
        old = self.acc_rd.data
        summed = Cat(*((w_data.word_select(i, 32) + Mux(w_accum, old.word_select(i, 32), 0))[:32]
                       for i in range(R)))
        m.d.comb += [self.acc_wr.addr.eq(w_addr), self.acc_wr.data.eq(summed),
                     self.acc_wr.en.eq(w_valid)]
        drain_idle = array.idle & ~w_valid
        m.d.comb += self.drain_idle.eq(drain_idle)
        matmul_release = Mux(w_valid & w_last, w_rel, 0)

        # --- MATMUL feeder ----------------------------------------------------------------
        step = Signal(16)
        f_valid, f_first, f_last = Signal(), Signal(), Signal()
        feeding = run & (op == Opcode.MATMUL)
        issue = feeding & (step < mm.k) & (~f_valid | array.i.ready)
        m.d.comb += [
            array.i.valid.eq(f_valid),
            array.i.payload.a.eq(self.act_rd.data),
            array.i.payload.b.eq(self.wgt_rd.data),
            array.i.payload.first.eq(f_first),
            array.i.payload.last.eq(f_last),
            array.i.payload.k.eq(mm.k),
            array.i.payload.tag.eq(Cat(mm.acc_addr, mm.accumulate, front.hdr.release)),
            self.wgt_rd.addr.eq(mm.wgt_addr + step),
            self.wgt_rd.en.eq(issue),
            self.step.eq(array.i.valid & array.i.ready),
        ]
        with m.If(front.start):
            m.d.sync += [step.eq(0), f_valid.eq(0)]
        with m.Elif(issue):
            m.d.sync += [step.eq(step + 1), f_valid.eq(1), f_first.eq(step == 0),
                         f_last.eq(step == mm.k - 1)]
        with m.Elif(array.i.ready):
            m.d.sync += f_valid.eq(0)
        feed_done = feeding & (step == mm.k) & (~f_valid | array.i.ready)

        # --- REQUANT ----------------------------------------------------------------------
        n = Signal(16)
        n_out = Signal(16)
        q_valid = Signal()
        lane = Signal(range(lanes))
        requanting = run & (op == Opcode.REQUANT)
        q_issue = requanting & (n < rqi.count) & (~q_valid | rq.i.ready)
        sidx = rqi.scale_addr + n
        m.d.comb += [
            rq.i.valid.eq(q_valid),
            rq.i.payload.acc.eq(self.acc_rq.data),
            rq.i.payload.res.eq(self.act_rd.data),
            rq.i.payload.mult.eq(self.scale_rd.data.word_select(lane, 16)),
            rq.i.payload.shift.eq(rqi.shift),
            rq.i.payload.residual.eq(rqi.residual),
            rq.i.payload.relu.eq(rqi.relu),
            self.scale_rd.addr.eq(sidx >> (lanes.bit_length() - 1)),
            self.scale_rd.en.eq(q_issue),
            rq.o.ready.eq(1),
            self.act_wr.addr.eq(rqi.out_addr + n_out),
            self.act_wr.data.eq(rq.o.payload),
            self.act_wr.en.eq(rq.o.valid),
            self.requant_busy.eq(requanting),
        ]
        with m.If(front.start):
            m.d.sync += [n.eq(0), n_out.eq(0), q_valid.eq(0)]
        with m.Else():
            with m.If(q_issue):
                m.d.sync += [n.eq(n + 1), q_valid.eq(1), lane.eq(sidx[:lanes.bit_length() - 1])]
            with m.Elif(rq.i.ready):
                m.d.sync += q_valid.eq(0)
            with m.If(rq.o.valid):
                m.d.sync += n_out.eq(n_out + 1)
        rq_done = requanting & (n_out == rqi.count)

        # shared read ports
        m.d.comb += [self.acc_rq.addr.eq(rqi.acc_addr + n), self.acc_rq.en.eq(q_issue),
                     self.acc_rd.addr.eq(t_acc + o.col), self.acc_rd.en.eq(array.o.valid)]
        with m.If(requanting):
            m.d.comb += [self.act_rd.addr.eq(rqi.res_addr + n), self.act_rd.en.eq(q_issue)]
        with m.Else():
            m.d.comb += [self.act_rd.addr.eq(mm.act_addr + step), self.act_rd.en.eq(issue)]

        # A REQUANT waits only for earlier MATMULs whose drain still writes the accumulators
        # it reads, so it can run while a later MATMUL drains; SYNC waits for every drain.
        lo, hi = rqi.acc_addr, rqi.acc_addr + rqi.count

        def hits(valid, base, width):
            return valid & (base < hi) & (lo < base + width)
        acc_busy = (hits(array.pending, array.pending_tag[:16], C)
                    | hits(array.active, array.active_tag[:16], C) | hits(w_valid, w_addr, 1))
        ready = Signal()
        with m.Switch(op):
            with m.Case(Opcode.MATMUL):
                m.d.comb += ready.eq(1)
            with m.Case(Opcode.REQUANT):
                m.d.comb += ready.eq(~acc_busy)
            with m.Default():
                m.d.comb += ready.eq(drain_idle)
        # MATMUL releases on write-back of its last column.
        m.d.comb += [
            front.extra_ready.eq(ready),
            front.finish.eq(feed_done | rq_done | (run & (op == Opcode.SYNC))),
            self.give.eq(Mux(op == Opcode.MATMUL, 0, front.give) | matmul_release),
        ]
        return m
