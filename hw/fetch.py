"""Instruction fetch: reads 128-bit words from external memory into a small buffer."""

from amaranth import Module, Signal, Const, Mux
from amaranth.lib import stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out

from .bus import TAG_FETCH, bus_signature, place_word
from .config import span_bits
from .isa import INSN_BITS, INSN_BYTES

__all__ = ["Fetch"]


class Fetch(wiring.Component):
    """Fetches instructions from ``addr`` on after ``start``, ahead of use.

    It only requests a word when the buffer has room for its response, so it never needs
    back-pressure on the bus; ``stop`` (END was decoded) ends fetching. ``oob`` says the next
    word lies beyond external memory and nothing is buffered or in flight.
    """

    def __init__(self, *, bus_bytes, dram_bytes, depth=4, deep=False):
        self._bb = bus_bytes
        self._dram = dram_bytes
        self._depth = depth
        self._deep = deep
        super().__init__({
            "bus": Out(bus_signature(bus_bytes)),
            "start": In(1),
            "addr": In(32),
            "stop": In(1),
            "o": Out(stream.Signature(INSN_BITS)),
            "oob": Out(1),
            "idle": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        beats = INSN_BYTES // self._bb
        depth = self._depth
        # One instruction deep, the assembly register is the buffer: the next instruction's
        # first word is asked for only once this one has left (`space` below).
        single = depth == 1
        if not single:
            m.submodules.fifo = fifo = SyncFIFOBuffered(width=INSN_BITS, depth=depth)
        full = Signal()             # (single) asm holds a whole instruction
        level = full if single else fifo.level
        running = Signal()
        # pc lies in memory once checked (in_range), so its width is the memory's
        pc = Signal(span_bits(self._dram))
        beat = Signal(range(beats)) if beats > 1 else Const(0, 1)
        rbeat = Signal(range(beats)) if beats > 1 else Const(0, 1)
        inflight = Signal(range(depth + 1))
        asm = Signal(INSN_BITS)

        # whether pc's instruction lies inside memory, registered alongside pc
        in_range = Signal()

        def set_pc(at, ahead=0):
            """pc = ``at + ahead``; whether its instruction lies in memory, ``at + ahead +
            INSN_BYTES <= dram`` (``at`` whole: 32 bits from ``addr``, or pc). ``deep``
            compares ``at <= dram - INSN_BYTES - ahead``: against a constant, with no adder
            in front (pc's adder and a comparator behind it would share the cycle)."""
            # (deep: the sum even for ahead = 0, which keeps the netlist the board presets
            # were placed with: nextpnr's placement follows the netlist's names)
            value = at + ahead if ahead or self._deep else at
            room = self._dram - INSN_BYTES - ahead
            if self._deep:
                fits = at <= room if room >= 0 else 0
            else:
                fits = value + INSN_BYTES <= self._dram
            m.d.sync += [pc.eq(value), in_range.eq(fits)]

        with m.If(self.start & ~running):
            set_pc(self.addr)
            m.d.sync += running.eq(1)

        space = (level + inflight) < depth
        first = beat == 0
        req = self.bus.req
        # An instruction's first word is asked for from a flop: the conditions are those of
        # the cycle before (less its own start), so no logic on them sits on the request's
        # path into the memory. None of them turns false unseen: buffer space only shrinks by
        # a start, `stop` follows END leaving a full buffer, and pc moves with a last word.
        ask = Signal()
        started = Signal()
        m.d.sync += ask.eq(running & ~self.stop & in_range & space & ~started)
        m.d.comb += [
            req.valid.eq(running & Mux(first, ask, 1)),
            req.payload.addr.eq(pc + beat * self._bb),
            req.payload.tag.eq(TAG_FETCH),
        ]
        with m.If(req.valid & req.ready):
            m.d.comb += started.eq(first)
            if beats > 1:
                with m.If(beat == beats - 1):
                    m.d.sync += beat.eq(0)
                    set_pc(pc, INSN_BYTES)
                with m.Else():
                    m.d.sync += beat.eq(beat + 1)
            else:
                set_pc(pc, INSN_BYTES)

        resp = self.bus.resp
        m.d.comb += resp.ready.eq(1)
        word = place_word(m, asm, rbeat, resp.payload.rdata, beats)
        finished = Signal()
        with m.If(resp.valid):
            m.d.sync += asm.eq(word)
            if beats > 1:
                m.d.sync += rbeat.eq(Mux(rbeat == beats - 1, 0, rbeat + 1))
            m.d.comb += finished.eq(rbeat == beats - 1)
        m.d.sync += inflight.eq(inflight + started - finished)
        if single:
            with m.If(finished):
                m.d.sync += full.eq(1)
            with m.Elif(self.o.ready):
                m.d.sync += full.eq(0)
            m.d.comb += [self.o.payload.eq(asm), self.o.valid.eq(full)]
        else:
            m.d.comb += [fifo.w_data.eq(word), fifo.w_en.eq(finished),
                         self.o.payload.eq(fifo.r_data), self.o.valid.eq(fifo.r_rdy),
                         fifo.r_en.eq(self.o.ready)]
        m.d.comb += [
            self.idle.eq((inflight == 0) & first),
            self.oob.eq(running & ~in_range & (inflight == 0) & first & ~self.o.valid),
        ]
        return m

