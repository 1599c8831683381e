"""The board's external memory, on chip: serves the accelerator's bus and the host link.

One single-ported RAM of ``dram_bytes`` (``bus_bytes`` per word). On an iCE40UP5K with a
32-bit bus it is built from SB_SPRAM256KA blocks (4 x 32 KiB); elsewhere Yosys infers block
RAM. With the ``board_memory_registered`` knob (hw/timing.py) requests are registered in
front of the RAM and its output behind it, so a read's data arrives three cycles after the
request (the host link waits for it; bus responses queue in a small FIFO); without it it is
the RAM's output the cycle after. The host link has priority (it only touches memory while
the accelerator is stopped); a bus request waits while the link uses the port.
"""

from amaranth import ClockSignal, Module, Signal, Mux, Cat, Instance
from amaranth.lib import wiring
from amaranth.lib.fifo import SyncFIFO
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from hw.bus import bus_signature
from hw.lib import is_ice40_ultraplus, kept, registered

__all__ = ["BoardMemory", "link_mem_signature", "SPRAM_WORDS"]

SPRAM_WORDS = 16384         # one SB_SPRAM256KA: 16K x 16 bits


def link_mem_signature(bus_bytes, addr_bits):
    """The host link's memory port (link's view): word address, write data, enables, and
    ``busy``: a flop, high from before the link's first access of a command to after its
    last (bus requests wait while it is up; they never meet the link's own accesses)."""
    return wiring.Signature({
        "addr": Out(addr_bits), "wdata": Out(8 * bus_bytes), "we": Out(1), "en": Out(1),
        "busy": Out(1), "rdata": In(8 * bus_bytes),
    })


def _uses_spram(platform, config):
    return (is_ice40_ultraplus(platform)
            and config.bus_bytes == 4 and config.dram_bytes % (4 * SPRAM_WORDS) == 0
            and config.dram_bytes // (4 * SPRAM_WORDS) <= 2)


class BoardMemory(wiring.Component):
    """``registered`` (for high clocks): requests registered in front of the RAM and its
    data behind it, responses through a 6-deep FIFO. Otherwise requests go straight to the
    RAM and a response is the RAM's output the cycle after, held there until the bus takes
    it (no FIFO). The bus side
    restarts with the accelerator (the board top resets both): a response still waiting
    from a run that stopped on an error never reaches the next one."""

    def __init__(self, config, *, registered=True):
        self.config, self.registered = config, registered
        self.words = config.dram_bytes // config.bus_bytes
        self.addr_bits = max(1, (self.words - 1).bit_length())
        super().__init__({
            "bus": In(bus_signature(config.bus_bytes)),
            "link": In(link_mem_signature(config.bus_bytes, self.addr_bits)),
        })

    def elaborate(self, platform):
        m = Module()
        bb = self.config.bus_bytes
        shift = (bb - 1).bit_length()
        req, resp = self.bus.req, self.bus.resp
        if not self.registered:
            return self._direct(m, platform, shift)

        # Stage 1 registers the chosen request (address, data, enables) in front of the
        # RAM: on a large FPGA the memory's block RAMs spread over the chip, and neither the
        # link's address arithmetic nor the bus arbitration shares a path with their routing.
        # A read's data leaves the RAM the cycle after stage 1 (stage 2) and is registered
        # (stage 3: a block RAM's clock-to-out and the routing from RAMs all over the chip
        # do not share a cycle), then registered again (stage 4: stage 3's flops sit by
        # their RAMs, the FIFO wherever the bus is) before a small FIFO; a bus request is
        # taken only when the FIFO is sure to have room for its response (requests in
        # stages 1 to 4 plus entries queued < its depth: one per cycle). The host link
        # reads stage 4 too (stage 3's flops then have one load each): it latches a read's
        # data four cycles after its request, and the RAM's output holds.
        depth = 6
        m.submodules.rq = rq = SyncFIFO(width=2 + 8 * bb, depth=depth)
        # b{i}: a bus request in stage i, tag{i} its tag
        b1, b2, b3, b4 = (Signal(name=f"b{i}") for i in range(1, 5))
        tag1, tag2, tag3, tag4 = (Signal(2, name=f"tag{i}") for i in range(1, 5))
        room = (b1 + b2 + b3 + b4 + rq.level) < depth
        m.d.comb += req.ready.eq(~self.link.busy & room)
        accept = req.valid & req.ready
        lk = self.link.en
        nxt = (Mux(lk, self.link.addr, req.payload.addr >> shift),
               Mux(lk, self.link.wdata, req.payload.wdata), Mux(lk, self.link.we, req.payload.we),
               lk | accept)
        m.d.sync += [b1.eq(accept), tag1.eq(req.payload.tag), b2.eq(b1), tag2.eq(tag1),
                     b3.eq(b2), tag3.eq(tag2), b4.eq(b3), tag4.eq(tag3)]
        rdata = Signal(8 * bb, reset_less=True)
        if _uses_spram(platform, self.config):
            addr, wdata, we, en = (registered(m, v, f"s1_{n}", reset=n == "en")
                                   for v, n in zip(nxt, ("addr", "wdata", "we", "en")))
            m.d.sync += rdata.eq(self._spram(m, addr, wdata, we & en, en))
        else:
            m.d.sync += rdata.eq(self._lanes(m, platform, *nxt))

        # writes are acknowledged too (a response per request, in order)
        rdata4 = Signal(8 * bb, reset_less=True)
        m.d.sync += rdata4.eq(rdata)
        m.d.comb += [rq.w_data.eq(Cat(tag4, rdata4)), rq.w_en.eq(b4),
                     resp.valid.eq(rq.r_rdy), resp.payload.tag.eq(rq.r_data[:2]),
                     resp.payload.rdata.eq(rq.r_data[2:]), rq.r_en.eq(resp.ready),
                     self.link.rdata.eq(rdata4)]
        return m

    def _direct(self, m, platform, shift):
        # A response is the RAM's output the cycle after its request, and it stays there
        # (no other access starts) until the bus takes it: a new request is taken only with
        # no response waiting, or in the cycle the waiting one leaves.
        req, resp = self.bus.req, self.bus.resp
        waiting, tag1 = Signal(), Signal(2)
        free = ~waiting | resp.ready
        m.d.comb += req.ready.eq(~self.link.busy & free)
        accept = req.valid & req.ready
        # the link's fields whenever it is busy (no bus request is taken then): the select
        # is a flop, not the link's decoded state
        lk = self.link.busy
        addr = Mux(lk, self.link.addr, req.payload.addr >> shift)
        wdata = Mux(lk, self.link.wdata, req.payload.wdata)
        we = Mux(lk, self.link.we, req.payload.we)
        en = self.link.en | accept
        with m.If(free):
            m.d.sync += [waiting.eq(accept), tag1.eq(req.payload.tag)]
        rdata = self._ram(m, platform, addr, wdata, we & en, en)
        m.d.comb += [resp.valid.eq(waiting), resp.payload.tag.eq(tag1),
                     resp.payload.rdata.eq(rdata), self.link.rdata.eq(rdata)]
        return m

    def _lanes(self, m, platform, addr, wdata, we, en):
        """The registered RAM as one memory per byte lane, each behind stage-1 registers of
        its own (``addr``, ``wdata``, ``we``, ``en`` are their next values): one address
        register cannot sit near all the block RAMs, spread over the chip; on an ECP5 the
        copies are cells Yosys does not merge."""
        outs = []
        for k in range(self.config.bus_bytes):
            a = kept(m, addr, f"lane{k}_addr", platform)
            w, e = kept(m, we, f"lane{k}_we", platform), kept(m, en, f"lane{k}_en", platform)
            d = registered(m, wdata[8 * k:8 * k + 8], f"lane{k}_wdata")
            mem = Memory(shape=8, depth=self.words, init=[])
            m.submodules[f"dram{k}"] = mem
            wp, rp = mem.write_port(), mem.read_port()
            m.d.comb += [wp.addr.eq(a), wp.data.eq(d), wp.en.eq(e & w),
                         rp.addr.eq(a), rp.en.eq(e & ~w)]
            outs.append(rp.data)
        return Cat(*outs)

    def _ram(self, m, platform, addr, wdata, we, en):
        if _uses_spram(platform, self.config):
            return self._spram(m, addr, wdata, we, en)
        mem = Memory(shape=len(wdata), depth=self.words, init=[])
        m.submodules.dram = mem
        wp, rp = mem.write_port(), mem.read_port()
        m.d.comb += [wp.addr.eq(addr), wp.data.eq(wdata), wp.en.eq(en & we),
                     rp.addr.eq(addr), rp.en.eq(en & ~we)]
        return rp.data

    def _spram(self, m, addr, wdata, we, en):
        """32-bit words over pairs of 16-bit SPRAMs; a pair per 16K words."""
        banks = self.words // SPRAM_WORDS
        sel = Signal(range(max(banks, 2)))
        outs = []
        for b in range(banks):
            cs = en & ((addr >> 14) == b) if banks > 1 else en
            halves = []
            for h in range(2):
                dout = Signal(16, name=f"spram{b}_{h}_out")
                m.submodules[f"spram{b}_{h}"] = Instance(
                    "SB_SPRAM256KA",
                    i_ADDRESS=addr[:14], i_DATAIN=wdata[16 * h:16 * h + 16],
                    i_MASKWREN=0b1111, i_WREN=we, i_CHIPSELECT=cs,
                    i_CLOCK=ClockSignal("sync"), i_STANDBY=0, i_SLEEP=0, i_POWEROFF=1,
                    o_DATAOUT=dout)
                halves.append(dout)
            outs.append(Cat(*halves))
        if banks == 1:
            return outs[0]
        with m.If(en):
            m.d.sync += sel.eq(addr >> 14)
        return Mux(sel, outs[1], outs[0])
