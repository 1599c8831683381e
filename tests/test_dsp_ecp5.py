"""Registered products on an ECP5 (``hw.dsp.registered_product``: a MULT18X18D with its
input and output registers) are the behavioural ones (operand registers, a product,
its register): a Yosys equivalence check against a simulation model of the block's
registered multiply, written here from Lattice's description of the sysDSP (Yosys ships
only a blackbox). A block whose output register is left out is caught; synth_ecp5 keeps
the block and no fabric register around it."""

import pytest
from amaranth import Module, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from hw import dsp
from hw.dsp import registered_product
from hw.lib import ECP5
from hw.synth import SynthError, component_verilog, run_yosys, synthesize


def _bus(pin, n):
    return ", ".join(f"{pin}{k}" for k in range(n))


def _pins(pin, n):
    return "{" + ", ".join(f"{pin}{k}" for k in reversed(range(n))) + "}"


def _registered(name, clk, d, width):
    """A register of ``d`` on CLK0/CE0/RST0 when ``clk`` is "CLK0"; ``d`` itself when NONE."""
    return f"""
    reg [{width - 1}:0] {name}_q = 0;
    always @(posedge CLK0) if (RST0) {name}_q <= 0; else if (CE0) {name}_q <= {d};
    wire [{width - 1}:0] {name} = ({clk} == "NONE") ? {d} : {name}_q;"""


#: The MULT18X18D's multiply (two 18-bit operands, signed by SIGNEDA/SIGNEDB, a 36-bit
#: product) with its A, B and output registers on CLK0 (clock enable CE0, synchronous reset
#: RST0) or none; other registers, clocks and the cascade paths are not modelled.
MODEL = f"""
module MULT18X18D({_bus("A", 18)}, {_bus("B", 18)}, {_bus("C", 18)}, SIGNEDA, SIGNEDB,
    SOURCEA, SOURCEB, CLK0, CLK1, CLK2, CLK3, CE0, CE1, CE2, CE3, RST0, RST1, RST2, RST3,
    {_bus("P", 36)});
    parameter REG_INPUTA_CLK = "NONE"; parameter REG_INPUTA_CE = "CE0";
    parameter REG_INPUTA_RST = "RST0"; parameter REG_INPUTB_CLK = "NONE";
    parameter REG_INPUTB_CE = "CE0"; parameter REG_INPUTB_RST = "RST0";
    parameter REG_INPUTC_CLK = "NONE"; parameter REG_PIPELINE_CLK = "NONE";
    parameter REG_OUTPUT_CLK = "NONE"; parameter REG_OUTPUT_CE = "CE0";
    parameter REG_OUTPUT_RST = "RST0";
    parameter GSR = "ENABLED"; parameter RESETMODE = "SYNC"; parameter MULT_BYPASS = "DISABLED";
    parameter CAS_MATCH_REG = "FALSE"; parameter SOURCEB_MODE = "B_SHIFT";
    parameter HIGHSPEED_CLK = "NONE"; parameter CLK0_DIV = "ENABLED";
    parameter CLK1_DIV = "ENABLED"; parameter CLK2_DIV = "ENABLED"; parameter CLK3_DIV = "ENABLED";
    input {_bus("A", 18)}, {_bus("B", 18)}, {_bus("C", 18)};
    input SIGNEDA, SIGNEDB, SOURCEA, SOURCEB, CLK0, CLK1, CLK2, CLK3, CE0, CE1, CE2, CE3;
    input RST0, RST1, RST2, RST3;
    output {_bus("P", 36)};
    wire [17:0] a_in = {_pins("A", 18)};
    wire [17:0] b_in = {_pins("B", 18)};
    {_registered("a", "REG_INPUTA_CLK", "a_in", 18)}
    {_registered("b", "REG_INPUTB_CLK", "b_in", 18)}
    wire [35:0] prod = $signed({{SIGNEDA & a[17], a}}) * $signed({{SIGNEDB & b[17], b}});
    {_registered("p", "REG_OUTPUT_CLK", "prod", 36)}
    assign {_pins("P", 36)} = p;
endmodule
"""


class _Products(wiring.Component):
    """The design's kinds of product, narrowed (a SAT proof of two 16 x 16 multipliers'
    equality does not finish): an unsigned operand (an accumulator's low half) and a
    signed one (its high half) by a signed scale; registers loaded every cycle and under an
    enable. The sign and zero extension to the block's 18 bits is the same code at any
    width."""
    lo: In(5)
    hi: In(signed(4))
    mult: In(signed(4))
    en: In(1)
    p_lo: Out(signed(10))
    p_hi: Out(signed(8))
    p_en: Out(signed(8))

    def elaborate(self, platform):
        m = Module()
        m.d.comb += [
            self.p_lo.eq(registered_product(m, platform, self.lo, self.mult, "plo")),
            self.p_hi.eq(registered_product(m, platform, self.hi, self.mult, "phi")),
            self.p_en.eq(registered_product(m, platform, self.hi, self.mult, "pen",
                                            en=self.en)),
        ]
        return m


def _equivalent(cycles=8):
    """A bounded proof: from configuration (every register 0), for every input sequence of
    ``cycles`` cycles, the outputs agree in each. (An induction fails on the held
    registers: their states are not matched, only the outputs.)"""
    verilog = (component_verilog(_Products(), "gold", None)
               + component_verilog(_Products(), "gate", ECP5) + MODEL)
    script = ("setattr -mod -unset top; hierarchy -check; proc; flatten; opt_clean; "
              "miter -equiv -flatten -make_outputs gold gate miter; hierarchy -top miter; "
              f"sat -verify -prove trigger 0 -set-init-zero -seq {cycles} miter; "
              "tee -o status.txt log proven")
    return run_yosys(verilog, script, "status.txt", what="equivalence check", timeout=300)


def test_registered_products_are_the_behavioural_ones():
    assert "proven" in _equivalent()


def test_a_missing_output_register_is_caught(monkeypatch):
    regs = dict(dsp.MULT18X18D_REGISTERS, p_REG_OUTPUT_CLK="NONE")
    monkeypatch.setattr(dsp, "MULT18X18D_REGISTERS", regs)
    with pytest.raises(SynthError, match="equivalence check failed"):
        _equivalent()


def test_synth_ecp5_keeps_the_registered_blocks():
    r = synthesize(component_verilog(_Products(), "gate", ECP5), "gate", "ecp5")
    assert r["dsps"] == 3, r
    assert r["cells"].get("TRELLIS_FF", 0) == 0, r["cells"]
