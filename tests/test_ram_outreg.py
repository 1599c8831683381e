"""Registers moved into ECP5 block RAMs' output registers (``boards.ram_outreg``) keep the
design's meaning: a bounded Yosys proof that the rewritten netlist equals the netlist
synth_ecp5 wrote, from configuration, for every input sequence. The DP16KD's behaviour
is modelled here (Yosys ships only its ports): a latch that loads a read's word while
``CE``, and with ``REGMODE = OUTREG`` a register after it that loads while ``OCE``
(Lattice TN1264). Both netlists use that model, so the proof checks the rewrite itself:
which flip-flops go, the pins and the enable they map to. Registers the block cannot be
(a reset, a second load on the RAM's data) are left in the fabric."""

import json
import re
import subprocess
import tempfile
from pathlib import Path

import pytest
from amaranth import Module
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from boards.gatelevel import cell_models
from boards.ram_outreg import absorb
from hw.lib import registered
from hw.synth import _yosys, component_verilog, lattice_synth

# the block's address LSB for each data width (a narrow model: entries 0..7 by the address
# bits above it, the same in both netlists)
_LSB = {1: 0, 2: 1, 4: 2, 9: 3, 18: 4, 36: 5}


def _pins(pin, n):
    return "{" + ", ".join(f"{pin}{k}" for k in reversed(range(n))) + "}"


def _bus(pin, n):
    return ", ".join(f"{pin}{k}" for k in range(n))


MODEL = f"""
module DP16KD({_bus("DIA", 18)}, {_bus("DIB", 18)}, {_bus("ADA", 14)}, {_bus("ADB", 14)},
    CEA, OCEA, CLKA, WEA, RSTA, CSA0, CSA1, CSA2, CEB, OCEB, CLKB, WEB, RSTB, CSB0, CSB1, CSB2,
    {_bus("DOA", 18)}, {_bus("DOB", 18)});
    input {_bus("DIA", 18)}, {_bus("DIB", 18)}, {_bus("ADA", 14)}, {_bus("ADB", 14)};
    input CEA, OCEA, CLKA, WEA, RSTA, CSA0, CSA1, CSA2, CEB, OCEB, CLKB, WEB, RSTB;
    input CSB0, CSB1, CSB2;
    output {_bus("DOA", 18)}, {_bus("DOB", 18)};
    parameter DATA_WIDTH_A = 18; parameter DATA_WIDTH_B = 18;
    parameter REGMODE_A = "NOREG"; parameter REGMODE_B = "NOREG";
    parameter RESETMODE = "SYNC"; parameter ASYNC_RESET_RELEASE = "SYNC";
    parameter CSDECODE_A = "0b000"; parameter CSDECODE_B = "0b000";
    parameter WRITEMODE_A = "NORMAL"; parameter WRITEMODE_B = "NORMAL";
    parameter CLKAMUX = "CLKA"; parameter CLKBMUX = "CLKB"; parameter GSR = "ENABLED";
    parameter INIT_DATA = "STATIC"; parameter WID = 0;
    {" ".join(f"parameter INITVAL_{k:02X} = 0;" for k in range(64))}
    localparam PDP = DATA_WIDTH_B == 36;
    localparam LA = DATA_WIDTH_A == 1 ? 0 : DATA_WIDTH_A == 2 ? 1 : DATA_WIDTH_A == 4 ? 2 :
                    DATA_WIDTH_A == 9 ? 3 : DATA_WIDTH_A == 18 ? 4 : 5;
    localparam LB = DATA_WIDTH_B == 1 ? 0 : DATA_WIDTH_B == 2 ? 1 : DATA_WIDTH_B == 4 ? 2 :
                    DATA_WIDTH_B == 9 ? 3 : DATA_WIDTH_B == 18 ? 4 : 5;
    wire [13:0] ada = {_pins("ADA", 14)};
    wire [13:0] adb = {_pins("ADB", 14)};
    wire [2:0] ia = ada >> LA;
    wire [2:0] ib = adb >> LB;
    wire [17:0] dia = {_pins("DIA", 18)};
    wire [17:0] dib = {_pins("DIB", 18)};
    reg [35:0] mem [0:7];
    integer k;
    initial for (k = 0; k < 8; k = k + 1) mem[k] = 0;
    reg [17:0] lat_a = 0, lat_b = 0, reg_a = 0, reg_b = 0;
    always @(posedge CLKA) begin
        if (PDP) begin
            if (CEA) mem[ia] <= {{dib, dia}};
        end else if (CEA) begin
            if (WEA) mem[ia][17:0] <= dia; else lat_a <= mem[ia][17:0];
        end
        if (OCEA) reg_a <= lat_a;
    end
    always @(posedge CLKB) begin
        if (PDP) begin
            if (CEB) {{lat_b, lat_a}} <= mem[ib];
        end else if (CEB) begin
            if (WEB) mem[ib][17:0] <= dib; else lat_b <= mem[ib][17:0];
        end
        if (OCEB) reg_b <= lat_b;
    end
    assign {_pins("DOA", 18)} = REGMODE_A == "OUTREG" ? reg_a : lat_a;
    assign {_pins("DOB", 18)} = REGMODE_B == "OUTREG" ? reg_b : lat_b;
endmodule
"""


class _Reads(wiring.Component):
    """Block RAM reads with a register after them: loaded every cycle (an 18-bit wide
    RAM), under an enable (its second read port), a 36-bit pseudo-dual-port RAM's word;
    and two the block cannot take: a register with a reset, and a read whose data is also
    used as it leaves the RAM."""
    wa: In(10)
    wd: In(16)
    we: In(1)
    ra: In(10)
    ra2: In(10)
    en2: In(1)
    wa36: In(9)
    wd36: In(36)
    we36: In(1)
    ra36: In(9)
    o_every: Out(16)
    o_en: Out(16)
    o_36: Out(36)
    o_reset: Out(8)
    o_used: Out(8)
    o_used_r: Out(8)

    def elaborate(self, platform):
        m = Module()
        # (names of memories whose read-write collisions synthesis leaves undefined, as
        # the accelerator's: no bypass logic between the RAMs and the registers)
        m.submodules.acc_mem = narrow = Memory(shape=16, depth=1024, init=[])
        m.submodules.scale_mem = wide = Memory(shape=36, depth=512, init=[])
        m.submodules.wgt_mem = small = Memory(shape=8, depth=1024, init=[])
        for mem, a, d, e in ((narrow, self.wa, self.wd, self.we),
                             (wide, self.wa36, self.wd36, self.we36),
                             (small, self.wa, self.wd[:8], self.we)):
            wp = mem.write_port()
            m.d.comb += [wp.addr.eq(a), wp.data.eq(d), wp.en.eq(e)]
        r1, r2, r3 = narrow.read_port(), narrow.read_port(), wide.read_port()
        r4, r5 = small.read_port(), small.read_port()
        m.d.comb += [r1.addr.eq(self.ra), r2.addr.eq(self.ra2), r3.addr.eq(self.ra36),
                     r4.addr.eq(self.ra), r5.addr.eq(self.ra2), r2.en.eq(self.en2)]
        m.d.comb += [
            self.o_every.eq(registered(m, r1.data, "r_every")),
            self.o_en.eq(registered(m, r2.data, "r_en", en=self.en2)),
            self.o_36.eq(registered(m, r3.data, "r_36")),
            self.o_reset.eq(registered(m, r4.data, "r_reset", reset=True)),
            self.o_used.eq(r5.data),
            self.o_used_r.eq(registered(m, r5.data, "r_used")),
        ]
        return m


def _models():
    """Yosys' ECP5 cell models with this DP16KD model for theirs (a blackbox)."""
    theirs = r"\(\* blackbox \*\)\s*module DP16KD\(.*?endmodule"
    return re.sub(theirs, "", cell_models("ecp5"), count=1, flags=re.S) + MODEL


def _run(script, files, out=None, timeout=600):
    """Yosys on ``files`` (name -> text) with ``script``: the text of the file ``out`` it
    writes, or (without ``out``) its log."""
    with tempfile.TemporaryDirectory(prefix="llmaccel-outreg-") as d:
        for name, text in files.items():
            (Path(d) / name).write_text(text)
        r = subprocess.run([_yosys(), *(["-q"] if out else []), "-p", script],
                           capture_output=True, text=True, timeout=timeout, cwd=d)
        assert r.returncode == 0, (r.stderr or r.stdout)[-2000:]
        if out is None:
            return r.stdout
        path = Path(d) / out
        assert path.exists(), (r.stderr or r.stdout)[-2000:]
        return path.read_text()


@pytest.fixture(scope="module")
def netlists():
    """(synth_ecp5's netlist, the rewritten one, what the rewrite moved)."""
    verilog = component_verilog(_Reads(), "top")
    text = _run(f"read_verilog -sv top.v; {lattice_synth('synth_ecp5', 'top')}; "
                "write_json top.json", {"top.v": verilog}, "top.json")
    before = json.loads(text)
    after = json.loads(text)
    moved = absorb(after)
    return before, after, moved


def _only(netlist, name):
    return {"creator": netlist.get("creator", ""),
            "modules": {name: netlist["modules"]["top"]}}


def _cells(netlist, kind):
    return [n for n, c in netlist["modules"]["top"]["cells"].items() if c["type"] == kind]


def test_the_registers_the_block_can_be_are_moved(netlists):
    before, after, moved = netlists
    gone = set(_cells(before, "TRELLIS_FF")) - set(_cells(after, "TRELLIS_FF"))
    kinds = {re.sub(r"_TRELLIS_FF_Q(_\d+)?$", "", n) for n in gone}
    assert kinds == {"o_every", "o_en", "o_36"}, kinds
    assert sum(k for _, k in moved) == 16 + 16 + 36 == len(gone)
    cells = after["modules"]["top"]["cells"]
    for ram, _ in moved:
        p = cells[ram]["parameters"]
        assert "OUTREG" in (p["REGMODE_A"], p["REGMODE_B"])
    kept = {re.sub(r"_TRELLIS_FF_Q(_\d+)?$", "", n) for n in _cells(after, "TRELLIS_FF")}
    assert {"o_reset", "o_used_r"} <= kept, kept


def _bounded_proof(before, after):
    """Yosys' log of a bounded proof that ``after`` equals ``before`` (outputs, every
    input sequence of 6 cycles from configuration)."""
    script = ("read_verilog -sv models.v; read_json gold.json; read_json gate.json; "
              "setattr -mod -unset top; "
              "hierarchy -check; proc; flatten; memory; opt_clean; "
              "miter -equiv -flatten -make_outputs gold gate miter; hierarchy -top miter; "
              "sat -prove trigger 0 -set-init-zero -seq 6 -show-ports miter")
    files = {"models.v": _models(), "gold.json": json.dumps(_only(before, "gold")),
             "gate.json": json.dumps(_only(after, "gate"))}
    return _run(script, files)


@pytest.mark.slow
def test_the_rewritten_netlist_is_the_synthesized_one(netlists):
    before, after, _ = netlists
    log = _bounded_proof(before, after)
    assert "SAT proof finished - no model found: SUCCESS!" in log, log[-2000:]


def test_a_wrong_enable_is_caught(netlists):
    """The proof is not vacuous: the moved registers' enable tied high fails it."""
    before, after, moved = netlists
    broken = json.loads(json.dumps(after))
    cells = broken["modules"]["top"]["cells"]
    for ram, _ in moved:
        for pin in ("OCEA", "OCEB"):
            if cells[ram]["connections"].get(pin) not in (["1"], ["0"]):
                cells[ram]["connections"][pin] = ["1"]
    log = _bounded_proof(before, broken)
    assert "SAT proof finished - model found: FAIL!" in log, log[-2000:]
