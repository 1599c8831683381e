"""Generic gateware helpers every unit may use: registers, registers and LUTs that synthesis
must keep apart, and what the platform being elaborated for offers.

Nothing here knows a unit of the accelerator; feature modules import from here, never the
other way round.
"""

from types import SimpleNamespace

from amaranth import Const, Signal, Value
from amaranth.hdl import ClockSignal, Instance, ResetSignal

__all__ = ["take", "registered", "kept", "kept_lut", "uses_ecp5_cells", "is_ice40_ultraplus",
           "ECP5", "ICE40UP5K"]


#: What the design is elaborated for outside a board build when it should look like one on
#: an ECP5 (synthesis reports, the equivalence check).
ECP5 = SimpleNamespace(family="ecp5", device="LFE5U-85F")


def uses_ecp5_cells(platform):
    """Whether the design is being built for an ECP5 (Trellis or Diamond)."""
    return getattr(platform, "family", None) == "ecp5"


#: What the design is elaborated for outside a board build when it should look like one on
#: the iCEBreaker's device (gate-level check, area reports).
ICE40UP5K = SimpleNamespace(family="ice40", device="iCE40UP5K")


def is_ice40_ultraplus(platform) -> bool:
    """Whether ``platform`` is an iCE40 UltraPlus (the iCE40s with SB_MAC16 and SPRAM
    blocks); False in simulation (``platform`` None)."""
    family = getattr(platform, "family", None) if platform is not None else None
    return str(family).lower() == "ice40" and \
        str(getattr(platform, "device", "")).startswith("iCE40UP")


def take(parts, names):
    """The attributes ``names`` (space-separated) of ``parts``: what one concern of a split
    ``elaborate`` reads of the parts the concerns before it built."""
    return tuple(getattr(parts, n) for n in names.split())


def registered(m, value, name, *, shape=None, en=None, reset=False, init=0):
    """A register holding ``value`` (of ``shape``, or value's own), loaded while ``en``
    (every cycle without): data registers have no reset unless asked (then to ``init``)."""
    value = Value.cast(value)
    r = Signal(shape or value.shape(), name=name, init=init, reset_less=not reset)
    if en is None:
        m.d.sync += r.eq(value)
    else:
        with m.If(en):
            m.d.sync += r.eq(value)
    return r


def kept(m, value, name, platform, init=0):
    """``value`` one register later (reset to ``init``), a register of its own. Yosys merges
    registers that load the same value into one, which then drives every consumer of all of
    them: where copies exist to keep each consumer's wires short (a skew chain's equal-delay
    taps), on an ECP5 (a board build) they are TRELLIS_FF cells, which it leaves alone.
    Elsewhere a plain register."""
    if not uses_ecp5_cells(platform):
        return registered(m, value, name, reset=True, init=init)
    value = Value.cast(value)
    r = Signal(value.shape(), name=name)
    for b in range(len(value)):
        # a synchronous set or reset (LSR over CE) to the bit's initial value, which is
        # also its value after configuration
        m.submodules[f"{name}_ff{b}"] = Instance(
            "TRELLIS_FF", p_GSR="DISABLED", p_CEMUX="1", p_CLKMUX="CLK", p_LSRMUX="LSR",
            p_SRMODE="LSR_OVER_CE", p_REGSET="SET" if init >> b & 1 else "RESET",
            i_CLK=ClockSignal(), i_LSR=ResetSignal(), i_CE=1, i_DI=value[b], o_Q=r[b])
    return r


def kept_lut(m, fn, inputs, name, platform):
    """``fn(*inputs)`` (one bit of up to four one-bit inputs, written with ``& | ^ ~``) as a
    LUT4 of its own on an ECP5, so that copies of one function stay apart: each drives its
    own share of a large fanout (Yosys would merge equal gates into one net). Elsewhere
    the plain expression."""
    if not uses_ecp5_cells(platform):
        return fn(*inputs)
    n = len(inputs)
    assert 1 <= n <= 4
    init = 0
    for i in range(16):
        init |= (fn(*(i >> t & 1 for t in range(n))) & 1) << i
    pins = [Value.cast(v) for v in inputs] + [Const(0)] * (4 - n)
    out = Signal(name=name)
    m.submodules[f"{name}_lut"] = Instance(
        "LUT4", p_INIT=init, i_A=pins[0], i_B=pins[1], i_C=pins[2], i_D=pins[3], o_Z=out)
    return out
