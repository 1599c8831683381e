"""PLL settings and instances for the board families: iCE40 (SB_PLL40_PAD), ECP5 (EHXPLLL)
and Xilinx 7-series (MMCME2_BASE). Each ``*_pll`` solver returns the divider settings whose
output is closest to the request, within the family's VCO and PFD ranges."""

from __future__ import annotations

from amaranth import ClockSignal, Const, Instance, Signal
from amaranth.lib import io

from sw.errors import UserError

__all__ = ["ice40_pll", "ecp5_pll", "xc7_mmcm", "ClockError", "make_clock", "achieved_clock"]


class ClockError(UserError):
    pass


def _best(candidates, want, what):
    if not candidates:
        raise ClockError(f"no {what} setting reaches {want / 1e6:g} MHz")
    out, params = min(candidates, key=lambda c: abs(c[0] - want))
    if abs(out - want) / want > 0.05:
        raise ClockError(f"the {what} cannot make {want / 1e6:g} MHz (closest: "
                         f"{out / 1e6:.3f} MHz); choose another clock_mhz")
    return out, params


def ice40_pll(f_in, f_out):
    """SB_PLL40 ``(achieved Hz, {DIVR, DIVF, DIVQ, FILTER_RANGE})``, as icepll computes it."""
    cands = []
    for divr in range(16):
        pfd = f_in / (divr + 1)
        if not 10e6 <= pfd <= 133e6:
            continue
        for divf in range(128):
            vco = pfd * (divf + 1)
            if not 533e6 <= vco <= 1066e6:
                continue
            for divq in range(1, 7):
                fr = next(i for i, lim in enumerate((17e6, 26e6, 44e6, 66e6, 101e6, 1e12), 1)
                          if pfd < lim)
                cands.append((vco / 2 ** divq, {"DIVR": divr, "DIVF": divf, "DIVQ": divq,
                                                  "FILTER_RANGE": fr}))
    return _best(cands, f_out, "iCE40 PLL")


def ecp5_pll(f_in, f_out):
    """EHXPLLL ``(achieved Hz, {CLKI_DIV, CLKFB_DIV, CLKOP_DIV})`` with feedback from CLKOP."""
    cands = []
    for clki in range(1, 129):
        if f_in / clki < 3.125e6:
            break
        for fb in range(1, 81):
            out = f_in * fb / clki
            for op in range(1, 129):
                if 400e6 <= out * op <= 800e6:
                    cands.append((out, {"CLKI_DIV": clki, "CLKFB_DIV": fb, "CLKOP_DIV": op}))
                    break
    return _best(cands, f_out, "ECP5 PLL")


def xc7_mmcm(f_in, f_out):
    """MMCME2_BASE ``(achieved Hz, {MULT, DIVCLK, DIV})``: f_in * MULT / (DIVCLK * DIV)."""
    cands = []
    for divclk in range(1, 11):
        for mult in range(2, 65):
            vco = f_in * mult / divclk
            if not 600e6 <= vco <= 1200e6:
                continue
            for div in range(1, 129):
                cands.append((vco / div, {"MULT": mult, "DIVCLK": divclk, "DIV": div}))
    return _best(cands, f_out, "7-series MMCM")


_SOLVERS = {"ice40": ice40_pll, "ecp5": ecp5_pll, "xilinx": xc7_mmcm}


def achieved_clock(family, f_in, f_out):
    """The clock (Hz) a board with a ``f_in`` oscillator actually gets for ``f_out``."""
    if abs(f_in - f_out) < 1:
        return f_in
    if family not in _SOLVERS:
        raise ClockError(f"no clock generator for family {family!r}")
    return _SOLVERS[family](f_in, f_out)[0]


def make_clock(m, platform, family, clock_hz):
    """Drive ClockSignal("sync") at ``clock_hz`` from the platform's default clock; returns
    ``(clock signal, PLL lock)`` (lock is constant 1 without a PLL)."""
    f_in = platform.default_clk_frequency
    locked, sync = Signal(), Signal()
    m.d.comb += ClockSignal("sync").eq(sync)
    if abs(f_in - clock_hz) < 1:
        clk = platform.request(platform.default_clk, dir="-")
        m.submodules.clk_buf = buf = io.Buffer("i", clk)
        m.d.comb += [sync.eq(buf.i), locked.eq(1)]
        return sync, locked
    if family == "ice40":
        _, p = ice40_pll(f_in, clock_hz)
        pad = platform.request(platform.default_clk, dir="-")
        m.submodules.pll = Instance(
            "SB_PLL40_PAD", p_FEEDBACK_PATH="SIMPLE", p_DIVR=p["DIVR"], p_DIVF=p["DIVF"],
            p_DIVQ=p["DIVQ"], p_FILTER_RANGE=p["FILTER_RANGE"],
            io_PACKAGEPIN=pad.io, i_RESETB=Const(1), i_BYPASS=Const(0),
            o_PLLOUTGLOBAL=sync, o_LOCK=locked)
    elif family == "ecp5":
        _, p = ecp5_pll(f_in, clock_hz)
        clk = platform.request(platform.default_clk, dir="-")
        m.submodules.clk_buf = buf = io.Buffer("i", clk)
        clkop = Signal()
        m.submodules.pll = Instance(
            "EHXPLLL",
            a_FREQUENCY_PIN_CLKI=f"{f_in / 1e6:g}", a_FREQUENCY_PIN_CLKOP=f"{clock_hz / 1e6:g}",
            a_ICP_CURRENT="12", a_LPF_RESISTOR="8", a_MFG_ENABLE_FILTEROPAMP="1",
            a_MFG_GMCREF_SEL="2",
            p_PLLRST_ENA="DISABLED", p_INTFB_WAKE="DISABLED", p_STDBY_ENABLE="DISABLED",
            p_DPHASE_SOURCE="DISABLED", p_OUTDIVIDER_MUXA="DIVA", p_CLKOP_ENABLE="ENABLED",
            p_CLKOP_DIV=p["CLKOP_DIV"], p_CLKOP_CPHASE=p["CLKOP_DIV"] - 1, p_CLKOP_FPHASE=0,
            p_FEEDBK_PATH="CLKOP", p_CLKFB_DIV=p["CLKFB_DIV"], p_CLKI_DIV=p["CLKI_DIV"],
            i_CLKI=buf.i, i_CLKFB=clkop, i_RST=0, i_STDBY=0, i_PHASESEL0=0, i_PHASESEL1=0,
            i_PHASEDIR=0, i_PHASESTEP=0, i_PHASELOADREG=0, i_PLLWAKESYNC=0, i_ENCLKOP=0,
            o_CLKOP=clkop, o_LOCK=locked)
        m.d.comb += sync.eq(clkop)
    elif family == "xilinx":
        _, p = xc7_mmcm(f_in, clock_hz)
        clk = platform.request(platform.default_clk, dir="-")
        m.submodules.clk_buf = buf = io.Buffer("i", clk)
        fb, out = Signal(), Signal()
        m.submodules.mmcm = Instance(
            "MMCME2_BASE", p_CLKIN1_PERIOD=1e9 / f_in, p_CLKFBOUT_MULT_F=float(p["MULT"]),
            p_DIVCLK_DIVIDE=p["DIVCLK"], p_CLKOUT0_DIVIDE_F=float(p["DIV"]),
            i_CLKIN1=buf.i, i_CLKFBIN=fb, o_CLKFBOUT=fb, o_CLKOUT0=out, o_LOCKED=locked,
            i_RST=0, i_PWRDWN=0)
        m.submodules.bufg = Instance("BUFG", i_I=out, o_O=sync)
    else:
        raise ClockError(f"no clock generator for family {family!r}")
    return sync, locked
