"""The accelerator top: fetch, dispatch to three queues, tokens, units, scratchpads, counters."""

from types import SimpleNamespace

from amaranth import Module, Signal, Mux, Array, Cat, Const, Value
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from .bus import BusArbiter, StreamSlice, bus_signature, req_layout, resp_layout
from .compute import Compute
from .config import AccelConfig
from .engines import SPECS, act_banks, specs_of
from .dma import DmaLoad, DmaStore
from .fetch import Fetch
from .position import POS_BITS, relocate_word
from .protect import ParityMemory
from .queue import SlicedFifo
from .lib import registered, take
from .isa import (view, built_opcodes, INSN_BITS, QUEUE_OF, Buffer, Counter, ErrorCode, Opcode, Queue, SyncInsn,
                  Header)

__all__ = ["Accelerator", "TOKEN_BITS"]

TOKEN_BITS = 8


class Accelerator(wiring.Component):
    """The whole accelerator, elaborated from one ``AccelConfig``.

    Ports
    -----
    bus : memory bus master (request / in-order response streams)
    start, prog_addr : a pulse on ``start`` begins fetching at ``prog_addr`` (once per reset)
    pos : the run's position, taken with ``start`` (configurations with the SFU use it:
        hw.position; others ignore it)
    running, done, error, error_code : status; ``done`` rises when END has been fetched and
        every queue has drained, or with ``error`` when an instruction was illegal, an
        address out of range, or the program deadlocked
    csr_addr, csr_data : read port of the counters (``hw.isa.Counter``), ``counter_bits``
        wide, zero-extended to 64 bits
    """

    def __init__(self, config: AccelConfig):
        self.config = config
        super().__init__({
            "bus": Out(bus_signature(config.bus_bytes)),
            "start": In(1),
            "prog_addr": In(32),
            "pos": In(POS_BITS),
            "running": Out(1),
            "done": Out(1),
            "error": Out(1),
            "error_code": Out(ErrorCode),
            "csr_addr": In(4),
            "csr_data": Out(64),
        })

    def elaborate(self, platform):
        m = Module()
        x = self._setup(m, platform)
        self._status(m, x, platform)
        self._dispatch(m, x, platform)
        self._dependency_tokens(m, x, platform)
        self._scratchpads(m, x, platform)
        self._completion_deadlock(m, x, platform)
        self._counters(m, x, platform)
        return m

    def _setup(self, m, platform):
        """The units and the values every concern below shares."""
        cfg = self.config
        pipe = cfg.pipelining
        R, C = cfg.rows, cfg.cols

        # the fetch buffer holds as many instructions as a queue, 1 to 4 (fetch runs ahead)
        m.submodules.fetch = fetch = Fetch(bus_bytes=cfg.bus_bytes, dram_bytes=cfg.dram_bytes,
                                           depth=max(1, min(4, cfg.queue_depth)),
                                           deep=pipe.fetch_registered)
        m.submodules.load = load = DmaLoad(cfg)
        m.submodules.compute = comp = Compute(cfg)
        m.submodules.store = store = DmaStore(cfg)
        m.submodules.arbiter = arb = BusArbiter(bus_bytes=cfg.bus_bytes, n=3)
        # Every master's requests pass a register slice (not without it): the arbitration
        # sits between flops, with no path from one unit's request through the grant into
        # another's ready (the store's scratchpad read, which prefetches the next word as
        # one leaves, the fetch buffer's counters, the load's address). One cycle of latency
        # each, full throughput.
        for i, (name, unit) in enumerate((("fetch", fetch), ("load", load), ("store", store))):
            port = getattr(arb, f"m{i}")
            if not pipe.bus_slices:
                wiring.connect(m, unit.bus, port)
            else:
                m.submodules[f"{name}_slice"] = sl = StreamSlice(req_layout(cfg.bus_bytes))
                wiring.connect(m, unit.bus.req, sl.i)
                wiring.connect(m, sl.o, port.req)
                if name == "load":
                    # and the load's responses one: its beat handshake steers the write
                    # buffer's ~100 enables, and the tag's decode was a long wire before it
                    m.submodules.load_resp = rs = StreamSlice(resp_layout(cfg.bus_bytes))
                    wiring.connect(m, port.resp, rs.i)
                    wiring.connect(m, rs.o, unit.bus.resp)
                else:
                    wiring.connect(m, port.resp, unit.bus.resp)
        wiring.connect(m, arb.bus, wiring.flipped(self.bus))
        execs = [load, comp, store]      # indexed by Queue value

        return SimpleNamespace(C=C, R=R, arb=arb, cfg=cfg, comp=comp, execs=execs,
                               fetch=fetch, load=load, pipe=pipe, store=store)

    def _status(self, m, x, platform):
        """Status: running, done, error and the halt every unit obeys."""
        execs, fetch = take(x, "execs fetch")
        running = Signal()
        ending = Signal()       # finished or failed, `done` not yet up (see the counters)
        done = Signal()
        err = Signal(ErrorCode)
        halted = Signal()       # err != NONE, as a flop of its own (it gates many paths)
        idle = ~running & ~ending & ~done
        with m.If(self.start & idle):
            m.d.sync += running.eq(1)
        m.d.comb += [fetch.start.eq(self.start & idle), fetch.addr.eq(self.prog_addr),
                     self.running.eq(running), self.done.eq(done), self.error.eq(halted),
                     self.error_code.eq(err)]
        for ex in execs:
            m.d.comb += ex.halt.eq(halted)
        vars(x).update(done=done, ending=ending, err=err, halted=halted, running=running)

    def _dispatch(self, m, x, platform):
        """Dispatch: the fetch buffer's head to its queue, END, illegal opcodes."""
        cfg, execs, fetch, halted, pipe, running = take(x, "cfg execs fetch halted pipe running")
        stopped = Signal()
        # queue_depth 0: no queues, an instruction goes from the fetch buffer straight into
        # its unit's executing slot (the golden model counts the same capacity, 1)
        direct = cfg.queue_depth == 0
        # (with queue_slices a queue's last two entries are a register slice)
        qfifo = [] if direct else [SlicedFifo(cfg.queue_depth, sliced=pipe.queue_slices)
                                   for _ in Queue]
        for q, f in zip(Queue, qfifo):
            m.submodules[f"q_{q.name.lower()}"] = f
            wiring.connect(m, f.r, execs[q.value].insn)
        # With dispatch_stage the instruction at the head of the fetch buffer is decoded
        # into a register stage first (its queue, whether it is known, END or legal):
        # dispatch acts on flops, and the fetch buffer's read enable is that stage's
        # emptiness alone. Fetch brings an instruction every other cycle at best (two bus
        # beats), which the stage keeps up with. The stage is emptied when a run starts.
        # Without it dispatch decodes the buffer's head directly (no 128 flip-flops).
        staged = pipe.dispatch_stage
        head = view(Header, fetch.o.payload)
        consumed = Signal()         # the instruction leaves (dispatched, or END)
        target, legal_q, known, is_end = Signal(2), Signal(), Signal(), Signal()
        goes = Signal(3)        # goes[q]: a legal instruction for queue q

        ops = built_opcodes(cfg)

        def decode(dom):
            dom += [known.eq(head.opcode.as_value().matches(*(o.value for o in ops))),
                    is_end.eq(head.opcode == Opcode.END), legal_q.eq(0), goes.eq(0)]
            with m.Switch(head.opcode):
                for op, q in QUEUE_OF.items():
                    if op not in ops:
                        continue
                    with m.Case(op):
                        dom += [target.eq(q.value), legal_q.eq(1), goes.eq(1 << q.value)]
                with m.Case(Opcode.SYNC):
                    sq = view(SyncInsn, fetch.o.payload).queue.as_value()
                    dom += [target.eq(sq), legal_q.eq(sq != 3),
                            goes.eq(Cat(sq == 0, sq == 1, sq == 2))]
        if staged:
            d_valid = Signal()
            d_word = Signal(INSN_BITS, reset_less=True)
            m.d.comb += fetch.o.ready.eq(~d_valid & ~stopped)
            with m.If(fetch.start):
                m.d.sync += d_valid.eq(0)
            with m.Elif(consumed):
                m.d.sync += d_valid.eq(0)
            with m.If(fetch.o.valid & fetch.o.ready):
                m.d.sync += [d_word.eq(fetch.o.payload), d_valid.eq(1)]
                decode(m.d.sync)
        else:
            d_valid, d_word = fetch.o.valid, fetch.o.payload
            m.d.comb += fetch.o.ready.eq(consumed)
            decode(m.d.comb)
        if cfg.sfu:
            # the position-relative fields, rewritten on their way into the queues
            pos = Signal(POS_BITS)
            with m.If(fetch.start):
                m.d.sync += pos.eq(self.pos)
            d_word = relocate_word(m, d_word, pos, cfg.rows)
        for f in qfifo:
            m.d.comb += f.w.payload.eq(d_word)
        dispatch_err = Signal(ErrorCode)
        dispatched = Signal()
        live = running & ~stopped & ~halted
        if direct:
            # offered to its unit as dispatch would take it (below: the unit's ready)
            offer = live & d_valid & known & ~is_end & legal_q
            for q in Queue:
                ex = execs[q.value]
                m.d.comb += [ex.insn.payload.eq(d_word),
                             ex.insn.valid.eq(offer & (target == q.value))]
            w_rdy = Array(x.insn.ready for x in execs)[target]
        else:
            w_rdy = Array(f.w.ready for f in qfifo)[target]
        with m.If(live & d_valid):
            with m.If(~known):
                m.d.comb += dispatch_err.eq(ErrorCode.ILLEGAL_OPCODE)
            with m.Elif(is_end):
                m.d.comb += consumed.eq(1)
                m.d.sync += stopped.eq(1)
            with m.Elif(~legal_q):
                m.d.comb += dispatch_err.eq(ErrorCode.ILLEGAL_FIELD)
            with m.Elif(w_rdy):
                m.d.comb += [consumed.eq(1), dispatched.eq(1)]
        if not direct:
            # a queue's write: its own decoded flag and its own ready, no target multiplexer
            for q, f in zip(Queue, qfifo):
                m.d.comb += f.w.valid.eq(live & d_valid & goes[q.value] & f.w.ready)
        # (an instruction in the stage is one fetch no longer holds)
        with m.If(live & fetch.oob & ~d_valid):
            m.d.comb += dispatch_err.eq(ErrorCode.FETCH_RANGE)
        m.d.comb += fetch.stop.eq(stopped | halted)
        vars(x).update(d_valid=d_valid, dispatch_err=dispatch_err, dispatched=dispatched,
                       qfifo=qfifo, stopped=stopped, w_rdy=w_rdy)

    def _dependency_tokens(self, m, x, platform):
        """Dependency tokens: a counter per (producer, consumer) pair of queues."""
        execs, pipe = take(x, "execs pipe")
        # A given token lands the cycle after its instruction completes (the strobe is
        # registered: completion logic and the counter's adder are not one path). A counter
        # has one bit more than it may use: reaching 2**TOKEN_BITS is an overflow, raised the
        # cycle after from the register (the take strobes stay off the error logic's paths).
        tok_err = Signal()
        for p in Queue:
            for q in Queue:
                if p == q:
                    continue
                t = Signal(TOKEN_BITS + 1, name=f"tok_{p.name.lower()}_{q.name.lower()}")
                inc = Signal(name=f"{t.name}_give")
                m.d.sync += inc.eq(execs[p.value].give[q.value])
                dec = execs[q.value].take[p.value]
                if pipe.token_registered:
                    # the take is registered too: the adder works on flops alone
                    dec_r, dec_r2 = (Signal(name=f"{t.name}_take{i}") for i in (1, 2))
                    m.d.sync += [dec_r.eq(dec), dec_r2.eq(dec_r)]
                    dec = dec_r
                # one adder: +1, -1 or nothing
                step = Mux(inc == dec, 0, Mux(inc, 1, Const(-1, len(t)).as_unsigned()))
                m.d.sync += t.eq(t + step)
                # `avail` from a flop, a cycle old: it can only be too high by a take in the
                # cycle before, and a unit never takes in two cycles running (it starts an
                # instruction, then runs it at least a cycle); a give counts a cycle later.
                # With registered takes a take shows in `avail` three cycles later: the two
                # cycles after a take see no token (a short stall, never a token twice)
                avail = Signal(name=f"{t.name}_avail")
                m.d.sync += avail.eq(t != 0)
                if pipe.token_registered:
                    avail = avail & ~dec_r & ~dec_r2
                m.d.comb += execs[q.value].avail[p.value].eq(avail)
                with m.If(t[TOKEN_BITS]):
                    m.d.comb += tok_err.eq(1)
        vars(x).update(tok_err=tok_err)

    def _scratchpads(self, m, x, platform):
        """Scratchpads and their ports to the units."""
        C, R, cfg, comp, load, pipe, store = take(x, "C R cfg comp load pipe store")
        # Activations live in banks (entry e in bank e % banks, row e // banks) where an
        # engine reads a group of entries per cycle (the LUT engine: 4 features); everyone
        # else sees one flat scratchpad (with one bank it is one memory: no multiplexers).
        par = set(cfg.parity)
        nb = act_banks(cfg)
        lb = nb.bit_length() - 1
        banks = [ParityMemory(m, Memory(shape=8 * R, depth=cfg.act_depth // nb, init=[]),
                              f"act_bank{b}", "act" in par) for b in range(nb)]
        wgt = ParityMemory(m, Memory(shape=8 * C, depth=cfg.wgt_depth, init=[]), "wgt_mem",
                           "wgt" in par)
        acc = ParityMemory(m, Memory(shape=32 * R, depth=cfg.acc_depth, init=[]), "acc_mem",
                           "acc" in par)
        scale = ParityMemory(m, Memory(shape=8 * cfg.bus_bytes, depth=cfg.scale_depth, init=[]),
                             "scale_mem", "scale" in par)

        def connect_rd(port, rp):
            m.d.comb += [rp.addr.eq(port.addr), rp.en.eq(port.en), port.data.eq(rp.data)]

        def banked_read(addr, en, quad=0):
            """Read ports on every bank; returns (selected entry, all four entries, the
            selecting register: None with one bank)."""
            rps = [mem.read_port() for mem in banks]
            if nb == 1:
                m.d.comb += [rps[0].addr.eq(addr), rps[0].en.eq(en)]
                return rps[0].data, rps[0].data, None
            sel = Signal(2)
            with m.If(en):
                m.d.sync += sel.eq(addr[:2])
            for rp in rps:
                m.d.comb += [rp.addr.eq(Mux(quad, addr, addr >> 2)), rp.en.eq(en)]
            return Array(rp.data for rp in rps)[sel], Cat(*(rp.data for rp in rps)), sel

        shared = cfg.scratchpad_ports == "shared"
        st_act_en = store.rd_en & (store.rd_buf == Buffer.ACT)
        st_acc_en = store.rd_en & (store.rd_buf == Buffer.ACC)
        if shared:
            # One read port per scratchpad (docs/architecture.md, scratchpad_ports): the
            # drain's read-modify-write, then the compute unit, then the store. Every reader
            # uses a read's data the cycle after it (or, compute, says `act_keep`).
            act_store = ~comp.act_rd.en & ~comp.act_keep
            acc_store = ~comp.acc_rd.en & ~comp.acc_rq.en
            m.d.comb += store.rd_ok.eq(Mux(store.rd_buf == Buffer.ACC, acc_store, act_store))
            a_addr = Mux(comp.act_rd.en, comp.act_rd.addr, store.rd_addr)
            one, four, sel = banked_read(a_addr, comp.act_rd.en | (st_act_en & act_store),
                                         comp.act_rd.quad & comp.act_rd.en)
            st_act = (one, four, sel)
            acc_rp = acc.read_port()
            m.d.comb += [
                acc_rp.addr.eq(Mux(comp.acc_rd.en, comp.acc_rd.addr,
                                   Mux(comp.acc_rq.en, comp.acc_rq.addr, store.rd_addr))),
                acc_rp.en.eq(comp.acc_rd.en | comp.acc_rq.en | (st_acc_en & acc_store)),
                comp.acc_rd.data.eq(acc_rp.data), comp.acc_rq.data.eq(acc_rp.data)]
            st_acc_data = acc_rp.data
        else:
            m.d.comb += store.rd_ok.eq(1)
            one, four, _ = banked_read(comp.act_rd.addr, comp.act_rd.en, comp.act_rd.quad)
            connect_rd(comp.acc_rd, acc.read_port())
            connect_rd(comp.acc_rq, acc.read_port())
        m.d.comb += [comp.act_rd.data.eq(one), comp.act_rd.data4.eq(four)]
        connect_rd(comp.wgt_rd, wgt.read_port())
        connect_rd(comp.scale_rd, scale.read_port())
        if cfg.group_scale:
            connect_rd(comp.scale_dr, scale.read_port())
        wgt_wp, scale_wp, acc_wp = wgt.write_port(), scale.write_port(), acc.write_port()
        m.d.comb += [acc_wp.addr.eq(comp.acc_wr.addr), acc_wp.data.eq(comp.acc_wr.data),
                     acc_wp.en.eq(comp.acc_wr.en)]
        # activation writes: the requant unit has priority, the load DMA is held off
        act_addr, act_data, act_en = Signal(16), Signal(8 * R), Signal()
        m.d.comb += load.act_busy.eq(comp.act_wr.en)
        with m.If(comp.act_wr.en):
            m.d.comb += [act_addr.eq(comp.act_wr.addr), act_data.eq(comp.act_wr.data),
                         act_en.eq(1)]
        with m.Else():
            m.d.comb += [act_addr.eq(load.wr_addr), act_data.eq(load.wr_data),
                         act_en.eq(load.wr_en & (load.wr_buf == Buffer.ACT))]
        for b, mem in enumerate(banks):
            wp = mem.write_port()
            m.d.comb += [wp.addr.eq(act_addr >> lb), wp.data.eq(act_data),
                         wp.en.eq(act_en & ((act_addr[:lb] == b) if lb else 1))]
        m.d.comb += [wgt_wp.addr.eq(load.wr_addr), wgt_wp.data.eq(load.wr_data),
                     wgt_wp.en.eq(load.wr_en & (load.wr_buf == Buffer.WGT)),
                     scale_wp.addr.eq(load.wr_addr), scale_wp.data.eq(load.wr_data),
                     scale_wp.en.eq(load.wr_en & (load.wr_buf == Buffer.SCALE))]
        if not shared:
            st_act = banked_read(store.rd_addr, st_act_en)
            st_acc = acc.read_port()
            m.d.comb += [st_acc.addr.eq(store.rd_addr), st_acc.en.eq(st_acc_en)]
            st_acc_data = st_acc.data
        st_one, st_four, st_sel = st_act
        if pipe.store_read_registered:
            # The store's data is registered as the block RAMs give it (every bank's and the
            # accumulators' output: the bank's choice and the buffer's come after), the
            # cycle after the read; the store takes it a cycle later (DmaStore): a RAM's
            # clock-to-out and its routing meet no multiplexer before a register.
            st_acc_data = registered(m, st_acc_data, "st_acc_r")
            if st_sel is not None:
                four_r = registered(m, st_four, "st_act_r")
                st_one = Array(four_r.word_select(b, 8 * R)
                               for b in range(nb))[registered(m, st_sel, "st_sel_r")]
            else:
                st_one = registered(m, st_one, "st_act_r")
        m.d.comb += store.rd_data.eq(Mux(store.rd_buf == Buffer.ACC, st_acc_data, st_one))
        vars(x).update(acc=acc, banks=banks, scale=scale, wgt=wgt)

    def _completion_deadlock(self, m, x, platform):
        """Completion, deadlock and errors."""
        (acc, banks, cfg, comp, d_valid, dispatch_err, done, ending, err, execs, fetch, halted,
         pipe, qfifo, running, scale, stopped, tok_err, w_rdy, wgt) = \
            take(x, "acc banks cfg comp d_valid dispatch_err done ending err execs fetch halted "
                     "pipe qfifo running scale stopped tok_err w_rdy wgt")
        parity_err = Cat(*(p.finish() for p in [*banks, wgt, acc, scale])).any()
        q_empty = Cat(*(f.empty for f in qfifo)).all() if qfifo else Const(1)
        all_idle = Cat(*(~x.busy for x in execs)).all() & comp.drain_idle
        # (the dispatch stage is empty once END has left it: nothing enters after)
        finished = running & stopped & q_empty & all_idle & fetch.idle
        # No unit can move: every executor is empty or waiting for a token, dispatch is
        # blocked on a full queue (or has stopped), and nothing is in flight.
        dispatch_stuck = stopped | (d_valid & ~w_rdy)
        stuck = (running & ~finished & Cat(*(x.blocked for x in execs)).all() & comp.drain_idle
                 & dispatch_stuck & fetch.idle)
        # (stuck for 7 cycles running: a give takes 3 to show in `avail`, see the tokens)
        stuck_cnt = Signal(3)
        # With end_registered the verdicts that end a run (stuck, finished, and the first
        # error's code) are registered before they act: no unit's handshake reaches
        # the status flops, the counter or the units' halt. A run ends a cycle later; an
        # error seen in a cycle still takes precedence over the end seen in the same one.
        late_end = pipe.end_registered
        if late_end:
            stuck_r, finished_r = Signal(), Signal()
            m.d.sync += [stuck_r.eq(stuck), finished_r.eq(finished)]
            stuck, finished = stuck_r, finished_r
        m.d.sync += stuck_cnt.eq(Mux(stuck, Mux(stuck_cnt == 7, 7, stuck_cnt + 1), 0))
        new_err = Signal(ErrorCode)
        sources = [(dispatch_err != ErrorCode.NONE, dispatch_err)] + \
                  [(x.error != ErrorCode.NONE, x.error) for x in execs] + \
                  [(tok_err, ErrorCode.TOKEN_OVERFLOW), (stuck_cnt == 7, ErrorCode.DEADLOCK),
                   (parity_err, ErrorCode.PARITY), (comp.fault, ErrorCode.RESIDUE)]
        for cond, code in reversed(sources):
            with m.If(cond):
                m.d.comb += new_err.eq(code)
        if late_end:
            err_r = Signal(ErrorCode)
            m.d.sync += err_r.eq(new_err)
            new_err = err_r
        # the run is over: `done` at once, or once the counters are up to date (in a BRAM,
        # or with their events registered)
        late_events = cfg.counter_store != "bram" and pipe.events_registered
        over = ending if cfg.counter_store == "bram" or late_events else done
        with m.If(running & ~halted & (new_err != ErrorCode.NONE)):
            m.d.sync += [err.eq(new_err), halted.eq(1), over.eq(1), running.eq(0)]
        with m.Elif(finished & running & ~halted):
            m.d.sync += [over.eq(1), running.eq(0)]
        vars(x).update(late_events=late_events)

    def _counters(self, m, x, platform):
        """The host-readable event counters."""
        (arb, cfg, comp, dispatched, done, ending, late_events, load, running, store) = \
            take(x, "arb cfg comp dispatched done ending late_events load running store")
        bb = cfg.bus_bytes
        specs = specs_of(cfg)
        credits = [(comp.engine_credit[i], es.macs_per_credit(cfg))
                   for i, es in enumerate(specs)]
        events = {          # counter: (event this cycle, its largest value)
            Counter.CYCLES: (running, 1),
            Counter.INSNS: (dispatched, 1),
            Counter.LOAD_BUSY: (running & load.busy, 1),
            Counter.COMPUTE_BUSY: (running & (comp.busy | ~comp.drain_idle), 1),
            Counter.REQUANT_BUSY: (comp.requant_busy, 1),
            Counter.SFU_BUSY: (comp.sfu_busy, 1),
            Counter.STORE_BUSY: (running & store.busy, 1),
            Counter.MACS: (sum(Mux(c, n, 0) for c, n in credits), sum(n for _, n in credits)),
            Counter.BYTES_READ: (Mux(load.beat_in, bb, 0), bb),
            Counter.BYTES_WRITTEN: (Mux(store.ack_in, bb, 0), bb),
            Counter.FETCH_BYTES: (Mux(arb.m0.resp.valid, bb, 0), bb),
        }
        # each engine's busy counter: cycles a step enters it (0 for an engine not built)
        events.update({es.busy_counter: (Const(0), 1) for es in SPECS.values()})
        events.update({es.busy_counter: (comp.engine_step[i], 1)
                       for i, es in enumerate(specs)})
        if cfg.counter_store == "bram":
            with m.If(ending & self._bram_counters(m, events, ending)):
                m.d.sync += [done.eq(1), ending.eq(0)]
        else:
            counters = Array(Signal(cfg.counter_bits, name=f"cnt_{c.name.lower()}")
                             for c in Counter)
            for c, (ev, _) in events.items():
                if late_events:
                    # with events_registered an event is registered before its
                    # counter's carry chain (no unit's handshake reaches a 64-bit adder);
                    # `done` rises a cycle later, with the last events counted
                    r = Signal(len(Value.cast(ev)), name=f"ev_{c.name.lower()}")
                    m.d.sync += r.eq(ev)
                    ev = r
                m.d.sync += counters[c.value].eq(counters[c.value] + ev)
            if late_events:
                with m.If(ending):
                    m.d.sync += [done.eq(1), ending.eq(0)]
            m.d.comb += self.csr_data.eq(Mux(self.csr_addr < len(Counter),
                                             counters[self.csr_addr], 0))

    def _bram_counters(self, m, events, ending):
        """The counters' totals in a block RAM (``counter_store = "bram"``): every counter
        gathers its events in a small pending register; each cycle one of them, round-robin,
        is added to its total (read one cycle, written the next) and starts again from that
        cycle's event. The first round after reset writes its pending counts over whatever
        the RAM held. ``csr_data`` is read from a copy of the RAM, a cycle after
        ``csr_addr`` (held two cycles when a write may hit it). Returns a signal that is up
        once a whole round (and the copy's read) has passed since ``ending`` rose: every
        event before it is in its total."""
        cfg = self.config
        n = len(Counter)
        mem = Memory(shape=cfg.counter_bits, depth=1 << (n - 1).bit_length(), init=[])
        m.submodules.cnt_mem = mem
        rd, wr, host = mem.read_port(), mem.write_port(), mem.read_port()
        rr, at = Signal(range(n)), Signal(range(n))     # read, and write a cycle later
        first = Signal(init=1)          # the first round's writes, up to entry n - 1's
        pend = []
        for c in Counter:
            ev, top = events[c]
            p = Signal((top * (n + 1)).bit_length(), name=f"cnt_pend_{c.name.lower()}")
            m.d.sync += p.eq(Mux(rr == c.value, ev, p + ev))
            pend.append(p)
        take = Signal(max(len(p) for p in pend))
        m.d.sync += [rr.eq(Mux(rr == n - 1, 0, rr + 1)), at.eq(rr),
                     take.eq(Array(pend)[rr])]
        with m.If(at == n - 1):
            m.d.sync += first.eq(0)
        # No port reads an entry in the cycle it is written (hw/synth.py lists cnt_mem among
        # the collision-free memories): the read-modify-write reads the next counter as it
        # writes one; a total is written only when it changes, and the host's read skips
        # the cycle its entry is written (keeping the data of the cycle before: a host holds
        # the address longer, and an entry is written once a round at most).
        m.d.comb += [rd.addr.eq(rr), rd.en.eq(1),
                     wr.addr.eq(at), wr.en.eq(first | (take != 0)),
                     wr.data.eq(Mux(first, 0, rd.data) + take),
                     host.addr.eq(self.csr_addr),
                     host.en.eq(~wr.en | (wr.addr != self.csr_addr)),
                     self.csr_data.eq(host.data)]
        # a round (n cycles) brings every pending count to its write; one cycle for the
        # write, one for the copy's read
        wait = Signal(range(n + 3))
        m.d.sync += wait.eq(Mux(ending, wait + 1, 0))
        return wait == n + 2
