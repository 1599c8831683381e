"""External memory bus: a request stream and an in-order response stream, plus an arbiter.

Every request gets exactly one response (read data, or a write acknowledgement), returned
in request order with the request's tag; masters tell their responses apart by tag.
"""

from amaranth import Module, Mux, Signal, Value
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from .lib import kept_lut

__all__ = ["req_layout", "resp_layout", "bus_signature", "BusArbiter", "StreamSlice",
           "TAG_FETCH", "TAG_LOAD", "TAG_STORE", "ADDR_BITS", "place_word", "c_header"]

ADDR_BITS = 32
TAG_FETCH, TAG_LOAD, TAG_STORE = 0, 1, 2


def req_layout(bus_bytes):
    return data.StructLayout({"addr": ADDR_BITS, "we": 1, "wdata": 8 * bus_bytes, "tag": 2})


def resp_layout(bus_bytes):
    return data.StructLayout({"rdata": 8 * bus_bytes, "tag": 2})


def c_header(bus_bytes):
    """The bus layout as C constants (``REQ_ADDR_LSB``, ``REQ_ADDR_BITS``, ...,
    ``REQ_BITS``, ``RESP_RDATA_LSB``, ...) for the simulators' C++ memory models, so that
    no bit offset is copied by hand."""
    lines = ["// generated from hw/bus.py (c_header); do not edit", "#pragma once",
             f"#define BUS_BYTES {bus_bytes}"]
    for side, layout in (("REQ", req_layout(bus_bytes)), ("RESP", resp_layout(bus_bytes))):
        for name, f in layout:
            lines += [f"#define {side}_{name.upper()}_LSB {f.offset}",
                      f"#define {side}_{name.upper()}_BITS {f.width}"]
        lines.append(f"#define {side}_BITS {layout.size}")
    return "\n".join(lines) + "\n"


def bus_signature(bus_bytes):
    """Master view: ``req`` goes out, ``resp`` comes in."""
    return wiring.Signature({
        "req": Out(stream.Signature(req_layout(bus_bytes))),
        "resp": In(stream.Signature(resp_layout(bus_bytes))),
    })


def place_word(m, base, index, word, nwords):
    """A comb signal equal to ``base`` with word ``index`` (of ``len(word)`` bits) replaced."""
    out = Signal(len(base))
    m.d.comb += out.eq(base)
    if nwords == 1:
        m.d.comb += out[:len(word)].eq(word)
    else:
        m.d.comb += out.word_select(index, len(word)).eq(word)
    return out


class BusArbiter(wiring.Component):
    """Round-robin arbiter of ``n`` masters onto one bus; responses are routed by tag.

    Parameters
    ----------
    bus_bytes : int
        Bus width.
    n : int
        Number of masters; master ``i`` must put tag ``i`` on its requests.
    """

    def __init__(self, *, bus_bytes, n=3):
        self._n = n
        members = {f"m{i}": In(bus_signature(bus_bytes)) for i in range(n)}
        members["bus"] = Out(bus_signature(bus_bytes))
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        n = self._n
        masters = [getattr(self, f"m{i}") for i in range(n)]
        last = Signal(range(n), init=n - 1)
        # Round robin: the first valid master after the last granted one (each order a
        # constant priority chain: no arithmetic on `last`)
        grant = Signal(range(n))
        any_valid = Signal()
        with m.Switch(last):
            for prev in range(n):
                with m.Case(prev) if prev < n - 1 else m.Default():
                    for off in reversed(range(1, n + 1)):
                        cand = (prev + off) % n
                        with m.If(masters[cand].req.valid):
                            m.d.comb += [grant.eq(cand), any_valid.eq(1)]
        m.d.comb += self.bus.req.valid.eq(any_valid)
        with m.Switch(grant):
            for i in range(n):
                with m.Case(i):
                    m.d.comb += [self.bus.req.payload.eq(masters[i].req.payload),
                                 masters[i].req.ready.eq(self.bus.req.ready)]
        with m.If(self.bus.req.valid & self.bus.req.ready):
            m.d.sync += last.eq(grant)
        tag = self.bus.resp.payload.tag
        for i in range(n):
            m.d.comb += [masters[i].resp.payload.eq(self.bus.resp.payload),
                         masters[i].resp.valid.eq(self.bus.resp.valid & (tag == i))]
            with m.If(tag == i):
                m.d.comb += self.bus.resp.ready.eq(masters[i].resp.ready)
        return m


class StreamSlice(wiring.Component):
    """A register slice (skid buffer) for a stream: ``o``'s valid and payload and ``i``'s
    ready all come from flops, so no combinational path crosses it; one cycle of latency,
    full throughput.

    The skid register loads whenever it is empty (its enable a flop, not the consumer's
    ready), and on an ECP5 (a board build) the output register's enable is a LUT of its own
    for every 32 bits, each driving its share of the register (one enable reaching every
    flop of a wide payload is a long wire)."""

    CHUNK = 32

    def __init__(self, layout):
        self._layout = layout
        super().__init__({"i": In(stream.Signature(layout)), "o": Out(stream.Signature(layout))})

    def elaborate(self, platform):
        m = Module()
        skid, skid_valid = Signal(self._layout), Signal()
        m.d.comb += self.i.ready.eq(~skid_valid)
        moving = self.o.ready | ~self.o.valid
        with m.If(moving):
            m.d.sync += [self.o.valid.eq(self.i.valid | skid_valid), skid_valid.eq(0)]
        with m.Elif(self.i.valid & ~skid_valid):
            m.d.sync += skid_valid.eq(1)
        with m.If(~skid_valid):     # (its content counts only once skid_valid is set)
            m.d.sync += skid.eq(self.i.payload)
        out, nxt = Value.cast(self.o.payload), Value.cast(Mux(skid_valid, skid, self.i.payload))
        for k, lo in enumerate(range(0, len(out), self.CHUNK)):
            hi = min(lo + self.CHUNK, len(out))
            en = kept_lut(m, lambda r, v: r | ~v, [self.o.ready, self.o.valid], f"en{k}",
                          platform)
            with m.If(en):
                m.d.sync += out[lo:hi].eq(nxt[lo:hi])
        return m
