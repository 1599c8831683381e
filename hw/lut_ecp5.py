"""ECP5 slice primitives for the LUT cell's lookup.

A cell looks up bit ``k`` of its token's table entry ``sel`` (3 bits) and inverts it when
``neg`` is set: a function of 8 table bits and 4 index bits. One ECP5 slice pair computes
it exactly: four LUT4s ``(s0 ? t[2q+1] : t[2q]) ^ neg``, two PFUMX choosing by ``s1`` and
one L6MUX21 by ``s2`` -- 4 LUT4 a bit. Left to Yosys (ABC9, or the classic ABC run when ABC9
aborts) the same lookup takes 8-12 LUT4 a bit, and the ``ulx3s`` preset's router never
converged in 30 minutes; with these cells it routes. ``tests/test_lut_ecp5.py`` proves the
instantiated cells equal to the behavioural lookup (a Yosys equivalence check), and the
board flow's netlist keeps them (nextpnr packs each LUT4 pair with its PFUMX).
"""

from amaranth import Signal
from amaranth.hdl import Instance

__all__ = ["ecp5_lookup", "LUT4_INIT"]


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
