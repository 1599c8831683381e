"""The LUT array's ECP5 build (lookups from LUT4 / PFUMX / L6MUX21 cells, hw/lut_ecp5.py; its
skew's control registers TRELLIS_FF cells, hw/lib.py) is the behavioural LUT array: a Yosys
equivalence check with the cells' simulation models, which a wrong LUT4 truth table fails;
and synth_ecp5 keeps the cells."""

import pytest
from amaranth import Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from hw import lib, lut_ecp5
from hw.lib import ECP5
from hw.lut import TABLE_BITS, LutArray
from hw.synth import SynthError, component_verilog, run_yosys, synthesize

ROWS, CH, WBITS = 2, 4, 4


def _verilog(name, platform):
    # skewed (two channels a group): the control chain's registers are TRELLIS_FF cells
    arr = LutArray(rows=ROWS, ch=CH, tag_bits=2, max_wbits=WBITS, skew=True, group=2)
    return component_verilog(arr, name, platform)


def _check_equivalent(verilog, seq, timeout):
    """Yosys' equivalence check of modules ``gold`` and ``gate`` (with the ECP5 cells'
    simulation models) over ``seq`` cycles; its status text."""
    # both modules are tops (hierarchy would keep one); Amaranth's internal wires ($N)
    # are numbered differently in the two, so only named wires are matched
    script = ("read_verilog +/lattice/common_sim.vh; setattr -mod -unset top; "
              "hierarchy -check; proc; flatten gate; rename -hide w:$*; opt_clean; "
              "equiv_make gold gate equiv; hierarchy -top equiv; "
              f"equiv_simple -seq {seq}; equiv_induct -seq {seq}; "
              "tee -o status.txt equiv_status -assert")
    return run_yosys(verilog, script, "status.txt", what="equivalence check", timeout=timeout)


def _equivalent():
    return _check_equivalent(_verilog("gold", None) + _verilog("gate", ECP5), 4, 600)


def test_ecp5_cells_are_the_behavioural_lookup():
    status = _equivalent()
    assert "Equivalence successfully proven" in status, status


@pytest.mark.slow
def test_a_wrong_cell_truth_table_is_caught(monkeypatch):
    # (C ? B : A) without the negation: every negated weight would read wrong
    monkeypatch.setattr(lut_ecp5, "LUT4_INIT", 0xCACA)
    with pytest.raises(SynthError, match="equivalence check failed"):
        _equivalent()


@pytest.mark.slow
def test_a_wrong_flop_reset_is_caught(monkeypatch):
    # the ECP5 control registers' reset value: a clear that comes out of reset low
    real = lib.kept

    def wrong(m, value, name, platform, init=0):
        return real(m, value, name, platform, init=init if platform is None else 0)
    monkeypatch.setattr(lib, "kept", wrong)
    monkeypatch.setattr("hw.lut.kept", wrong)
    with pytest.raises(SynthError, match="equivalence check failed"):
        _equivalent()


def test_synth_ecp5_keeps_the_cells():
    T = TABLE_BITS + WBITS - 1
    r = synthesize(_verilog("gate", ECP5), "gate", "ecp5")
    cells = r["cells"]
    assert cells.get("L6MUX21", 0) >= ROWS * CH * T, cells
    assert cells.get("PFUMX", 0) >= 2 * ROWS * CH * T, cells
    # the control of every cell group but the first: three flops each, none merged
    assert cells.get("TRELLIS_FF", 0) >= 3 * (ROWS * CH // 2 - 1), cells
    assert r["dsps"] == 0


class _Kept(wiring.Component):
    """``kept`` registers reset to 0 and to a mix of 0s and 1s."""
    a: In(4)
    q0: Out(4)
    q1: Out(4)

    def elaborate(self, platform):
        m = Module()
        m.d.comb += [self.q0.eq(lib.kept(m, self.a, "k0", platform)),
                     self.q1.eq(lib.kept(m, self.a, "k1", platform, init=0b1010))]
        return m


def test_kept_registers_are_plain_registers():
    """On an ECP5 the copies are TRELLIS_FF cells: the same registers (with the same reset
    values) as the behavioural ones."""
    status = _check_equivalent(component_verilog(_Kept(), "gold", None)
                               + component_verilog(_Kept(), "gate", ECP5), 2, 300)
    assert "Equivalence successfully proven" in status, status


def test_precompute_enable_copies_are_the_behavioural_enable():
    """The deep precompute's per-row table enables (``kept_lut``: on an ECP5 a LUT4 each,
    its INIT computed from the function) are the behavioural enable: an INIT computed
    wrong would break only the board."""
    from hw.lut import LutPrecompute

    def pre(name, platform):
        return component_verilog(LutPrecompute(rows=2, ch=CH, tag_bits=2, deep=True), name,
                                 platform)
    status = _check_equivalent(pre("gold", None) + pre("gate", ECP5), 3, 600)
    assert "Equivalence successfully proven" in status, status
