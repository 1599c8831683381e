"""Strided 2-D DMA: the load queue's and the store queue's executors."""

from amaranth import Cat, Module, Signal, Mux, Const, Value
from amaranth.lib import data
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from .config import span_bits
from .bus import TAG_LOAD, TAG_STORE, bus_signature, place_word
from .isa import view, buffer_depth, buffer_entry_bytes, Buffer, DmaInsn, ErrorCode, Opcode, Queue
from .queue import Front, SlicedFifo, executor_members, sum_exceeds

__all__ = ["DmaLoad", "DmaStore"]


def _table(buf, table, allowed, width):
    """Comb lookup of a per-buffer constant (0 for buffers not in ``allowed``)."""
    out = Const(0, width)
    for b in allowed:
        out = Mux(buf == b, table[b], out)
    return out


def max_entry_bits(cfg):
    return 8 * max(buffer_entry_bytes(cfg).values())


class _Dma(wiring.Component):
    allowed = ()
    queue = None
    tag = None

    def __init__(self, cfg):
        self._cfg = cfg
        members = executor_members()
        members["bus"] = Out(bus_signature(cfg.bus_bytes))
        members.update(self._extra_members(cfg))
        super().__init__(members)

    def _widths(self):
        """Datapath widths, valid once an instruction's ranges are checked (full width, in
        Front): scratchpad addresses and row counts (the deepest buffer this unit moves),
        beat counts, and external-memory addresses."""
        cfg = self._cfg
        eb, depths = buffer_entry_bytes(cfg), buffer_depth(cfg)
        spb = span_bits(max(depths[b] for b in self.allowed))
        beb = span_bits(max(eb[b] // cfg.bus_bytes for b in self.allowed))
        return spb, beb, span_bits(cfg.dram_bytes)

    def _front(self, m):
        cfg = self._cfg
        pipe = cfg.pipelining
        eb, depths = buffer_entry_bytes(cfg), buffer_depth(cfg)
        spb, beb, db = self._widths()

        # the byte span of the rows, (rows - 1) * stride, for the DRAM range check
        serial = cfg.dma_range_check == "serial"
        if serial:
            # shift and add, one bit of (rows - 1) per cycle from the instruction's arrival,
            # ending when no bit is left: CHECK waits 0..spb cycles, and no multiplier. The
            # values are kept below 2**db (more than the memory holds) with a sticky flag
            # for anything at or above it: the check only needs to know that the span is
            # too big. (rows - 1) on spb bits: more rows are SP_RANGE, which comes first.
            prod, mcand, mplier = Signal(db), Signal(db), Signal(spb)
            big, mc_big = Signal(), Signal()        # prod, mcand: 2**db or more
            prod_span = Cat(prod, big)

            def span(insn):
                return Const(0, 1)          # (the CHECK / CHECK2 pair; `prod_span` is the value)
        else:
            def span(insn):         # registered first: the multiply is off the check path
                d = view(DmaInsn, insn)
                return (d.rows - 1) * d.stride

        def pre(insn):
            """Registered as the instruction enters: the span, and the verdicts that need
            its fields' high bits, so the executing slot keeps only the bits the datapath
            uses (addresses and counts at the depths' and the memory's widths)."""
            d = view(DmaInsn, insn)
            is_dma = d.opcode != Opcode.SYNC
            legal = Const(0, 1)
            for b in self.allowed:
                legal = legal | (d.buf == b)
            depth = _table(d.buf, depths, self.allowed, 17)
            ebytes = _table(d.buf, eb, self.allowed, 8)
            # with check_lookahead the address plus an entry's bytes is registered with the
            # span (one adder left in the check); without, the three are summed there (no
            # more adders on the arriving instruction's bits)
            return [span(insn), is_dma & (~legal | (d.rows == 0)),
                    is_dma & sum_exceeds((d.sp_addr, d.rows), depth, bits=spb),
                    d.dram_addr[db:] != 0,
                    d.dram_addr[:db] + ebytes if pipe.check_lookahead else Const(0, 1)]

        def checks(insn, pre):
            d = view(DmaInsn, insn)
            is_dma = d.opcode != Opcode.SYNC
            lowmask = cfg.bus_bytes - 1
            span_v = prod_span if serial else pre[0]
            terms = ((pre[4], span_v) if pipe.check_lookahead
                     else (d.dram_addr[:db], span_v, _table(d.buf, eb, self.allowed, 8)))
            dram_over = pre[3] | sum_exceeds(terms, cfg.dram_bytes, bits=db)
            return [
                (pre[1], ErrorCode.ILLEGAL_FIELD),
                (pre[2], ErrorCode.SP_RANGE),
                (is_dma & (((d.dram_addr | d.stride) & lowmask) != 0), ErrorCode.MISALIGNED),
                (is_dma & dram_over, ErrorCode.DRAM_RANGE),
            ]
        front = Front(m, self, queue=self.queue.value, checks=checks, pre=pre,
                      onehot=pipe.check_lookahead)
        if serial:
            new = view(DmaInsn, self.insn.payload)
            with m.If(front.loading):
                m.d.sync += [prod.eq(0), big.eq(0), mcand.eq(new.stride[:db]),
                             mc_big.eq(new.stride[db:] != 0),
                             mplier.eq(Mux(new.opcode == Opcode.SYNC, 0, new.rows - 1))]
            with m.Elif(mplier != 0):
                with m.If(mplier[0]):
                    total = prod + mcand
                    m.d.sync += [prod.eq(total[:db]), big.eq(big | mc_big | total[db])]
                m.d.sync += [mcand.eq(mcand << 1), mc_big.eq(mc_big | mcand[db - 1]),
                             mplier.eq(mplier >> 1)]
            m.d.comb += front.pre_done.eq(mplier == 0)
        d = view(DmaInsn, front.insn)
        beats = _table(d.buf, {b: v // cfg.bus_bytes for b, v in eb.items()}, self.allowed, beb)
        # in RUN with a LOAD or STORE (not SYNC): a flag, so no decode of the state and the
        # opcode sits before the bus request's `valid`
        run = Signal()
        with m.If(self.halt):
            m.d.sync += run.eq(0)
        with m.Elif(front.start):
            m.d.sync += run.eq(d.opcode != Opcode.SYNC)
        with m.Elif(front.finish):
            m.d.sync += run.eq(0)
        return front, d, beats, d.rows[:spb], run, (spb, beb, db)


class DmaLoad(_Dma):
    """Executes LOAD: reads ``rows`` entries from external memory into a scratchpad.

    Writes go out on ``wr_*`` (the top routes them by ``wr_buf``); an activation write is
    held off (the response is not accepted) while ``act_busy`` says the requant unit owns
    the activation write port this cycle.
    """
    allowed = (Buffer.ACT, Buffer.WGT, Buffer.SCALE)
    queue = Queue.LOAD
    tag = TAG_LOAD
    owns_status = True          # busy/blocked also count loads still landing

    def _extra_members(self, cfg):
        return {
            "wr_buf": Out(Buffer), "wr_addr": Out(16), "wr_data": Out(max_entry_bits(cfg)),
            "wr_en": Out(1), "act_busy": In(1),
            "beat_in": Out(1),      # a data beat arrived (for the byte counter)
        }

    def elaborate(self, platform):
        m = Module()
        cfg, bb = self._cfg, self._cfg.bus_bytes
        front, d, beats, rows, run, (spb, beb, db) = self._front(m)
        is_sync = d.opcode == Opcode.SYNC

        # Requests and responses are decoupled: a LOAD queues its receive job as it starts
        # (responses may arrive before its last read is issued) and leaves the executing
        # slot once all its reads are issued, so the next LOAD's reads follow back to back
        # instead of after a memory round trip. Its release tokens are given when its last
        # entry is written. Up to four jobs wait; two without instruction queues (the next
        # LOAD comes from the fetch buffer, not from a queue of them).
        m.submodules.jobs = jobs = SlicedFifo(4 if cfg.queue_depth else 2,
                                              sliced=cfg.pipelining.queue_slices,
                                              width=len(self._job(d, beats).as_value()))
        r = Signal(spb)
        b = Signal(beb)
        row_addr = Signal(db)
        req = self.bus.req
        issued = Signal()       # all its reads asked for (a flag: no comparator before `valid`)
        m.d.comb += [
            req.valid.eq(run & ~issued),
            req.payload.addr.eq((row_addr + b * bb)[:db]),
            req.payload.tag.eq(self.tag),
            jobs.w.payload.eq(self._job(d, beats).as_value()),
            jobs.w.valid.eq(front.start & ~is_sync),
        ]
        with m.If(front.start):
            m.d.sync += [r.eq(0), b.eq(0), row_addr.eq(d.dram_addr[:db]), issued.eq(0)]
        with m.Elif(req.valid & req.ready):
            with m.If(b == beats - 1):
                m.d.sync += [b.eq(0), r.eq(r + 1), row_addr.eq(row_addr + d.stride[:db]),
                             issued.eq(r + 1 == rows)]
            with m.Else():
                m.d.sync += b.eq(b + 1)

        # response side: the oldest receive job; assemble beats, write each entry
        job = data.View(self._job_layout(), jobs.r.payload)
        e = Signal(spb)
        rb = Signal(beb)
        resp = self.bus.resp
        # Whether a beat is its entry's last, and an entry its job's: flags (no comparator
        # between the job queue's output and its read enable). While `fresh` (no beat of the
        # job at the queue's head yet) they come from the job's own one_beat / one_row.
        fresh = Signal(init=1)
        rb_last_r, e_last_r = Signal(), Signal()
        last_beat = Mux(fresh, job.one_beat, rb_last_r)
        last_entry = Mux(fresh, job.one_row, e_last_r)
        # entries of more than a beat are assembled; one-beat entries (every buffer this
        # unit loads, on a 4-row array with a 32-bit bus) are written as they arrive
        nwords = max(buffer_entry_bytes(cfg)[b] for b in self.allowed) // bb
        if nwords > 1:
            asm = Signal(max_entry_bits(cfg))
            word = place_word(m, asm, rb, resp.payload.rdata, max_entry_bits(cfg) // (8 * bb))
        else:
            word = resp.payload.rdata
        # With load_write_staged an entry's write is registered first, in a buffer of two
        # (its address adder, and the beat's handshake, reach no block RAM's enable), and
        # its job's release tokens go with it: given as it is written. An activation write
        # waits while the requant unit writes (act_busy); beats are taken while the
        # buffer's second place is free (a flop: act_busy reaches no response's ready).
        # Without it the entry is written as its last beat arrives.
        staged = cfg.pipelining.load_write_staged
        recv_give = Signal(3)
        if staged:
            wlay = data.StructLayout({"buf": Buffer, "addr": spb, "give": 3,
                                      "data": len(Value.cast(word))})
            p = [Signal(wlay, name=f"wbuf{i}") for i in range(2)]
            pv = [Signal(name=f"wbuf{i}_valid") for i in range(2)]
            p_valid = pv[0]
            written = pv[0] & ~((p[0].buf == Buffer.ACT) & self.act_busy)
            m.d.comb += [
                resp.ready.eq(jobs.r.valid & ~pv[1]),
                self.wr_buf.eq(p[0].buf), self.wr_addr.eq(p[0].addr),
                self.wr_data.eq(p[0].data), self.wr_en.eq(written),
            ]
            with m.If(written):
                m.d.comb += recv_give.eq(p[0].give)
                m.d.sync += [p[0].eq(p[1]), pv[0].eq(pv[1]), pv[1].eq(0)]
            new_w = Signal(wlay)
            m.d.comb += [new_w.buf.eq(job.buf), new_w.addr.eq((job.sp_addr + e)[:spb]),
                         new_w.data.eq(word), new_w.give.eq(Mux(last_entry, job.release, 0))]

            def push():     # (pv[1] is clear: the beat was taken)
                with m.If(~pv[0] | written):
                    m.d.sync += [p[0].eq(new_w), pv[0].eq(1)]
                with m.Else():
                    m.d.sync += [p[1].eq(new_w), pv[1].eq(1)]
        else:
            p_valid = Const(0)
            m.d.comb += [
                resp.ready.eq(jobs.r.valid
                              & ~(last_beat & (job.buf == Buffer.ACT) & self.act_busy)),
                self.wr_buf.eq(job.buf),
                self.wr_addr.eq((job.sp_addr + e)[:spb]),
                self.wr_data.eq(word),
            ]
        with m.If(resp.valid & resp.ready):
            m.d.comb += self.beat_in.eq(1)
            m.d.sync += fresh.eq(0)
            if nwords > 1:
                m.d.sync += asm.eq(word)
            with m.If(last_beat):
                if staged:
                    push()
                else:
                    m.d.comb += self.wr_en.eq(1)
                m.d.sync += [rb.eq(0), e.eq(e + 1), rb_last_r.eq(job.one_beat),
                             e_last_r.eq(e + 2 == job.rows)]
                with m.If(last_entry):
                    m.d.comb += jobs.r.ready.eq(1)
                    if not staged:
                        m.d.comb += recv_give.eq(job.release)
                    m.d.sync += [e.eq(0), fresh.eq(1)]
            with m.Else():
                m.d.sync += [rb.eq(rb + 1), rb_last_r.eq(rb + 2 == job.beats),
                             e_last_r.eq(last_entry)]
        receiving = ~jobs.empty | p_valid       # (the buffer's second place only with its first)
        # SYNC completes once every earlier LOAD has landed; LOADs release from `jobs`
        m.d.comb += [
            front.extra_ready.eq(Mux(is_sync, ~receiving, jobs.w.ready)),
            front.finish.eq((front.state == Front.RUN) & (is_sync | issued)),
            self.give.eq(Mux(is_sync, front.give, 0) | recv_give),
            self.busy.eq(front.busy | receiving),
            self.blocked.eq(front.blocked & ~receiving),
        ]
        return m

    def _job_layout(self):
        spb, beb, _ = self._widths()
        return data.StructLayout({"buf": Buffer, "sp_addr": spb, "rows": spb, "beats": beb,
                                  "release": 3, "one_row": 1, "one_beat": 1})

    def _job(self, d, beats):
        spb, beb, _ = self._widths()
        return data.View(self._job_layout(), Cat(d.buf.as_value(), d.sp_addr[:spb],
                                                 d.rows[:spb], beats[:beb], d.release,
                                                 d.rows[:spb] == 1, beats[:beb] == 1))


class DmaStore(_Dma):
    """Executes STORE: reads ``rows`` scratchpad entries (ACT or ACC) and writes them to
    external memory; completes when every write is acknowledged."""
    allowed = (Buffer.ACT, Buffer.ACC)
    queue = Queue.STORE
    tag = TAG_STORE

    def _extra_members(self, cfg):
        return {
            "rd_buf": Out(Buffer), "rd_addr": Out(16), "rd_en": Out(1),
            "rd_ok": In(1),         # the read asked for this cycle is granted
            "rd_data": In(max_entry_bits(cfg)),
            "ack_in": Out(1),       # a write was acknowledged (for the byte counter)
        }

    def elaborate(self, platform):
        m = Module()
        cfg, bb = self._cfg, self._cfg.bus_bytes
        front, d, beats, rows, run, (spb, beb, db) = self._front(m)     # SYNC: nothing to move

        # One scratchpad read per beat. Without it at most one beat ahead of the bus: the
        # word read goes out the next cycle, or waits in `held` (the read port may serve
        # another reader meanwhile: config.scratchpad_ports = "shared", where `rd_ok` says
        # whether this cycle's read is granted). Above them (`_deep_words`) the entry read
        # is registered, then its word, so the block RAM's output meets no multiplexer on
        # its way to the bus.
        if cfg.pipelining.store_read_registered:
            return self._deep_words(m, front, d, beats, rows, run, spb, beb, db)
        r_rd, b_rd = Signal(spb), Signal(beb)   # entry and beat of the next read
        out_valid = Signal()    # a word waits to be sent: fresh from the port, or held
        fresh = Signal()        # ... fresh: read last cycle
        held = Signal(8 * bb)
        b = Signal(beb)
        row_addr = Signal(db)
        ack_r, ack_b = Signal(spb), Signal(beb)    # acknowledged rows, beats of the next
        acked = Signal()        # every write acknowledged (a flag: no comparator on `finish`)
        req = self.bus.req
        sending = req.valid & req.ready
        nwords = max_entry_bits(cfg) // (8 * bb)
        word = Mux(fresh, self.rd_data.word_select(b, 8 * bb) if nwords > 1
                   else self.rd_data[:8 * bb], held)
        granted = self.rd_en & self.rd_ok
        m.d.comb += [
            self.rd_buf.eq(d.buf),
            self.rd_addr.eq((d.sp_addr[:spb] + r_rd)[:spb]),
            self.rd_en.eq(run & (r_rd < rows) & (~out_valid | sending)),
            req.valid.eq(run & out_valid),
            req.payload.addr.eq((row_addr + b * bb)[:db]),
            req.payload.we.eq(1),
            req.payload.wdata.eq(word),
            req.payload.tag.eq(self.tag),
            self.bus.resp.ready.eq(1),
        ]
        m.d.sync += [held.eq(word), fresh.eq(granted & ~front.start)]
        with m.If(front.start):
            m.d.sync += [r_rd.eq(0), b_rd.eq(0), out_valid.eq(0), b.eq(0),
                         row_addr.eq(d.dram_addr[:db]), ack_r.eq(0), ack_b.eq(0), acked.eq(0)]
        with m.Else():
            with m.If(granted):
                m.d.sync += out_valid.eq(1)
                with m.If(b_rd == beats - 1):
                    m.d.sync += [b_rd.eq(0), r_rd.eq(r_rd + 1)]
                with m.Else():
                    m.d.sync += b_rd.eq(b_rd + 1)
            with m.Elif(sending):
                m.d.sync += out_valid.eq(0)
            with m.If(sending):
                with m.If(b == beats - 1):
                    m.d.sync += [b.eq(0), row_addr.eq(row_addr + d.stride[:db])]
                with m.Else():
                    m.d.sync += b.eq(b + 1)
            with m.If(self.bus.resp.valid):
                m.d.comb += self.ack_in.eq(1)
                with m.If(ack_b == beats - 1):
                    m.d.sync += [ack_b.eq(0), ack_r.eq(ack_r + 1), acked.eq(ack_r + 1 == rows)]
                with m.Else():
                    m.d.sync += ack_b.eq(ack_b + 1)
        m.d.comb += [
            front.finish.eq((front.state == Front.RUN) & (acked | ~run)),
            self.give.eq(front.give),
        ]
        return m

    def _deep_words(self, m, front, d, beats, rows, run, spb, beb, db):
        """The store's datapath with store_read_registered: a read (cycle 0), the block
        RAMs' outputs registered by the accelerator (1), the entry chosen from them
        registered (2), the beat's word chosen from that register into a FIFO of four (3),
        sent from the FIFO's head (4 on). A read is issued while fewer than four words are
        read and not yet sent: a beat per cycle."""
        from amaranth.lib.fifo import SyncFIFO
        cfg, bb = self._cfg, self._cfg.bus_bytes
        nwords = max_entry_bits(cfg) // (8 * bb)
        r_rd, b_rd = Signal(spb), Signal(beb)   # entry and beat of the next read
        # the next read's scratchpad address: a register counting with r_rd (no adder
        # between the instruction and the RAMs' address pins), or the instruction's
        # address plus r_rd
        rd_ptr = Signal(spb)
        rd_addr = rd_ptr if cfg.pipelining.address_registers else \
            (d.sp_addr[:spb] + r_rd)[:spb]
        more = Signal()         # reads left to issue (a flag: no comparator before rd_en)
        occ = Signal(3)         # words read and not yet sent
        r_valid, r_beat = Signal(), Signal(beb)         # a read's data leaves the RAM
        a_valid, a_beat = Signal(), Signal(beb)         # ... is on rd_data
        e_valid, e_beat = Signal(), Signal(beb)         # ... registered in `ent`
        ent = Signal(max_entry_bits(cfg), reset_less=True)
        m.submodules.words = words = SyncFIFO(width=8 * bb, depth=4)
        b = Signal(beb)
        row_addr = Signal(db)
        ack_r, ack_b = Signal(spb), Signal(beb)
        acked = Signal()
        req = self.bus.req
        sending = req.valid & req.ready
        granted = self.rd_en & self.rd_ok
        m.d.comb += [
            self.rd_buf.eq(d.buf),
            self.rd_addr.eq(rd_addr),
            self.rd_en.eq(run & more & (~occ[2] | sending)),
            words.w_data.eq(ent.word_select(e_beat, 8 * bb) if nwords > 1 else ent[:8 * bb]),
            words.w_en.eq(e_valid),
            req.valid.eq(run & words.r_rdy),
            req.payload.addr.eq((row_addr + b * bb)[:db]),
            req.payload.we.eq(1),
            req.payload.wdata.eq(words.r_data),
            req.payload.tag.eq(self.tag),
            words.r_en.eq(sending),
            self.bus.resp.ready.eq(1),
        ]
        m.d.sync += [r_valid.eq(granted), r_beat.eq(b_rd), a_valid.eq(r_valid),
                     a_beat.eq(r_beat), e_valid.eq(a_valid),
                     e_beat.eq(a_beat), occ.eq(occ + granted - sending)]
        with m.If(a_valid):
            m.d.sync += ent.eq(self.rd_data)
        with m.If(front.start):
            m.d.sync += [r_rd.eq(0), b_rd.eq(0), more.eq(1), b.eq(0),
                         rd_ptr.eq(d.sp_addr[:spb]), row_addr.eq(d.dram_addr[:db]),
                         ack_r.eq(0), ack_b.eq(0), acked.eq(0)]
        with m.Else():
            with m.If(granted):
                with m.If(b_rd == beats - 1):
                    m.d.sync += [b_rd.eq(0), r_rd.eq(r_rd + 1), more.eq(r_rd + 1 != rows),
                                 rd_ptr.eq(rd_ptr + 1)]
                with m.Else():
                    m.d.sync += b_rd.eq(b_rd + 1)
            with m.If(sending):
                with m.If(b == beats - 1):
                    m.d.sync += [b.eq(0), row_addr.eq(row_addr + d.stride[:db])]
                with m.Else():
                    m.d.sync += b.eq(b + 1)
            with m.If(self.bus.resp.valid):
                m.d.comb += self.ack_in.eq(1)
                with m.If(ack_b == beats - 1):
                    m.d.sync += [ack_b.eq(0), ack_r.eq(ack_r + 1), acked.eq(ack_r + 1 == rows)]
                with m.Else():
                    m.d.sync += ack_b.eq(ack_b + 1)
        m.d.comb += [
            front.finish.eq((front.state == Front.RUN) & (acked | ~run)),
            self.give.eq(front.give),
        ]
        return m
