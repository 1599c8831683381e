"""Instruction fetch: reads 128-bit words from external memory into a small buffer."""

from amaranth import Module, Signal, Const, Mux
from amaranth.lib import stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out

from .bus import TAG_FETCH, bus_signature, place_word
from .isa import INSN_BITS, INSN_BYTES

__all__ = ["Fetch"]


class Fetch(wiring.Component):
    """Fetches instructions from ``addr`` on after ``start``, ahead of use.

    It only requests a word when the buffer has room for its response, so it never needs
    back-pressure on the bus; ``stop`` (END was decoded) ends fetching. ``oob`` says the next
    word lies beyond external memory and nothing is buffered or in flight.
    """

    def __init__(self, *, bus_bytes, dram_bytes, depth=4):
        self._bb = bus_bytes
        self._dram = dram_bytes
        self._depth = depth
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
        m.submodules.fifo = fifo = SyncFIFOBuffered(width=INSN_BITS, depth=depth)
        running = Signal()
        pc = Signal(34)
        beat = Signal(range(beats)) if beats > 1 else Const(0, 1)
        rbeat = Signal(range(beats)) if beats > 1 else Const(0, 1)
        inflight = Signal(range(depth + 1))
        asm = Signal(INSN_BITS)

        # whether pc's instruction lies inside memory, registered alongside pc
        in_range = Signal()

        def set_pc(value):
            m.d.sync += [pc.eq(value), in_range.eq(value + INSN_BYTES <= self._dram)]

        with m.If(self.start & ~running):
            set_pc(self.addr)
            m.d.sync += running.eq(1)

        space = (fifo.level + inflight) < depth
        first = beat == 0
        req = self.bus.req
        m.d.comb += [
            req.valid.eq(running & Mux(first, ~self.stop & in_range & space, 1)),
            req.payload.addr.eq(pc + beat * self._bb),
            req.payload.tag.eq(TAG_FETCH),
        ]
        started = Signal()
        with m.If(req.valid & req.ready):
            m.d.comb += started.eq(first)
            if beats > 1:
                with m.If(beat == beats - 1):
                    m.d.sync += beat.eq(0)
                    set_pc(pc + INSN_BYTES)
                with m.Else():
                    m.d.sync += beat.eq(beat + 1)
            else:
                set_pc(pc + INSN_BYTES)

        resp = self.bus.resp
        m.d.comb += resp.ready.eq(1)
        word = place_word(m, asm, rbeat, resp.payload.rdata, beats)
        finished = Signal()
        with m.If(resp.valid):
            m.d.sync += asm.eq(word)
            if beats > 1:
                m.d.sync += rbeat.eq(Mux(rbeat == beats - 1, 0, rbeat + 1))
            m.d.comb += finished.eq(rbeat == beats - 1)
        m.d.comb += [fifo.w_data.eq(word), fifo.w_en.eq(finished)]
        m.d.sync += inflight.eq(inflight + started - finished)

        m.d.comb += [
            self.o.payload.eq(fifo.r_data),
            self.o.valid.eq(fifo.r_rdy),
            fifo.r_en.eq(self.o.ready),
            self.idle.eq((inflight == 0) & first),
            self.oob.eq(running & ~in_range & (inflight == 0) & first & ~fifo.r_rdy),
        ]
        return m

