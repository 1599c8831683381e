"""8N1 UART receiver and transmitter (``divisor`` clock cycles per bit)."""

from amaranth import Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.cdc import FFSynchronizer
from amaranth.lib.wiring import In, Out

__all__ = ["UartRx", "UartTx"]


class UartRx(wiring.Component):
    """Samples ``rx`` (synchronised) at the middle of each bit; a byte with a bad stop bit
    is dropped. ``o`` has no back-pressure: a byte is offered for one cycle."""

    def __init__(self, divisor):
        if divisor < 4:
            raise ValueError("UART divisor must be at least 4 clock cycles per bit")
        self._div = divisor
        super().__init__({"rx": In(1, init=1), "o": Out(stream.Signature(8, always_ready=True))})

    def elaborate(self, platform):
        m = Module()
        div = self._div
        rx = Signal(init=1)
        m.submodules.sync_rx = FFSynchronizer(self.rx, rx, init=1)
        timer = Signal(range(div * 3 // 2 + 1))
        bit = Signal(range(10))
        shreg = Signal(8)
        m.d.sync += self.o.valid.eq(0)
        with m.FSM():
            with m.State("IDLE"):
                with m.If(~rx):
                    m.d.sync += [timer.eq(div // 2 - 1), bit.eq(0)]
                    m.next = "START"
            with m.State("START"):
                with m.If(timer != 0):
                    m.d.sync += timer.eq(timer - 1)
                with m.Elif(rx):
                    m.next = "IDLE"                 # a glitch, not a start bit
                with m.Else():
                    m.d.sync += timer.eq(div - 1)
                    m.next = "DATA"
            with m.State("DATA"):
                with m.If(timer != 0):
                    m.d.sync += timer.eq(timer - 1)
                with m.Else():
                    m.d.sync += [timer.eq(div - 1), bit.eq(bit + 1)]
                    with m.If(bit == 8):
                        with m.If(rx):
                            m.d.sync += [self.o.payload.eq(shreg), self.o.valid.eq(1)]
                        m.next = "IDLE"
                    with m.Else():
                        m.d.sync += shreg.eq((shreg >> 1) | (rx << 7))
        return m


class UartTx(wiring.Component):
    """Sends each byte accepted on ``i`` as start bit, 8 data bits LSB first, stop bit."""

    def __init__(self, divisor):
        self._div = divisor
        super().__init__({"tx": Out(1, init=1), "i": In(stream.Signature(8))})

    def elaborate(self, platform):
        m = Module()
        div = self._div
        timer = Signal(range(div))
        shreg = Signal(10, init=0x3FF)
        left = Signal(range(11))
        m.d.comb += [self.tx.eq(shreg[0]), self.i.ready.eq(left == 0)]
        with m.If(self.i.valid & self.i.ready):
            m.d.sync += [shreg.eq((self.i.payload << 1) | (1 << 9)), left.eq(10),
                         timer.eq(div - 1)]
        with m.Elif(left != 0):
            with m.If(timer != 0):
                m.d.sync += timer.eq(timer - 1)
            with m.Else():
                m.d.sync += [timer.eq(div - 1), left.eq(left - 1),
                             shreg.eq((shreg >> 1) | (1 << 9))]
        return m
