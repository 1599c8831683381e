"""Hardware: configuration, ISA and the Amaranth generators."""

import re

from .config import AccelConfig, ConfigError, load_config

__all__ = ["AccelConfig", "ConfigError", "load_config", "Accelerator", "verilog", "TIMESCALE"]

#: Put before all generated Verilog: simulators that need a time unit (Icarus) get one, and
#: a cocotb clock of 10 ns is 10 ns everywhere.
TIMESCALE = "`timescale 1ns / 1ps\n"


def __getattr__(name):          # keep `import hw` light: amaranth elaboration on demand
    if name == "Accelerator":
        from .accelerator import Accelerator
        return Accelerator
    raise AttributeError(name)


def verilog(config, *, name="llmaccel_top", platform=None) -> str:
    """Generate the accelerator's Verilog for ``config`` (as elaborated for ``platform``:
    vendor primitives such as hw/dsp.py's appear only for a platform that has them)."""
    from .accelerator import Accelerator
    return to_verilog(Accelerator(config), name=name, platform=platform)


def to_verilog(component, *, name, platform=None, ports=None) -> str:
    """Amaranth's Verilog conversion, with what event-driven simulators need: a timescale,
    a time-0 evaluation of every combinational block (see ``_KICK``) and block RAM read-data
    registers that start at 0 (``_read_data_at_zero``)."""
    from amaranth.back.verilog import convert
    v = convert(component, name=name, platform=platform, ports=ports, emit_src=False)
    v = _KICK.sub(lambda m: m.group(0) + _KICK_LINE.format(m.group(1)), v)
    return TIMESCALE + "".join(_read_data_at_zero(m) for m in re.split(r"(?m)^(?=module )", v))


def _read_data_at_zero(module: str) -> str:
    """A block RAM's read-data register powers up at 0 on the FPGAs we target (and the
    memories are initialised); Yosys leaves it undefined, which a 4-state simulator shows
    as X until the first read. Give simulators the hardware's 0."""
    mems = set(re.findall(r"^\s*reg (?:\[[^\]]*\] )?(\S+) \[[^\]]*\];", module, re.M))
    regs = {d for d, m in re.findall(r"^\s*(\S+) <= ([^\s\[]+)\[", module, re.M) if m in mems}
    if not regs:
        return module
    init = "".join(f"  initial {r} = 0;\n" for r in sorted(regs))
    at = module.index(";\n") + 2        # after the module header
    return module[:at] + f"`ifndef SYNTHESIS\n{init}`endif\n" + module[at:]


# Yosys writes each combinational process as ``always @*`` whose first line reads a dummy
# register, meaning to run it once at time 0; but the dummy's initial value makes no event on
# a 4-state event-driven simulator (Icarus), so a block whose inputs never change would stay
# X for ever. An assignment at #0 is an event every such block sees. Synthesis and Verilator
# evaluate combinational logic from the start and skip it.
_KICK = re.compile(r"reg (\\\$auto\$verilog_backend\.cc:\d+:dump_module\$\d+ ) = 0;")
_KICK_LINE = ("\n`ifndef SYNTHESIS\n`ifndef VERILATOR\n  initial #0 {} = 1'h1;\n`endif\n"
              "`endif")
