"""ECP5 slice primitives: the LUT cell's lookup, and registers Yosys must not merge.

A cell looks up bit ``k`` of its token's table entry ``sel`` (3 bits) and inverts it when
``neg`` is set: a function of 8 table bits and 4 index bits. One ECP5 slice pair computes
it exactly: four LUT4s ``(s0 ? t[2q+1] : t[2q]) ^ neg``, two PFUMX choosing by ``s1`` and
one L6MUX21 by ``s2`` -- 4 LUT4 a bit. Left to Yosys (ABC9, or the classic ABC run when ABC9
aborts) the same lookup takes 8-12 LUT4 a bit, and the ``ulx3s`` preset's router never
converged in 30 minutes; with these cells it routes. ``tests/test_lut_ecp5.py`` proves the
instantiated cells equal to the behavioural lookup (a Yosys equivalence check), and the
board flow's netlist keeps them (nextpnr packs each LUT4 pair with its PFUMX).
"""

from types import SimpleNamespace

from amaranth import Const, Signal, Value
from amaranth.hdl import ClockSignal, Instance, ResetSignal


__all__ = ["uses_ecp5_cells", "ecp5_lookup", "kept", "kept_lut", "ECP5"]

#: What the design is elaborated for outside a board build when it should look like one on
#: an ECP5 (synthesis reports, the equivalence check).
ECP5 = SimpleNamespace(family="ecp5", device="LFE5U-85F")


def uses_ecp5_cells(platform):
    """Whether the design is being built for an ECP5 (Trellis or Diamond)."""
    return getattr(platform, "family", None) == "ecp5"


def _lut4_init():
    """INIT of ``Z = (C ? B : A) ^ D`` (the LUT4 indexes INIT by ``{D, C, B, A}``)."""
    init = 0
    for i in range(16):
        a, b, c, d = (i >> t & 1 for t in range(4))
        init |= ((b if c else a) ^ d) << i
    return init


LUT4_INIT = _lut4_init()


def ecp5_lookup(m, table, sel, neg, name):
    """``table[sel] ^ neg`` (each of its bits) from ECP5 cells; ``table`` is 8 equal-width
    values, ``sel`` 3 bits. Returns the (unsigned) looked-up value."""
    width = len(table[0])
    out = Signal(width, name=f"{name}_lookup")
    for k in range(width):
        lut = [Signal(name=f"{name}_l{k}_{q}") for q in range(4)]
        for q in range(4):
            m.submodules[f"{name}_lut{k}_{q}"] = Instance(
                "LUT4", p_INIT=LUT4_INIT, i_A=table[2 * q][k], i_B=table[2 * q + 1][k],
                i_C=sel[0], i_D=neg, o_Z=lut[q])
        pfu = [Signal(name=f"{name}_m{k}_{h}") for h in range(2)]
        for h in range(2):
            m.submodules[f"{name}_pfu{k}_{h}"] = Instance(
                "PFUMX", i_ALUT=lut[2 * h + 1], i_BLUT=lut[2 * h], i_C0=sel[1], o_Z=pfu[h])
        m.submodules[f"{name}_l6mux{k}"] = Instance(
            "L6MUX21", i_D0=pfu[0], i_D1=pfu[1], i_SD=sel[2], o_Z=out[k])
    return out


def kept(m, value, name, platform, init=0):
    """``value`` one register later (reset to ``init``), a register of its own. Yosys merges
    registers that load the same value into one, which then drives every consumer of all of
    them: where copies exist to keep each consumer's wires short (a skew chain's equal-delay
    taps), on an ECP5 (a board build) they are TRELLIS_FF cells, which it leaves alone.
    Elsewhere a plain register."""
    if not uses_ecp5_cells(platform):
        from .requant import registered     # (requant uses the DSP cells of hw.dsp)
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
