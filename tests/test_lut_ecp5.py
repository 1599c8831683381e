"""The LUT array's ECP5 build (lookups from LUT4 / PFUMX / L6MUX21 cells, hw/lut_ecp5.py)
is the behavioural LUT array: a Yosys equivalence check with the cells' simulation models,
which a wrong LUT4 truth table fails; and synth_ecp5 keeps the cells."""

import pytest

from hw import lut_ecp5
from hw.lut_ecp5 import ECP5
from hw.lut import TABLE_BITS, LutArray
from hw.synth import SynthError, component_verilog, run_yosys, synthesize

ROWS, CH, WBITS = 2, 4, 4


def _verilog(name, platform):
    arr = LutArray(rows=ROWS, ch=CH, tag_bits=2, max_wbits=WBITS)
    return component_verilog(arr, name, platform)


def _equivalent():
    # both modules are tops (hierarchy would keep one); Amaranth's internal wires ($N)
    # are numbered differently in the two, so only named wires are matched
    script = ("read_verilog +/lattice/common_sim.vh; setattr -mod -unset top; "
              "hierarchy -check; proc; flatten gate; rename -hide w:$*; opt_clean; "
              "equiv_make gold gate equiv; hierarchy -top equiv; "
              "equiv_simple -seq 2; equiv_induct -seq 2; "
              "tee -o status.txt equiv_status -assert")
    return run_yosys(_verilog("gold", None) + _verilog("gate", ECP5), script, "status.txt",
                     what="equivalence check", timeout=600)


def test_ecp5_cells_are_the_behavioural_lookup():
    status = _equivalent()
    assert "Equivalence successfully proven" in status, status


def test_a_wrong_cell_truth_table_is_caught(monkeypatch):
    # (C ? B : A) without the negation: every negated weight would read wrong
    monkeypatch.setattr(lut_ecp5, "LUT4_INIT", 0xCACA)
    with pytest.raises(SynthError, match="equivalence check failed"):
        _equivalent()


def test_synth_ecp5_keeps_the_cells():
    T = TABLE_BITS + WBITS - 1
    r = synthesize(_verilog("gate", ECP5), "gate", "ecp5")
    cells = r["cells"]
    assert cells.get("L6MUX21", 0) >= ROWS * CH * T, cells
    assert cells.get("PFUMX", 0) >= 2 * ROWS * CH * T, cells
    assert r["dsps"] == 0
