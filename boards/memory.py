"""The board's external memory, on chip: serves the accelerator's bus and the host link.

One single-ported RAM of ``dram_bytes`` (``bus_bytes`` per word). On an iCE40UP5K with a
32-bit bus it is built from SB_SPRAM256KA blocks (4 x 32 KiB); elsewhere Yosys infers block
RAM. Reads return the next cycle. The host link has priority (it only touches memory while
the accelerator is stopped); a bus request waits while the link uses the port.
"""

from amaranth import ClockSignal, Module, Signal, Mux, Cat, Instance
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from hw.bus import bus_signature

__all__ = ["BoardMemory", "link_mem_signature", "SPRAM_WORDS"]

SPRAM_WORDS = 16384         # one SB_SPRAM256KA: 16K x 16 bits


def link_mem_signature(bus_bytes, addr_bits):
    """The host link's memory port (link's view): word address, write data, enables."""
    return wiring.Signature({
        "addr": Out(addr_bits), "wdata": Out(8 * bus_bytes), "we": Out(1), "en": Out(1),
        "rdata": In(8 * bus_bytes),
    })


def _uses_spram(platform, config):
    family = getattr(platform, "family", None) if platform is not None else None
    return (str(family).lower() == "ice40" and getattr(platform, "device", "").startswith("iCE40UP")
            and config.bus_bytes == 4 and config.dram_bytes % (4 * SPRAM_WORDS) == 0
            and config.dram_bytes // (4 * SPRAM_WORDS) <= 2)


class BoardMemory(wiring.Component):
    def __init__(self, config):
        self.config = config
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

        # the bus side: a one-deep response stage with a holding register for back-pressure
        r_valid, fresh = Signal(), Signal()
        r_tag, hold = Signal(2), Signal(8 * bb)
        accept = req.valid & req.ready
        m.d.comb += req.ready.eq(~self.link.en & (~r_valid | resp.ready))

        addr, wdata, we, en = Signal(self.addr_bits), Signal(8 * bb), Signal(), Signal()
        with m.If(self.link.en):
            m.d.comb += [addr.eq(self.link.addr), wdata.eq(self.link.wdata),
                         we.eq(self.link.we), en.eq(1)]
        with m.Else():
            m.d.comb += [addr.eq(req.payload.addr >> shift), wdata.eq(req.payload.wdata),
                         we.eq(accept & req.payload.we), en.eq(accept)]
        rdata = self._ram(m, platform, addr, wdata, we, en)

        with m.If(accept):
            m.d.sync += [r_valid.eq(1), fresh.eq(1), r_tag.eq(req.payload.tag)]
        with m.Elif(r_valid & resp.ready):
            m.d.sync += r_valid.eq(0)
        with m.Elif(r_valid & fresh):
            m.d.sync += [hold.eq(rdata), fresh.eq(0)]
        m.d.comb += [resp.valid.eq(r_valid), resp.payload.tag.eq(r_tag),
                     resp.payload.rdata.eq(Mux(fresh, rdata, hold)), self.link.rdata.eq(rdata)]
        return m

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
