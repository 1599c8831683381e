"""The fast runner: Verilated accelerator + C++ memory model, loaded through ctypes.

A whole program runs inside C++ (no Python per cycle). The runner also exposes the
fault-injection primitives: state enumeration, peek/poke, snapshot/restore, watchdog.
"""

from __future__ import annotations

import atexit
import ctypes
import weakref
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hw.bus import c_header
from hw.config import AccelConfig
from hw.isa import Counter, ErrorCode
from sw.executor import check_pos, place_program, program_image
from sw.program import MemoryImage, Program
from .build import (cached_build, cpu_id, load_library, lz4_sources, run_logged,
                    verilate_model, verilator_env)
from .state import StateElement, flops_by_module, memory_ports, state_elements

__all__ = ["FastRunner", "build_model", "WatchdogError", "HARNESS", "VERILATOR_FLAGS",
           "wave_format"]

HARNESS = Path(__file__).resolve().parent / "harness.cpp"
TOP = "llmaccel_top"
VERILATOR_FLAGS = ["-O3", "--x-assign", "fast", "--x-initial", "fast",
                   "--noassert", "-Wno-fatal", "-Wno-lint", "-Wno-style",
                   "--output-split", "20000"]
# -march=native is safe: a build only ever runs on the machine (CPU model) that made it,
# which is part of the cache key
CXXFLAGS = ["-O3", "-march=native", "-std=c++17", "-fPIC"]
RECIPE = "6"    # bump when _verilate changes in a way that changes the result
WAVES_RECIPE = "1"      # the same, for what only a traced build does
#: waveform formats: file suffix -> Verilator's trace flag
WAVE_FORMATS = {".vcd": "--trace-vcd", ".fst": "--trace-fst"}


class WatchdogError(RuntimeError):
    """The cycle budget ran out before the accelerator raised done."""


def wave_format(path) -> str:
    """``"vcd"`` or ``"fst"`` from a waveform file's suffix (ValueError otherwise)."""
    suffix = Path(path).suffix.lower()
    if suffix not in WAVE_FORMATS:
        raise ValueError(f"waveform file {path}: the suffix must be .vcd or .fst")
    return suffix[1:]


def _verilate(tmp: Path, progress, verilog: str, bus_bytes: int, cells=None, waves=None):
    env = verilator_env()
    (tmp / f"{TOP}.v").write_text(verilog)
    sources = [f"{TOP}.v"]
    if cells is None:
        # Only state (flops and memories) and the memories' port enables and addresses are
        # made public: that is all fault injection needs, and it leaves Verilator free to
        # optimise every other combinational net away.
        (tmp / "state.vlt").write_text(_state_vlt(verilog))
        sources.append("state.vlt")
    else:
        # a gate-level netlist: the FPGA cell models it instantiates, no public state
        (tmp / "cells.v").write_text(cells)
        sources.append("cells.v")
    log = tmp / "build.log"
    flags, defines, extra = list(VERILATOR_FLAGS), [], []
    if waves:
        flags.append(WAVE_FORMATS["." + waves])
        defines.append(f"-DWAVES_{waves.upper()}")
        # Yosys's temporaries ($1, $auto$...) carry no name a user knows: leave them out
        (tmp / "waves.vlt").write_text('`verilator_config\ntracing_off -scope "*$*"\n')
        sources.append("waves.vlt")
    if waves == "fst":
        lz4 = lz4_sources(progress)
        if lz4 is None:
            extra += ["-llz4", "-lz"]
        else:
            flags += ["-CFLAGS", f"-I{lz4}"]
            run_logged(["gcc", "-O2", "-fPIC", "-c", str(lz4 / "lz4.c"), "-o", "lz4.o"],
                       cwd=tmp, env=env, log=log)
            extra += ["lz4.o", "-lz"]
    inc, libs = verilate_model(tmp, progress, sources=sources, top=TOP, flags=flags,
                               cxxflags=CXXFLAGS, log=log)
    libs += extra
    (tmp / "bus_layout.h").write_text(c_header(bus_bytes))
    common = ["g++", *CXXFLAGS, *defines, "-I.", *inc, str(HARNESS)]
    progress("linking the runner library")
    run_logged([*common, "-shared", "-o", "libsim.so", *libs], cwd=tmp, env=env, log=log)
    progress("linking the bare C++ loop")
    run_logged([*common, "-DBARE_MAIN", "-o", "bare", *libs], cwd=tmp, env=env, log=log)


def _state_vlt(verilog):
    lines = ["`verilator_config"]
    for module, names in sorted(flops_by_module(verilog).items()):
        for var in sorted(names):
            lines.append(f'public_flat_rw -module "{module}" -var "{var.lstrip(chr(92)).strip()}"')
    nets = set()
    for (module, _), ports in memory_ports(verilog).items():
        for p in ports or ():
            nets.update((module, n) for n in (p.en, p.addr) if n)
    for module, var in sorted(nets):
        lines.append(f'public_flat_rd -module "{module}" -var "{var.lstrip(chr(92)).strip()}"')
    return "\n".join(lines) + "\n"


def build_model(config: AccelConfig, *, netlist=None, waves=None, quiet=False) -> Path:
    """Generate Verilog for ``config`` and build (or reuse) the runner; return its dir.

    ``netlist=(verilog, cell_models)`` builds a gate-level netlist of the same top (see
    boards/gatelevel.py) instead of the RTL. ``waves="vcd"`` or ``"fst"`` builds the traced
    model (its own cache entry: the untraced build keeps its speed)."""
    import hw
    verilog, cells = netlist if netlist else (hw.verilog(config), None)
    key = [verilog, " ".join(VERILATOR_FLAGS + CXXFLAGS), RECIPE, cpu_id(), HARNESS.read_bytes(),
           c_header(config.bus_bytes), cells or ""]
    kind = "gates" if netlist else "fast"
    if waves:
        key += [waves, WAVES_RECIPE]
        kind += "-" + waves
    d = cached_build(kind, key,
                     lambda tmp, progress: _verilate(tmp, progress, verilog, config.bus_bytes,
                                                     cells, waves),
                     quiet=quiet)
    return d


_SIGS = {
    "sim_new": ([], ctypes.c_void_p),
    "sim_free": ([ctypes.c_void_p], None),
    "sim_mem_config": ([ctypes.c_void_p, ctypes.c_uint64, ctypes.c_double, ctypes.c_int], None),
    "sim_mem_write": ([ctypes.c_void_p, ctypes.c_uint64, ctypes.c_void_p, ctypes.c_uint64], None),
    "sim_mem_read": ([ctypes.c_void_p, ctypes.c_uint64, ctypes.c_void_p, ctypes.c_uint64], None),
    "sim_reset": ([ctypes.c_void_p], None),
    "sim_start": ([ctypes.c_void_p, ctypes.c_uint32, ctypes.c_uint32], None),
    "sim_run": ([ctypes.c_void_p, ctypes.c_uint64], ctypes.c_int),
    "sim_cycle": ([ctypes.c_void_p], ctypes.c_uint64),
    "sim_mem_bytes_moved": ([ctypes.c_void_p], ctypes.c_uint64),
    "sim_done": ([ctypes.c_void_p], ctypes.c_int),
    "sim_error_code": ([ctypes.c_void_p], ctypes.c_int),
    "sim_counter": ([ctypes.c_void_p, ctypes.c_int], ctypes.c_uint64),
    "sim_csr_clocked": ([ctypes.c_void_p, ctypes.c_int], None),
    "sim_num_vars": ([ctypes.c_void_p], ctypes.c_int),
    "sim_var_info": ([ctypes.c_void_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_int,
                      ctypes.POINTER(ctypes.c_int), ctypes.POINTER(ctypes.c_int),
                      ctypes.POINTER(ctypes.c_int)], ctypes.c_int),
    "sim_peek": ([ctypes.c_void_p, ctypes.c_int, ctypes.c_int, ctypes.c_void_p], ctypes.c_int),
    "sim_poke": ([ctypes.c_void_p, ctypes.c_int, ctypes.c_int, ctypes.c_void_p], ctypes.c_int),
    "sim_snapshot_size": ([ctypes.c_void_p], ctypes.c_uint64),
    "sim_snapshot": ([ctypes.c_void_p, ctypes.c_void_p], None),
    "sim_restore": ([ctypes.c_void_p, ctypes.c_void_p], None),
    "sim_state_equal": ([ctypes.c_void_p, ctypes.c_void_p], ctypes.c_int),
    "sim_vars_differ": ([ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p], ctypes.c_int),
    "sim_force": ([ctypes.c_void_p, ctypes.c_int, ctypes.c_int, ctypes.c_void_p,
                   ctypes.c_void_p, ctypes.c_uint64], ctypes.c_int),
    "sim_release_all": ([ctypes.c_void_p], None),
    "sim_waves": ([ctypes.c_void_p, ctypes.c_char_p, ctypes.c_uint64, ctypes.c_uint64,
                   ctypes.c_uint64], ctypes.c_int),
    "sim_trace_ports": ([ctypes.c_void_p, ctypes.c_int] + [ctypes.c_void_p] * 5, ctypes.c_int),
    "sim_trace": ([ctypes.c_void_p, ctypes.c_int], None),
    "sim_trace_count": ([ctypes.c_void_p], ctypes.c_uint64),
    "sim_trace_take": ([ctypes.c_void_p] * 4, None),
    "sim_timeline_watch": ([ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p,
                            ctypes.c_void_p, ctypes.c_int], ctypes.c_int),
    "sim_timeline": ([ctypes.c_void_p, ctypes.c_int], None),
    "sim_timeline_count": ([ctypes.c_void_p], ctypes.c_uint64),
    "sim_timeline_take": ([ctypes.c_void_p] * 4, None),
}


def _window(window):
    if window is None:
        return (0, 2 ** 64 - 1)
    start, stop = (int(x) for x in window)
    if start < 0 or stop <= start:
        raise ValueError(f"waveform window {window}: need 0 <= start < stop")
    return (start, stop)


@dataclass(frozen=True)
class Var:
    index: int
    name: str
    bits: int
    depth: int
    entsize: int


_LIVE = weakref.WeakSet()


@atexit.register
def _close_all():
    # Free every model before the process exits: Verilator's own static destructors run
    # after Python's, and a model still alive then can crash the exit.
    for r in list(_LIVE):
        r.close()


class FastRunner:
    """Executor on the Verilated model (``run(program, memory) -> (memory, stats)``).

    Parameters
    ----------
    config : AccelConfig
    bytes_per_cycle, latency : memory model (default: the config's)
    max_cycles : watchdog budget for one run (default: generous, from the program size)
    waves : path of a waveform file (``.vcd`` or ``.fst``) that each run rewrites with the
        cycles of ``window``; uses the traced build of the model
    timeline : record a Timeline of every run (``self.timeline`` after it; sim/timeline.py)
    window : ``(start, stop)``: the cycles ``start <= c < stop`` after the start pulse
        (cycle 0), default all of them. Cycle ``c`` is at time ``c * period`` (the clock
        low, the values the runner peeks at that cycle) and ``c * period + period / 2`` (just
        after its rising edge), in ps, ``period`` from the configuration's clock.
    """

    name = "verilator"

    def __init__(self, config: AccelConfig, *, bytes_per_cycle=None, latency=None,
                 max_cycles=None, netlist=None, quiet=False, waves=None, window=None,
                 timeline=False):
        self.config = config
        self.bytes_per_cycle = bytes_per_cycle or config.mem_bytes_per_cycle
        self.latency = latency or config.mem_latency
        self.max_cycles = max_cycles
        self.waves = Path(waves) if waves else None
        fmt = wave_format(waves) if waves else None
        self.window = _window(window)
        self.build_dir = build_model(config, netlist=netlist, waves=fmt, quiet=quiet)
        self.lib = load_library(self.build_dir / "libsim.so", _SIGS)
        self.h = self.lib.sim_new()
        self.lib.sim_mem_config(self.h, config.dram_bytes, float(self.bytes_per_cycle),
                                int(self.latency))
        # counters in a RAM (config.counter_store): the harness peeks at it in the RTL
        # model; a netlist's RAM cells are read through the port, one clock edge a read
        self.lib.sim_csr_clocked(self.h, int(config.counter_store == "bram"))
        self._vars = None
        self.record_timeline = timeline
        self.timeline = None
        self._timeline_rows = None
        _LIVE.add(self)

    def close(self):
        if getattr(self, "h", None):
            self.lib.sim_free(self.h)
            self.h = None

    def __del__(self):
        self.close()

    # --- executor interface --------------------------------------------------------------
    @property
    def period_ps(self) -> int:
        """One clock cycle in the waveform's time unit (ps), even, from the clock."""
        return max(2, 2 * round(1e6 / self.config.clock_mhz / 2))

    def load(self, program: Program, memory: MemoryImage):
        """Reset, place memory and program; return the program address (not started).
        With ``waves``, (re)open the waveform file for the run that follows."""
        dram, prog_addr = place_program(self.config, program, memory)
        self.lib.sim_mem_write(self.h, 0, dram.ctypes.data, dram.size)
        self.lib.sim_reset(self.h)
        if self.waves:
            self.open_waves(self.waves)
        return prog_addr

    def open_waves(self, path):
        """(Re)open the waveform file: the cycles of the window from now on go to ``path``
        (a traced runner only)."""
        self.waves = Path(path)
        self.waves.parent.mkdir(parents=True, exist_ok=True)
        if self.lib.sim_waves(self.h, str(self.waves).encode(), *self.window,
                              self.period_ps) != 0:
            raise OSError(f"cannot write the waveform file {self.waves}")

    def close_waves(self):
        """Finish the waveform file (it is complete once this returns)."""
        if self.waves and getattr(self, "h", None):
            self.lib.sim_waves(self.h, None, 0, 0, 0)

    def run(self, program: Program, memory: MemoryImage, *, max_cycles=None, pos=0):
        pos = check_pos(self.config, pos)
        prog_addr = self.load(program, memory)
        budget = max_cycles or self.max_cycles or self.default_budget(program)
        done, stats = self._go(prog_addr, pos, budget)
        return self.read_memory(memory), stats

    def _go(self, prog_addr, pos, budget):
        """Start the loaded program and run it to its end or the budget: (done, stats)."""
        if self.record_timeline:
            from .timeline import arm
            if self._timeline_rows is None:
                self._timeline_rows = arm(self)
            self.lib.sim_timeline(self.h, 1)
        t0 = time.perf_counter()
        self.lib.sim_start(self.h, prog_addr, pos)
        done = self.lib.sim_run(self.h, budget)
        wall = time.perf_counter() - t0
        self.close_waves()
        stats = self.stats(wall)
        if self.record_timeline:
            from .timeline import collect
            self.lib.sim_timeline(self.h, 0)
            self.timeline = collect(self, self._timeline_rows, stats["sim_cycles"])
        if not done:
            stats["error"] = "WATCHDOG"
        return done, stats

    # --- session primitives (sw.executor.Session) --------------------------------------------
    def mem_write(self, addr, data: bytes):
        buf = np.frombuffer(bytes(data), np.uint8)
        self.lib.sim_mem_write(self.h, addr, buf.ctypes.data, buf.size)

    def mem_read(self, addr, n) -> bytes:
        out = np.zeros(n, np.uint8)
        self.lib.sim_mem_read(self.h, addr, out.ctypes.data, n)
        return out.tobytes()

    def execute(self, prog_addr, pos=0, *, max_cycles=None) -> dict:
        """Reset the accelerator (not the memory) and run the program at ``prog_addr``."""
        self.lib.sim_reset(self.h)
        if self.waves:
            self.open_waves(self.waves)
        budget = max_cycles or self.max_cycles or 100_000_000
        return self._go(prog_addr, pos, budget)[1]

    def default_budget(self, program):
        # Generous: far beyond any legal program of this size; catches true hangs only.
        return 10_000_000 + 100_000 * len(program)

    def read_memory(self, memory: MemoryImage):
        out = np.zeros(memory.size, np.uint8)
        self.lib.sim_mem_read(self.h, 0, out.ctypes.data, memory.size)
        return MemoryImage(bytearray(out.tobytes()), dict(memory.symbols))

    def stats(self, wall=None):
        st = {c.name.lower(): int(self.lib.sim_counter(self.h, c.value)) for c in Counter}
        code = self.lib.sim_error_code(self.h)
        st["error"] = ErrorCode(code).name if code else None
        st["sim_cycles"] = int(self.lib.sim_cycle(self.h))
        st["executor"] = self.name
        if wall is not None:
            st["wall_s"] = wall
            st["sim_cycles_per_s"] = st["sim_cycles"] / wall if wall > 0 else 0.0
        return st

    # --- fault-injection primitives ------------------------------------------------------
    def variables(self):
        """Every public variable of the model (flops, memories and nets)."""
        if self._vars is None:
            out = []
            name = ctypes.create_string_buffer(512)
            b, d, e = ctypes.c_int(), ctypes.c_int(), ctypes.c_int()
            for i in range(self.lib.sim_num_vars(self.h)):
                self.lib.sim_var_info(self.h, i, name, 512, ctypes.byref(b), ctypes.byref(d),
                                      ctypes.byref(e))
                out.append(Var(i, name.value.decode(), b.value, d.value, e.value))
            self._vars = out
        return self._vars

    def state_elements(self) -> list[StateElement]:
        """Every flop and memory of the design: hierarchical name, width, depth."""
        return state_elements(self.config, self.variables(),
                              (self.build_dir / f"{TOP}.v").read_text())

    def peek(self, elem, index=0) -> int:
        v = self.variables()[elem.var_index if isinstance(elem, StateElement) else elem]
        buf = (ctypes.c_uint8 * v.entsize)()
        if self.lib.sim_peek(self.h, v.index, index, buf) != 0:
            raise IndexError(f"{v.name}[{index}] out of range (depth {v.depth})")
        return int.from_bytes(bytes(buf), "little") & ((1 << v.bits) - 1)

    def poke(self, elem, value, index=0):
        v = self.variables()[elem.var_index if isinstance(elem, StateElement) else elem]
        value &= (1 << v.bits) - 1
        buf = (ctypes.c_uint8 * v.entsize)(*value.to_bytes(v.entsize, "little"))
        if self.lib.sim_poke(self.h, v.index, index, buf) != 0:
            raise IndexError(f"{v.name}[{index}] out of range (depth {v.depth})")

    def flip(self, elem, bit, index=0):
        self.poke(elem, self.peek(elem, index) ^ (1 << bit), index)

    def snapshot(self) -> bytes:
        n = self.lib.sim_snapshot_size(self.h)
        buf = ctypes.create_string_buffer(n)
        self.lib.sim_snapshot(self.h, buf)
        return buf.raw

    def restore(self, snap: bytes):
        """Restore a snapshot (and release every forced bit)."""
        self.lib.sim_restore(self.h, snap)

    def state_equals(self, snap: bytes) -> bool:
        """Whether the whole state (memory model, DRAM, every variable) equals ``snap``."""
        return bool(self.lib.sim_state_equal(self.h, snap))

    def vars_differ(self, snap: bytes, include: bytes) -> int:
        """How many variables flagged in ``include`` (a byte per variable) differ from
        ``snap``."""
        return int(self.lib.sim_vars_differ(self.h, snap, include))

    def force(self, elem, mask, value, index=0, duration=0):
        """Stuck-at: hold the bits of ``mask`` at ``value``, now and after every clock edge,
        for ``duration`` cycles (0: until restore/release)."""
        v = self.variables()[elem.var_index if isinstance(elem, StateElement) else elem]
        full = (1 << (8 * v.entsize)) - 1
        and_m = (full ^ mask).to_bytes(v.entsize, "little")
        or_m = (value & mask).to_bytes(v.entsize, "little")
        if self.lib.sim_force(self.h, v.index, index, and_m, or_m, duration) != 0:
            raise IndexError(f"{v.name}[{index}] out of range (depth {v.depth})")

    def trace_ports(self) -> dict:
        """Set up the memory-port trace: every port of every memory whose accesses all have
        Amaranth's plain shape (sim/state.py, memory_ports). Returns ``{memory variable
        index: depth}`` of the memories traced."""
        byname = {v.name: v for v in self.variables()}
        rows, kinds, traced = [], [], {}
        verilog = (self.build_dir / f"{TOP}.v").read_text()
        for (module, mem), ports in memory_ports(verilog).items():
            scope = f"TOP.{module}."
            mv = byname.get(scope + mem)
            if ports is None or mv is None:
                continue
            mine = []
            for p in ports:
                en, ad = (byname.get(scope + p.en) if p.en else None), byname.get(scope + p.addr)
                if ad is None or (p.en and en is None):
                    mine = None
                    break
                mine.append(((-1 if en is None else en.index), ad.index, p.lo, p.width or 64,
                             mv.depth, (mv.index, p.kind)))
            if mine is None:
                continue
            traced[mv.index] = mv.depth
            rows += [r[:5] for r in mine]
            kinds += [r[5] for r in mine]
        cols = [np.ascontiguousarray([r[i] for r in rows], np.int32) for i in range(5)]
        if self.lib.sim_trace_ports(self.h, len(rows), *(c.ctypes.data for c in cols)) != 0:
            raise RuntimeError("memory-port trace: a variable index out of range")
        self._trace_kinds = kinds
        return traced

    def trace(self, on: bool):
        """Start (clearing what was recorded) or stop recording memory-port accesses."""
        self.lib.sim_trace(self.h, int(on))

    def trace_events(self):
        """-> (cycle, memory variable index, entry, kind) arrays of the accesses recorded;
        kind is ``r`` (read), ``w`` (whole-word write) or ``p`` (part-word write)."""
        n = int(self.lib.sim_trace_count(self.h))
        cyc, port, ent = np.empty(n, np.uint64), np.empty(n, np.uint32), np.empty(n, np.uint32)
        if n:
            self.lib.sim_trace_take(self.h, cyc.ctypes.data, port.ctypes.data, ent.ctypes.data)
        k = self._trace_kinds
        mem = np.array([k[i][0] for i in range(len(k))], np.int64)[port] if n else port
        kind = np.array([k[i][1] for i in range(len(k))])[port] if n else port.astype(str)
        return cyc.astype(np.int64), mem, ent.astype(np.int64), kind

    def release_all(self):
        self.lib.sim_release_all(self.h)

    def start(self, prog_addr, pos=0):
        self.lib.sim_start(self.h, prog_addr, pos)

    def step(self, cycles) -> bool:
        """Run up to ``cycles`` cycles (stops early at done); return whether done."""
        return bool(self.lib.sim_run(self.h, cycles))

    @property
    def cycle(self):
        return int(self.lib.sim_cycle(self.h))

    def run_bare(self, program: Program, memory: MemoryImage):
        """Run the same program on the bare C++ loop executable (benchmark reference)."""
        import tempfile, json
        image, prog_addr = program_image(self.config, program, memory)
        with tempfile.NamedTemporaryFile(suffix=".bin") as f:
            f.write(image.tobytes())
            f.flush()
            out = subprocess.run([str(self.build_dir / "bare"), f.name, str(self.config.dram_bytes),
                                  str(prog_addr), str(float(self.bytes_per_cycle)),
                                  str(self.latency)], capture_output=True, text=True, check=True)
        return json.loads(out.stdout)
