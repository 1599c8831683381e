"""The compute queue's executor: MATMUL on the engines the configuration builds
(hw/engines), REQUANT, SFU (hw/sfu.py, when the configuration builds it), SYNC."""

from functools import partial
from types import SimpleNamespace

from amaranth import Module, Signal, Mux, Cat, Const, signed
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from .config import span_bits
from .engines import EngineSpec, act_banks, mode_legal, specs_of
from .isa import (view, ErrorCode, MatmulInsn, Opcode, Queue, RequantInsn, SfuFunc, SfuInsn,
                  Header, SOFTMAX_FUNCS)
from .lib import kept, registered, take
from .queue import Front, executor_members, sum_exceeds
from .requant import (RequantUnit, gather_groups, make_requant, rne_wrap_parts,
                      split_product)
from .sfu import Sfu

__all__ = ["Compute", "rd_port", "wr_port", "act_rd_port", "TAG_BITS"]

#: What a MATMUL carries to its drained columns: acc_addr, accumulate, release, scaled,
#: shift, scale_addr.
TAG_BITS = 16 + 1 + 3 + 1 + 6 + 16


class _Column:
    """A column in the accumulator writer's pipeline: its valid bit and its fields."""

    def __init__(self, valid, fields):
        self.valid, self.fields = valid, fields

    def __getattr__(self, name):
        return getattr(self.fields, name)


def rd_port(width):
    return wiring.Signature({"addr": Out(16), "en": Out(1), "data": In(width)})


def act_rd_port(rows):
    """The activation scratchpad's compute port: one entry, or (``quad``) the four entries
    ``4*addr .. 4*addr + 3`` at once from its four banks (for an engine whose act_group is 4)."""
    return wiring.Signature({"addr": Out(16), "en": Out(1), "quad": Out(1),
                             "data": In(8 * rows), "data4": In(32 * rows)})


def wr_port(width):
    return wiring.Signature({"addr": Out(16), "data": Out(width), "en": Out(1)})


class Compute(wiring.Component):
    """Feeds MATMULs to their engine, one step per cycle (``EngineSpec.steps``; an
    activation read serves ``EngineSpec.planes`` of them), writes drained columns to the
    accumulators (scaled by a per-group multiplier when ``scaled``, adding the old value
    when ``accumulate``), and runs REQUANT through the requant unit one accumulator entry
    per cycle. The engines come from hw/engines; this unit names none of them.

    A MATMUL leaves the executing slot once it is fed; its release tokens are given when its
    last column is written. A REQUANT first waits for the earlier MATMULs that still write
    the accumulators it reads; SYNC waits for every earlier MATMUL to drain. A MATMUL on one
    engine waits until the others have drained (they share the accumulator writer).

    Members beyond the executor's: the scratchpad ports; ``engine_step`` and
    ``engine_credit``, a bit per engine built (``specs_of(cfg)`` order): its ``step`` and
    ``credit`` events for the counters.
    """

    def __init__(self, cfg):
        self._cfg = cfg
        R, C = cfg.rows, cfg.cols
        members = executor_members()
        members.update({
            "act_rd": Out(act_rd_port(R)),
            "wgt_rd": Out(rd_port(8 * C)),
            "acc_rd": Out(rd_port(32 * R)),      # drain read-modify-write
            "acc_rq": Out(rd_port(32 * R)),      # requant reads
            "acc_wr": Out(wr_port(32 * R)),
            "scale_rd": Out(rd_port(8 * cfg.bus_bytes)),
            "scale_dr": Out(rd_port(8 * cfg.bus_bytes)),     # group scales for the drain
            "act_wr": Out(wr_port(8 * R)),
            # act_rd's data is still needed next cycle (a step waits for its engine): a
            # shared activation port must not serve another reader this cycle
            "act_keep": Out(1),
            "engine_step": Out(len(specs_of(cfg))),
            "engine_credit": Out(len(specs_of(cfg))),
            "requant_busy": Out(1),
            "sfu_busy": Out(1),
            "drain_idle": Out(1),
            "fault": Out(1),         # a protection check failed (residue accumulators)
        })
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        x = self._setup(m)
        self._checks(m, x)
        self._writer(m, x, platform)
        self._feeder(m, x)
        self._requant(m, x)
        self._addresses(m, x)
        self._sfu(m, x)
        self._verdicts(m, x)
        return m

    def _setup(self, m):
        """Datapath widths, the engines the configuration builds and the requant unit."""
        cfg = self._cfg
        pipe = cfg.pipelining
        R = cfg.rows
        lanes = cfg.scale_lanes
        lane_bits = lanes.bit_length() - 1
        specs = specs_of(cfg)
        # Datapath widths: an instruction runs only once its ranges are checked (full width,
        # in Front), so its addresses and counts fit the scratchpads' depths from then on.
        ab, wb, cb = (span_bits(cfg.act_depth), span_bits(cfg.wgt_depth),
                      span_bits(cfg.acc_depth))
        sb = span_bits(cfg.scale_depth * lanes)
        stb = max(ab, wb)       # a MATMUL's steps: k <= act_depth, steps <= wgt_depth
        shared = cfg.scratchpad_ports == "shared"
        # an engine that gives a column's data a cycle after its valid (EngineSpec.late_column)
        # drains into the two-stage writer alone
        late = any(es.late_column(cfg) for es in specs)
        if late and len(specs) > 1:
            raise ValueError(f"config {cfg.name!r}: an engine whose columns come a cycle late "
                             f"must be the only one")
        rq_lanes = cfg.requant_lanes or R
        # Lanes fewer than rows on shared ports: the entry is read again for each group of
        # lanes (its data is used the cycle after a read, see below), so the requant unit
        # needs no copy of the whole entry
        reread = shared and rq_lanes < R
        # With requant_late_residual and activation banks, the residual is registered as
        # it leaves the banks and their multiplexer comes after (no multiplexer between
        # a block RAM's output and the requant unit's input registers); the unit takes it
        # a cycle after the entry (late_res)
        late_res = (not reread and rq_lanes == R and act_banks(cfg) > 1
                    and pipe.requant_late_residual and cfg.requant_mult_bits == 16)
        if reread:
            m.submodules.requant = rq = RequantUnit(rows=rq_lanes,
                                                    mult_bits=cfg.requant_mult_bits,
                                                    deep=pipe.requant_registered_inputs)
        elif late_res:
            m.submodules.requant = rq = RequantUnit(rows=R, deep=True, late_res=True)
        else:
            m.submodules.requant = rq = make_requant(cfg)
        # the planes counter counts up to the most steps an activation read serves
        max_planes = max(es.max_planes(cfg) for es in specs)
        plane_bits = max(1, (max_planes - 1).bit_length())
        units = []
        for es in specs:
            m.submodules[es.name] = unit = es.component(cfg, tag_bits=TAG_BITS,
                                                        plane_bits=plane_bits)
            units.append(unit)
        m.d.comb += self.fault.eq(Cat(*(u.fault for u in units)).any())

        return SimpleNamespace(cfg=cfg, pipe=pipe, R=R, lanes=lanes, lane_bits=lane_bits,
                               specs=specs, ab=ab, wb=wb, cb=cb, sb=sb, stb=stb, shared=shared,
                               late=late, rq_lanes=rq_lanes, reread=reread, late_res=late_res,
                               rq=rq, max_planes=max_planes, plane_bits=plane_bits, units=units)

    def _checks(self, m, x):
        """The executing slot (Front) with the compute queue's checks: ILLEGAL_FIELD, SP_RANGE,
        MISALIGNED and OVERLAP, in that order, each rule from the engines' specs."""
        cfg, pipe, specs, lanes, ab = take(x, "cfg pipe specs lanes ab")

        def per_engine(mm, rule):
            """``rule(spec, mode)`` of the MATMUL's engine (of the engines built; a MATMUL
            for another is refused first)."""
            out = rule(specs[0], mm.mode[specs[0].name])
            for es in specs[1:]:
                out = Mux(mm.engine == es.tag, rule(es, mm.mode[es.name]), out)
            return out

        def ranges(insn):
            """The (start, length) pairs of the ranges the checks bound."""
            mm, r, sf = view(MatmulInsn, insn), view(RequantInsn, insn), view(SfuInsn, insn)
            ch = per_engine(mm, lambda es, mode: es.channels(cfg))
            steps = per_engine(mm, lambda es, mode: es.steps(cfg, mm.k, mode))
            n = r.count
            out = [(mm.act_addr, mm.k), (mm.wgt_addr, steps),
                   (mm.acc_addr, ch), (mm.scale_addr, ch), (r.acc_addr, n),
                   (r.out_addr, n), (r.res_addr, n), (r.scale_addr, n)]
            if cfg.sfu:     # the source in the activations or the accumulators, the
                #             second source in the activations or the scales, the output
                out += [(sf.src, sf.count), (sf.src, sf.count), (sf.src2, sf.count),
                        (sf.src2, sf.count), (sf.dst, sf.count)]
            return out

        def ends(insn):
            """The range ends the checks compare (registered first: see Front lookahead)."""
            return [a + b for a, b in ranges(insn)]

        bounds = [cfg.act_depth, cfg.wgt_depth, cfg.acc_depth, cfg.scale_depth * lanes,
                  cfg.acc_depth, cfg.act_depth, cfg.act_depth, cfg.scale_depth * lanes]
        if cfg.sfu:
            bounds += [cfg.act_depth, cfg.acc_depth, cfg.act_depth, cfg.scale_depth * lanes,
                       cfg.act_depth]

        def checks(insn, pre=None):
            op = view(Header, insn).opcode
            mm, r = view(MatmulInsn, insn), view(RequantInsn, insn)
            is_mm, is_rq = op == Opcode.MATMUL, op == Opcode.REQUANT
            if pre is None:     # on the instruction itself: sums as wide as the bounds
                over = [sum_exceeds(p, bd) for p, bd in zip(ranges(insn), bounds)]
                # OVERLAP is raised only with the ranges inside the scratchpad (SP_RANGE
                # comes first), so its comparisons need no more bits than the depth
                out, res, n = r.out_addr[:ab], r.res_addr[:ab], r.count[:ab + 1]
                rq_res, rq_out = res + n, out + n
            else:               # on the registered sums
                over = [e > bd for e, bd in zip(pre, bounds)]
                out, res, rq_res, rq_out = r.out_addr, r.res_addr, pre[6], pre[5]
            act_over, wgt_over, acc_over, scale_over, rq_acc, rq_out_over, rq_res_over, \
                rq_scale = over[:8]
            sfu_illegal, sfu_range, sfu_overlap = self._sfu_checks(insn, op, over[8:], pre)
            overlap = (r.residual & (out != res) & (out < rq_res) & (res < rq_out))
            # per engine built: this MATMUL names it; its mode or k refused; misaligned
            named = [is_mm & (mm.engine == es.tag) for es in specs]
            refused = [is_es & (~mode_legal(es.tag, mm.mode.raw)
                                | es.illegal(cfg, mm.k, mm.mode[es.name]))
                       for es, is_es in zip(specs, named)]
            misaligned = [is_es & es.misaligned(mm.act_addr)
                          for es, is_es in zip(specs, named) if es.act_group > 1]
            return [
                (is_mm & (~Cat(*named).any() | (mm.k == 0)
                          | (mm.scaled & int(not cfg.group_scale)) | Cat(*refused).any()),
                 ErrorCode.ILLEGAL_FIELD),
                (is_rq & (r.count == 0), ErrorCode.ILLEGAL_FIELD),
                (sfu_illegal, ErrorCode.ILLEGAL_FIELD),
                (is_mm & (act_over | wgt_over | acc_over | (mm.scaled & scale_over)),
                 ErrorCode.SP_RANGE),
                (is_rq & (rq_acc | rq_out_over | (r.residual & rq_res_over) | rq_scale),
                 ErrorCode.SP_RANGE),
                (sfu_range, ErrorCode.SP_RANGE),
                (Cat(*misaligned).any(), ErrorCode.MISALIGNED),
                (is_rq & overlap, ErrorCode.OVERLAP),
                (sfu_overlap, ErrorCode.OVERLAP),
            ]
        # With check_lookahead the checks' sums are registered from the queue's output,
        # their conditions the cycle after and the verdict the cycle after that; without,
        # the verdict is registered straight from the instruction as it enters: no
        # registers for the sums, and no wait for the lookahead
        if pipe.check_lookahead:
            front = Front(m, self, queue=Queue.COMPUTE.value, checks=checks, pre=ends,
                          lookahead=True, onehot=True)
        else:
            front = Front(m, self, queue=Queue.COMPUTE.value, checks=checks)
        mm, rqi = view(MatmulInsn, front.insn), view(RequantInsn, front.insn)
        is_op = front.is_op         # the slot's opcode, decoded into flops
        run = front.state == Front.RUN
        # the MATMUL's engine, as one bit per engine built
        named = Cat(*(mm.engine == es.tag for es in specs))

        vars(x).update(per_engine=per_engine, front=front, mm=mm, rqi=rqi, is_op=is_op, run=run,
                       named=named)

    def _sfu_checks(self, insn, op, over, pre):
        """The SFU's (ILLEGAL_FIELD, SP_RANGE, OVERLAP) conditions from its ranges' ``over``
        flags (source in act / acc, second source in act / scales, output) and, with
        ``pre``, the registered range ends: the rules of sw.golden's ``_check_sfu``."""
        cfg = self._cfg
        sf = view(SfuInsn, insn)
        if not cfg.sfu:     # dispatch refuses the opcode
            return Const(0), Const(0), Const(0)
        is_sfu = op == Opcode.SFU
        f, n = sf.func, sf.count
        rb = (cfg.rows - 1).bit_length()
        is_ = {fn: f == fn for fn in SfuFunc}
        known = f.as_value().matches(*(fn.value for fn in SfuFunc))
        bad_count = ((n == 0) | (is_[SfuFunc.ROPE] & n[0])
                     | (is_[SfuFunc.TRANSPOSE] & (n[:rb] != 0 if rb else 0))
                     | (is_[SfuFunc.TABLE] & (n != 256 // cfg.rows)))
        src_act_over, src_acc_over, src2_act_over, src2_scale_over, dst_over = over
        stats = is_[SfuFunc.SOFTMAX_MAX] | is_[SfuFunc.SOFTMAX_SUM]    # no output
        soft = f.as_value().matches(*(fn.value for fn in SOFTMAX_FUNCS))
        norm = is_[SfuFunc.RMSNORM] | is_[SfuFunc.LAYERNORM]
        two = (is_[SfuFunc.MUL] | is_[SfuFunc.ADD] | is_[SfuFunc.ROPE] | is_[SfuFunc.MERGE])
        writes = ~is_[SfuFunc.TABLE] & ~stats
        rng = (Mux(soft, src_acc_over, src_act_over) | (two & src2_act_over)
               | (norm & src2_scale_over) | (writes & dst_over))
        if pre is None:
            src_end, src2_end, dst_end = sf.src + n, sf.src2 + n, sf.dst + n
        else:
            src_end, src2_end, dst_end = pre[8], pre[10], pre[12]

        def partly(a, a_end, b, b_end):
            return (a != b) & (a < b_end) & (b < a_end)
        ovl = writes & ((~soft & partly(sf.dst, dst_end, sf.src, src_end))
                        | (two & partly(sf.dst, dst_end, sf.src2, src2_end)))
        return is_sfu & (~known | bad_count), is_sfu & rng, is_sfu & ovl

    def _writer(self, m, x, platform):
        """The engines' drained columns into the accumulators: group scales, the old value
        added, the write; and the drains' idleness."""
        (cfg, pipe, R, units, cb, sb, lane_bits, late) = \
            take(x, "cfg pipe R units cb sb lane_bits late")
        # --- the engines' drains -> accumulator writer --------------------------------------
        # With group scales (cfg.group_scale) a drained column goes through eight stages,
        # each a register deep (every one of them on the ECP5's worst path once):
        #   0: the column leaves its engine; read its scale
        #   1: register the scale RAM's word
        #   2: register the lane's scale (a copy per multiplier) and the column (with
        #      group_scale_copy twice, first in the fabric: the stages below come a cycle
        #      later)
        #   3: multiply: the column's low and high 16-bit halves by the scale
        #   4: add the two partial products
        #   5: shift by 32, 16 and 8 (with round-half-to-even's guard and sticky bits);
        #      read the old accumulator
        #   6: shift by 4, 2 and 1: the quotient and its increment; register the old value
        #   7: add quotient, increment and old value; write
        # An unscaled column goes through the same stages with scale 1 and shift 0.
        # Without group scales there are two stages: the old value is read as the column
        # leaves its engine, added and written in stage 1.
        o_valid = Signal()
        o = Signal.like(units[0].o.payload)
        m.d.comb += o_valid.eq(Cat(*(u.o.valid for u in units)).any())
        # one engine's column (never two at once: an engine starts only once the others
        # have drained), chosen by the later engines' valids alone, so a lone engine's
        # column reaches the writer with no gate on it
        m.d.comb += o.eq(units[0].o.payload)
        for u in units[1:]:
            with m.If(u.o.valid):
                m.d.comb += o.eq(u.o.payload)
        t_acc, t_accum, t_rel = o.tag[:cb], o.tag[16], o.tag[17:20]
        t_scaled, t_shift, t_saddr = o.tag[20], o.tag[21:27], o.tag[27:27 + sb]
        s_idx = (t_saddr + o.col)[:sb]
        m.d.comb += [self.scale_dr.addr.eq(s_idx >> lane_bits),
                     self.scale_dr.en.eq(o_valid & t_scaled)]
        # each stage's column: a valid bit (reset) and its fields (no reset, nor on the data
        # registers below: a small fanout for the accelerator's reset)
        ctl_layout = data.StructLayout({"addr": cb, "accum": 1, "last": 1, "rel": 3,
                                        "scaled": 1, "shift": 6})
        # (with group_scale_copy the lane's scale is registered once more, a copy
        # per multiplier in the fabric: stages 3 to 7 below come a cycle later)
        gx = int(pipe.group_scale_copy)
        n_ctl = 7 + gx if cfg.group_scale else 1
        ctl = [_Column(Signal(name=f"wr_valid{i + 1}"),
                       Signal(ctl_layout, name=f"wr_ctl{i + 1}", reset_less=True))
               for i in range(n_ctl)]
        c0 = ctl[0]
        m.d.sync += [c0.valid.eq(o_valid), c0.addr.eq(t_acc + o.col),
                     c0.accum.eq(t_accum), c0.last.eq(o.last), c0.rel.eq(t_rel),
                     c0.scaled.eq(t_scaled), c0.shift.eq(Mux(t_scaled, t_shift, 0))]
        m.d.sync += [x for i in range(n_ctl - 1)
                     for x in (ctl[i + 1].valid.eq(ctl[i].valid),
                               ctl[i + 1].fields.eq(ctl[i].fields))]
        d1 = Signal(32 * R, reset_less=True)
        lane1 = Signal(lane_bits, reset_less=True)
        m.d.sync += [d1.eq(o.data), lane1.eq(s_idx[:lane_bits])]
        if cfg.group_scale:
            reg = partial(registered, m)
            # the scale RAM's word, registered where it leaves the RAM; then the lane's
            # scale, a copy per multiplier (on an ECP5 each DSP block's input register:
            # one register cannot sit near all of them)
            scale_q = reg(self.scale_dr.data, "gs_word")
            lane2 = reg(lane1, "gs_lane")
            scale = Mux(ctl[1].scaled, scale_q.word_select(lane2, 16), 1).as_signed()
            d2 = reg(d1, "gs_d2")
            if gx:
                d2 = reg(d2, "gs_d3")
            vals, ups = [], []
            for i in range(R):
                # stage 2's registers (the column's word, the lane's scale) and stage 3's
                # products: in the DSP blocks on an ECP5 (each block's own copy of the
                # scale)
                # (with group_scale_copy each block has a fabric copy first: no
                # multiplexer output routed to every block's input pins)
                sc = kept(m, scale, f"gs{i}_scale", platform) if gx else scale
                p4 = reg(split_product(m, platform, d2.word_select(i, 32), sc,
                                       f"gs_prod{i}"), f"gs_prod{i}", shape=signed(48))
                # the shift amounts, a copy per lane for each of the shifter's two
                # segments (one register's shift into every lane's shifter is a fanout
                # across all of them)
                sh = [kept(m, ctl[k + gx].shift, f"gs{i}_shift{k}", platform)
                      for k in (3, 4)]
                q, up = rne_wrap_parts(m, p4, sh[0], 32, f"gs{i}", split=(3, reg, sh[1]))
                vals.append(reg(q, f"gs_q{i}"))
                ups.append(reg(up, f"gs_up{i}"))
            dr, w = ctl[4 + gx], ctl[6 + gx]    # the drain's accumulator read; the write
            in_flight = ctl                     # columns read but not yet written
        else:
            data_ = o.data.as_value() if late else d1
            vals = [data_.word_select(i, 32) for i in range(R)]
            dr, w = None, ctl[0]
            in_flight = ctl
        dr_addr = (t_acc + o.col)[:cb] if dr is None else dr.addr
        dr_rd = o_valid if dr is None else dr.valid
        w_addr, w_en, w_accum, w_last, w_rel = w.addr, w.valid, w.accum, w.last, w.rel
        old = self.acc_rd.data
        summed = Signal(32 * R)
        if cfg.group_scale:
            # The old value is read in stage 5 and registered in stage 6 (a block RAM's
            # output, then a carry chain and the routing back to the RAM's input was the
            # ECP5's worst path). No read misses a write still in flight: the columns of a
            # drain go to distinct entries, and two drains are three cycles apart or more
            # (ColumnDrain: the gap cycle, then the promotion), the write two stages after
            # the read (tests/test_acc_chain.py chains drains onto shared entries).
            # The register takes the old value only for an accumulating write (zero
            # otherwise): the write's accumulate flag is not in front of the adder.
            old_r = Signal(32 * R, name="wr_old", reset_less=True)
            m.d.sync += old_r.eq(Mux(ctl[5 + gx].accum, old, 0))
            olds = [old_r.word_select(i, 32) for i in range(R)]
            # quotient + increment + old in one carry chain: (2q + up) + (2old + up) =
            # 2(q + old + up)
            m.d.comb += summed.eq(Cat(*((Cat(ups[i], vals[i]) + Cat(ups[i], olds[i]))[1:33]
                                        for i in range(R))))
        else:
            olds = [Mux(w_accum, old.word_select(i, 32), 0) for i in range(R)]
            m.d.comb += summed.eq(Cat(*((vals[i] + olds[i])[:32] for i in range(R))))
        m.d.comb += [self.acc_rd.addr.eq(dr_addr), self.acc_rd.en.eq(dr_rd),
                     self.acc_wr.addr.eq(w_addr), self.acc_wr.data.eq(summed),
                     self.acc_wr.en.eq(w_en)]
        drain_idle = (Cat(*(u.idle for u in units)).all()
                      & ~Cat(*(c.valid for c in in_flight)).any())
        if pipe.idle_registered:
            # registered (its tree reaches no status flop's logic): a cycle old, it is never
            # wrongly up where it is used. Work reaches an engine only as a step the feeder
            # offered the cycle before, in RUN with the step pending, so the unit is still
            # busy (not idle, blocked or in the slot) in the cycle the old value is seen.
            di_r = Signal(init=1)
            m.d.sync += di_r.eq(drain_idle)
            drain_idle = di_r
        m.d.comb += self.drain_idle.eq(drain_idle)
        matmul_release = Mux(w_en & w_last, w_rel, 0)

        vars(x).update(in_flight=in_flight, drain_idle=drain_idle, matmul_release=matmul_release,
                       dr_rd=dr_rd)

    def _feeder(self, m, x):
        """MATMUL steps into their engine: weight entries, activation reads, the step's fields."""
        (cfg, front, per_engine, mm, stb, plane_bits, ab, wb, units, run, is_op, named, specs,
         max_planes) = \
            take(x, "cfg front per_engine mm stb plane_bits ab wb units run is_op named specs "
                     "max_planes")
        # --- MATMUL feeder: a step counter, and (plane, read) for the activations ---------
        # A step reads a weight entry; its activations are read with its plane 0 and serve
        # the engine's planes (1 on an engine that reads them every step).
        total = Signal(stb)     # steps of this MATMUL, registered as it starts
        with m.If(front.start):
            m.d.sync += total.eq(per_engine(mm, lambda es, mode: es.steps(cfg, mm.k, mode)))
        step = Signal(stb)
        plane = Signal(plane_bits)
        grp = Signal(ab)        # activation reads so far
        f_valid, f_first, f_last, f_new = (Signal(name=f"f_{n}")
                                           for n in ("valid", "first", "last", "new"))
        # the fed step's engine (a bit per engine), registered as it issues: the engines'
        # input valids come from flops, not from the instruction's decoding
        f_eng = Signal(len(units), name="f_eng")
        f_plane = Signal(plane_bits)
        # the first step issues in the MATMUL's first RUN cycle: the decision to start (tokens,
        # hazards, the engines' readiness) reaches no read enable in the same cycle
        feeding = run & is_op[Opcode.MATMUL]
        tgt_ready = Cat(*(f & u.i.ready for f, u in zip(f_eng, units))).any()  # (f_valid)
        more = Signal()         # steps left to issue (a flag: no comparator before the reads)
        issue = feeding & more & (~f_valid | tgt_ready)
        tag = Cat(mm.acc_addr, mm.accumulate, front.hdr.release, mm.scaled, mm.shift,
                  mm.scale_addr)
        for f, u in zip(f_eng, units):
            p = u.i.payload
            m.d.comb += [
                # (with one engine, every MATMUL that runs is its: no gate)
                u.i.valid.eq(f_valid & f if len(units) > 1 else f_valid),
                p.act.eq(self.act_rd.data), p.act4.eq(self.act_rd.data4),
                p.wgt.eq(self.wgt_rd.data), p.plane.eq(f_plane), p.new.eq(f_new),
                p.first.eq(f_first), p.last.eq(f_last), p.steps.eq(total),
                p.mode.eq(mm.mode), p.tag.eq(tag),
            ]
        m.d.comb += [self.engine_step.eq(Cat(*(u.step for u in units))),
                     self.engine_credit.eq(Cat(*(u.credit for u in units)))]
        m.d.comb += [self.wgt_rd.addr.eq((mm.wgt_addr[:wb] + step)[:wb]),
                     self.wgt_rd.en.eq(issue)]
        # A header step (EngineSpec.head: the MATMUL's first step, on an engine that has
        # one) reads a weight entry and no activations. An activation read per step where
        # no engine built reads them less often and none has a header.
        heads = [es for es in specs if type(es).head is not EngineSpec.head]
        hd = Signal(name="f_head_next")     # the next step is a header
        single = max_planes == 1 and not heads
        plane_end = Const(1) if single else \
            (plane == per_engine(mm, lambda es, mode: es.planes(mode)) - 1) & ~hd
        reads = step if single else grp
        last_step = step + 1 == total
        with m.If(issue):
            m.d.sync += [step.eq(step + 1), f_valid.eq(1), f_eng.eq(named),
                         f_first.eq(step == 0),
                         f_last.eq(last_step), more.eq(~last_step), f_plane.eq(plane),
                         f_new.eq((plane == 0) & ~hd), hd.eq(0)]
            if not single:
                with m.If(~hd):
                    m.d.sync += [plane.eq(Mux(plane_end, 0, plane + 1)),
                                 grp.eq(grp + plane_end)]
        with m.Else():
            with m.If(front.start):
                m.d.sync += [step.eq(0), plane.eq(0), grp.eq(0), more.eq(1)]
                if heads:
                    m.d.sync += hd.eq(per_engine(mm, lambda es, mode: es.head(mode)))
            with m.If(tgt_ready | front.start):
                m.d.sync += f_valid.eq(0)
        # the MATMUL ends once its last step has left the feeder (a cycle after the engine
        # took it): the slot's end, and the queue's read, come from flops, not from the
        # engines' readiness
        feed_done = run & is_op[Opcode.MATMUL] & ~more & ~f_valid
        # an engine that holds its activations over its planes keeps them the whole step
        held = Cat(*(f for f, es in zip(f_eng, specs) if es.act_held))
        m.d.comb += self.act_keep.eq(f_valid & (~tgt_ready | held.any()))
        vars(x).update(issue=issue, plane=plane, plane_end=plane_end, reads=reads, step=step,
                       feed_done=feed_done, single=single, hd=hd)

    def _requant(self, m, x):
        """REQUANT: accumulator entries through the requant unit into the activations."""
        (cb, rqi, lanes, run, is_op, pipe, shared, rq, dr_rd, sb, R, rq_lanes, reread, late_res,
         lane_bits, front) = \
            take(x, "cb rqi lanes run is_op pipe shared rq dr_rd sb R rq_lanes reread late_res "
                     "lane_bits front")
        # --- REQUANT ----------------------------------------------------------------------
        n = Signal(cb)
        n_out = Signal(cb)
        count = rqi.count[:cb]
        q_valid = Signal()
        lane = Signal(range(lanes))
        requanting = run & is_op[Opcode.REQUANT]
        # entries left to read (n < count); with address_registers a flop kept equal to it
        # while the REQUANT runs (set as it starts, updated as n counts): no comparator
        # between the instruction and the read enables
        rq_more = Signal(name="rq_more")
        more_cmp = rq_more if pipe.address_registers else (n < count)
        if shared:
            # the read ports are shared (with the drain, then the store): an entry is read
            # only when the requant unit takes it the next cycle, and never while the drain
            # reads the accumulators
            q_issue = requanting & more_cmp & ~q_valid & rq.i.ready & ~dr_rd
        else:
            q_issue = requanting & more_cmp & (~q_valid | rq.i.ready)
        sidx = (rqi.scale_addr[:sb] + n)[:sb]
        nb = R // rq_lanes             # (reread) lane groups of an entry
        lb, lb1 = Signal(range(nb)), Signal(range(nb))     # group of the next read, the last
        last_group = (lb == nb - 1) if reread else Const(1)
        if reread:
            m.d.comb += [
                rq.i.payload.acc.as_value().eq(
                    self.acc_rq.data.word_select(lb1, 32 * rq_lanes)),
                rq.i.payload.res.as_value().eq(self.act_rd.data.word_select(lb1, 8 * rq_lanes)),
            ]
            # the groups' results are gathered and the entry written the cycle after the last
            out, ob, last = gather_groups(m, rq.o.valid, rq.o.payload, nb, "rq_out")
            w_valid = Signal()
            m.d.sync += w_valid.eq(last)
            with m.If(front.start):
                m.d.sync += ob.eq(0)
            wr_data, wr_en = out, w_valid
        elif late_res:
            banks = Signal(32 * R, name="rq_res_banks", reset_less=True)
            bank = [Signal(2, name=f"rq_res_bank{i}", reset_less=True) for i in (1, 2)]
            m.d.sync += [banks.eq(self.act_rd.data4), bank[0].eq(self.act_rd.addr[:2]),
                         bank[1].eq(bank[0])]
            m.d.comb += [rq.i.payload.acc.eq(self.acc_rq.data),
                         rq.res_late.as_value().eq(banks.word_select(bank[1], 8 * R))]
        else:
            m.d.comb += [rq.i.payload.acc.eq(self.acc_rq.data),
                         rq.i.payload.res.eq(self.act_rd.data)]
        if not reread:
            wr_data, wr_en = rq.o.payload, rq.o.valid
        m.d.comb += [
            rq.i.valid.eq(q_valid),
            rq.i.payload.mult.eq(self.scale_rd.data.word_select(lane, 16)),
            rq.i.payload.shift.eq(rqi.shift),
            rq.i.payload.residual.eq(rqi.residual),
            rq.i.payload.relu.eq(rqi.relu),
            self.scale_rd.addr.eq(sidx >> lane_bits),
            self.scale_rd.en.eq(q_issue),
            rq.o.ready.eq(1),
            self.act_wr.data.eq(wr_data),
            self.act_wr.en.eq(wr_en),
            self.requant_busy.eq(requanting),
        ]
        out_done = Signal()     # n_out == count, as a flop (count >= 1 once checked)
        with m.If(front.start):
            m.d.sync += [n.eq(0), n_out.eq(0), q_valid.eq(0), lb.eq(0), out_done.eq(0),
                         rq_more.eq(count != 0)]
        with m.Else():
            with m.If(q_issue):
                m.d.sync += [q_valid.eq(1), lane.eq(sidx[:lane_bits]), lb1.eq(lb),
                             lb.eq(Mux(last_group, 0, lb + 1))]
                with m.If(last_group):
                    m.d.sync += [n.eq(n + 1), rq_more.eq(n + 1 < count)]
            with m.Elif(rq.i.ready):
                m.d.sync += q_valid.eq(0)
            with m.If(wr_en):
                m.d.sync += [n_out.eq(n_out + 1), out_done.eq(n_out + 1 == count)]
        rq_done = requanting & out_done
        vars(x).update(n=n, n_out=n_out, count=count, q_issue=q_issue, last_group=last_group,
                       wr_en=wr_en, rq_done=rq_done, requanting=requanting)

    def _addresses(self, m, x):
        """The scratchpad addresses and read enables of the MATMUL feed and of REQUANT."""
        (mm, ab, cb, per_engine, single, issue, plane, pipe, rqi, n, n_out, reads, plane_end,
         front, is_op, q_issue, last_group, wr_en, requanting, hd) = \
            take(x, "mm ab cb per_engine single issue plane pipe rqi n n_out reads plane_end "
                     "front is_op q_issue last_group wr_en requanting hd")
        # Shared read ports; the activations' read is a REQUANT's entry or a MATMUL's step
        # (read with its plane 0). Without address_registers each address is the
        # instruction's base plus its count (`act_addrs`: REQUANT's, the MATMUL's).
        # a MATMUL's activation reads: from its base (in reads: a group of four entries on
        # an engine that reads four banks at once) on, one a plane 0
        mm_base = per_engine(mm, lambda es, mode:
                             mm.act_addr[:ab] >> (es.act_group.bit_length() - 1))
        mm_quad = per_engine(mm, lambda es, mode: Const(int(es.act_group > 1)))
        mm_rd = issue if single else issue & (plane == 0) & ~hd
        act_addrs = None
        if not pipe.address_registers:
            act_addrs = ((rqi.res_addr[:ab] + n)[:ab], (mm_base + reads)[:ab])
            m.d.comb += [self.acc_rq.addr.eq((rqi.acc_addr[:cb] + n)[:cb]),
                         self.act_wr.addr.eq((rqi.out_addr[:ab] + n_out)[:ab])]
        else:
            # The addresses are registers of their own (base plus count, kept as the
            # counts move): no adder between the instruction and the block RAMs' address
            # pins. The activations' read: a MATMUL's step (the last plane of a read), or
            # a REQUANT's entry.
            ptr_rq, ptr_act, ptr_out = Signal(cb), Signal(ab), Signal(ab)
            with m.If(issue):
                m.d.sync += ptr_act.eq(ptr_act + plane_end)
            with m.Elif(front.start):
                m.d.sync += ptr_act.eq(Mux(is_op[Opcode.REQUANT], rqi.res_addr[:ab], mm_base))
            with m.Elif(q_issue & last_group):
                m.d.sync += ptr_act.eq(ptr_act + 1)
            with m.If(front.start):
                m.d.sync += [ptr_rq.eq(rqi.acc_addr[:cb]), ptr_out.eq(rqi.out_addr[:ab])]
            with m.Else():
                with m.If(q_issue & last_group):
                    m.d.sync += ptr_rq.eq(ptr_rq + 1)
                with m.If(wr_en):
                    m.d.sync += ptr_out.eq(ptr_out + 1)
            m.d.comb += [self.acc_rq.addr.eq(ptr_rq), self.act_rd.addr.eq(ptr_act),
                         self.act_wr.addr.eq(ptr_out)]
        m.d.comb += self.acc_rq.en.eq(q_issue)
        if not act_addrs:
            # whether the read takes a group (the same row of every bank): a flop set as
            # the instruction starts, as the address register is (decoded from the
            # instruction it would sit in front of every bank's address pins)
            quad = Signal(name="act_quad")
            with m.If(front.start):
                m.d.sync += quad.eq(~is_op[Opcode.REQUANT] & mm_quad)
            m.d.comb += self.act_rd.quad.eq(quad)
        with m.If(requanting):
            m.d.comb += self.act_rd.en.eq(q_issue)
            if act_addrs:
                m.d.comb += self.act_rd.addr.eq(act_addrs[0])
        with m.Else():
            m.d.comb += self.act_rd.en.eq(mm_rd)
            if act_addrs:
                m.d.comb += [self.act_rd.quad.eq(mm_quad), self.act_rd.addr.eq(act_addrs[1])]

        # A REQUANT waits only for earlier MATMULs whose drain still writes the accumulators
        # it reads, so it can run while a later MATMUL drains; SYNC waits for every drain.

    def _sfu(self, m, x):
        """SFU: the unit takes the scratchpad ports while it runs."""
        front, is_op, run = x.front, x.is_op, x.run
        x.sfu_done = Const(0)
        if not self._cfg.sfu:
            m.d.comb += self.sfu_busy.eq(0)
            return
        m.submodules.sfu = sfu = Sfu(self._cfg)
        running = run & is_op[Opcode.SFU]
        m.d.comb += [sfu.start.eq(front.start & is_op[Opcode.SFU]),
                     sfu.insn.eq(view(SfuInsn, front.insn)),
                     sfu.act_data.eq(self.act_rd.data), sfu.acc_data.eq(self.acc_rq.data),
                     sfu.scale_data.eq(self.scale_rd.data), self.sfu_busy.eq(running)]
        with m.If(running):
            m.d.comb += [self.act_rd.addr.eq(sfu.act_addr), self.act_rd.en.eq(sfu.act_en),
                         self.act_rd.quad.eq(0),
                         self.acc_rq.addr.eq(sfu.acc_addr), self.acc_rq.en.eq(sfu.acc_en),
                         self.scale_rd.addr.eq(sfu.scale_addr),
                         self.scale_rd.en.eq(sfu.scale_en),
                         self.act_wr.addr.eq(sfu.wr_addr), self.act_wr.data.eq(sfu.wr_data),
                         self.act_wr.en.eq(sfu.wr_en)]
        x.sfu_done = running & sfu.done

    def _verdicts(self, m, x):
        """When the slot's instruction may start (hazards, idle engines) and when it is done."""
        (rqi, cb, count, front, in_flight, units, specs, cfg, pipe, drain_idle, named, is_op,
         feed_done, rq_done, matmul_release) = \
            take(x, "rqi cb count front in_flight units specs cfg pipe drain_idle named is_op "
                     "feed_done rq_done matmul_release")
        run = x.run
        lo = rqi.acc_addr[:cb]
        # (the range's end from the sums the checks registered ahead, where they did: no
        # adder in front of the comparators; ranges()' fifth is this one)
        hi = (lo + count if front.slot_pre is None else front.slot_pre[4])[:cb]

        def hits(valid, base, width):
            base = base[:cb]
            return valid & (base < hi) & (lo < (base + width)[:cb])
        busy = [hits(c.valid, c.addr, 1) for c in in_flight]
        busy += [hits(slot.valid, slot.tag[:16], es.channels(cfg))
                 for u, es in zip(units, specs) for slot in u.inflight]
        # The hazard verdict is registered (its adders and comparators are not on the path
        # into the token counters and the error logic): a REQUANT starts the cycle after it
        # is seen clear. That is safe because a hazard only ever clears while the REQUANT
        # waits (every MATMUL it depends on was fed before it); the verdict only counts from
        # the instruction's second cycle in the slot (the cycle before was another's).
        in_slot = (front.state == Front.CHECK) | (front.state == Front.WAIT)
        rq_clear = Signal()
        if not pipe.hazard_registered:
            m.d.sync += rq_clear.eq(in_slot & ~Cat(*busy).any())
        else:
            # each hit is registered, and the verdict from those a cycle later (the
            # in-flight columns' comparators and the OR of them are not in one cycle), so
            # it counts from the instruction's third cycle in the slot
            busy_r = Signal(len(busy), name="rq_hits")
            was_in_slot = Signal()
            m.d.sync += [busy_r.eq(Cat(*busy)), was_in_slot.eq(in_slot),
                         rq_clear.eq(in_slot & was_in_slot & ~busy_r.any())]
        # The drains' idleness is registered the same way (the engines' and the writer's
        # valid bits are not on the path into the token counters): while an instruction
        # waits in the slot nothing is fed, so an idle drain stays idle. A SYNC, and a
        # MATMUL waiting for the other engines, start a cycle after they are seen idle; a
        # MATMUL on the only engine waits for nothing.
        drained = Signal()
        m.d.sync += drained.eq(in_slot & drain_idle)
        other_idle = Const(1)
        if len(units) > 1:
            other_idle = Signal()
            m.d.sync += other_idle.eq(in_slot & Cat(*(u.idle | own for u, own
                                                      in zip(units, named))).all())
        ready = Signal()
        with m.If(is_op[Opcode.MATMUL]):    # one engine drains at a time
            m.d.comb += ready.eq(other_idle)
        with m.Elif(is_op[Opcode.REQUANT]):
            m.d.comb += ready.eq(rq_clear)
        # an SFU starts, as SYNC does, once every drain has written (a SOFTMAX reads them)
        with m.Else():
            m.d.comb += ready.eq(drained)
        # MATMUL releases on write-back of its last column.
        m.d.comb += [
            front.extra_ready.eq(ready),
            front.finish.eq(feed_done | rq_done | (run & is_op[Opcode.SYNC]) | x.sfu_done),
            self.give.eq(Mux(is_op[Opcode.MATMUL], 0, front.give) | matmul_release),
        ]
