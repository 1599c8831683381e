"""The board top: accelerator + on-chip external memory + UART host link (+ clocks and pins
on a real board).

``BoardCore`` is everything but clocks and pins; it is what the Verilated board simulation
runs (boards/sim.py). ``BoardTop`` adds the board's PLL, reset and UART/LED pins for a
platform build (boards/targets.py).
"""

from amaranth import (ClockDomain, ClockSignal, Elaboratable, Instance, Module,
                      ResetSignal, Signal)
from amaranth.hdl import DomainRenamer, ResetInserter
from amaranth.build import ResourceError
from amaranth.lib import io, wiring
from amaranth.lib.cdc import ResetSynchronizer
from amaranth.lib.wiring import In, Out

from hw.timing import Pipelining
from hw.accelerator import Accelerator
from hw.lib import uses_ecp5_cells
from hw.bus import StreamSlice, req_layout, resp_layout
from sw.errors import UserError
from .link import Link
from .memory import BoardMemory
from .uart import UartRx, UartTx

__all__ = ["BoardCore", "BoardTop", "uart_divisor", "idle_cycles", "global_net"]


def uart_divisor(clock_hz, baud):
    div = round(clock_hz / baud)
    if div < 4 or abs(clock_hz / div - baud) / baud > 0.02:
        raise UserError(f"baud rate {baud} is not reachable from a {clock_hz / 1e6:g} MHz "
                         f"clock (needs at least 4 cycles per bit within 2%)")
    return div


def idle_cycles(clock_hz, divisor):
    """How long a frame may pause mid-way before the board drops it: 10 ms, and at least
    64 byte times."""
    return max(clock_hz // 100, 64 * 10 * divisor)


def global_net(m, value, name, platform):
    """``value`` (one bit) over a global network on an ECP5 (through a DCCA, for a net of
    thousands of reset pins); elsewhere ``value`` itself."""
    if not uses_ecp5_cells(platform):
        return value
    out = Signal(name=f"{name}_o")
    m.submodules[name] = Instance("DCCA", i_CLKI=value, i_CE=1, o_CLKO=out)
    return out


class BoardCore(wiring.Component):
    """Accelerator, board memory and host link; ports ``rx``, ``tx`` and status LEDs."""

    def __init__(self, config, *, clock_hz, divisor, idle=None):
        self.config, self.clock_hz, self.divisor = config, clock_hz, divisor
        self.idle = idle or idle_cycles(clock_hz, divisor)
        super().__init__({"rx": In(1, init=1), "tx": Out(1, init=1),
                          "led_running": Out(1), "led_done": Out(1), "led_error": Out(1)})

    def elaborate(self, platform):
        m = Module()
        cfg = self.config
        acc = Accelerator(cfg)
        # the board's own knobs follow the clock it is built for
        pipe = Pipelining.derive(self.clock_hz / 1e6, cfg.timing)
        mem = BoardMemory(cfg, registered=pipe.board_memory_registered)
        m.submodules.link = link = Link(cfg, clock_hz=self.clock_hz, idle_cycles=self.idle,
                                        addr_bits=mem.addr_bits)
        # The accelerator, the memory's bus side (so it holds no response of an earlier
        # run) and the slices between them are reset with the link's acc_rst. With the
        # reset_domain knob that is a flop high through the board's reset too (see Link),
        # and it is the reset of a domain of their own: no gate between the flop and the
        # reset pins of thousands of registers; on an ECP5 it reaches them over a global
        # clock network (a DCCA) rather than fabric routing.
        if pipe.reset_domain:
            m.domains.acc = acc_cd = ClockDomain("acc", local=True)
            m.d.comb += [acc_cd.clk.eq(ClockSignal("sync")),
                         acc_cd.rst.eq(global_net(m, link.acc_rst, "acc_rst_buf", platform))]

            def in_acc(unit):
                return DomainRenamer("acc")(unit)
        else:
            def in_acc(unit):
                return ResetInserter({"sync": link.acc_rst})(unit)
        m.submodules.mem = in_acc(mem)
        m.submodules.acc = in_acc(acc)
        m.submodules.uart_rx = urx = UartRx(self.divisor)
        m.submodules.uart_tx = utx = UartTx(self.divisor)
        # register slices both ways between the accelerator and the memory (bus_slices): on
        # a large FPGA the memory's block RAMs spread over the chip, and the accelerator's
        # bus arbitration would sit in front of their address pins
        if pipe.bus_slices:
            req = StreamSlice(req_layout(cfg.bus_bytes))
            resp = StreamSlice(resp_layout(cfg.bus_bytes))
            m.submodules.req_slice = in_acc(req)
            m.submodules.resp_slice = in_acc(resp)
            wiring.connect(m, acc.bus.req, req.i)
            wiring.connect(m, req.o, mem.bus.req)
            wiring.connect(m, mem.bus.resp, resp.i)
            wiring.connect(m, resp.o, acc.bus.resp)
        else:
            wiring.connect(m, acc.bus, mem.bus)
        wiring.connect(m, link.mem, mem.link)
        wiring.connect(m, urx.o, link.rx)
        wiring.connect(m, link.tx, utx.i)
        m.d.comb += [
            urx.rx.eq(self.rx), self.tx.eq(utx.tx),
            acc.start.eq(link.start), acc.prog_addr.eq(link.prog_addr),
            link.running.eq(acc.running), link.done.eq(acc.done), link.error.eq(acc.error),
            link.error_code.eq(acc.error_code),
            acc.csr_addr.eq(link.csr_addr), link.csr_data.eq(acc.csr_data),
            self.led_running.eq(acc.running), self.led_done.eq(acc.done & ~acc.error),
            self.led_error.eq(acc.error),
        ]
        return m


class BoardTop(Elaboratable):
    """A platform build: the board's clock through a PLL to ``clock_hz``, reset held until
    the PLL locks, the UART and three LEDs (running, done, error) where the board has them."""

    def __init__(self, target, config, *, clock_hz, baud):
        from .clocks import achieved_clock
        self.target, self.config = target, config
        try:                # an unreachable clock or baud rate: no design to warn about
            f_in = target.make_platform().default_clk_frequency
            self.clock_hz = int(achieved_clock(target.family, f_in, clock_hz))
            self.core = BoardCore(config, clock_hz=self.clock_hz,
                                  divisor=uart_divisor(self.clock_hz, baud))
        except Exception:
            self._MustUse__silence = True
            raise

    def elaborate(self, platform):
        m = Module()
        m.domains.sync = ClockDomain("sync")
        # the board clock's constraint comes with the platform; nextpnr and Vivado derive the
        # PLL output's from it (and the reports compare Fmax with clock_hz themselves)
        _clk, locked = self.target.clock(m, platform, self.clock_hz)
        # the board's reset, a flop of the synchroniser (in a domain of its own on the same
        # clock), reaches the link's and the UART's registers over a global network on an
        # ECP5, as the accelerator's does (BoardCore)
        m.domains.rst_raw = raw = ClockDomain("rst_raw", local=True)
        m.d.comb += raw.clk.eq(ClockSignal("sync"))
        m.submodules.rst_sync = ResetSynchronizer(~locked, domain="rst_raw")
        m.d.comb += ResetSignal("sync").eq(
            global_net(m, ResetSignal("rst_raw"), "rst_buf", platform))
        m.submodules.core = core = self.core
        # every subsignal raw (some boards' UARTs also have dtr/rts pins we leave alone)
        uart = platform.request("uart", 0, dir={sub.name: "-" for sub in
                                                platform.lookup("uart", 0).ios})
        m.submodules.uart_rx_buf = rx = io.Buffer("i", uart.rx)
        m.submodules.uart_tx_buf = tx = io.Buffer("o", uart.tx)
        m.d.comb += [core.rx.eq(rx.i), tx.o.eq(core.tx)]
        for i, sig in enumerate((core.led_running, core.led_done, core.led_error)):
            try:
                led = platform.request("led", i, dir="-")
            except ResourceError:       # fewer LEDs than signals
                break
            m.submodules[f"led{i}_buf"] = buf = io.Buffer("o", led)
            m.d.comb += buf.o.eq(sig)
        return m

