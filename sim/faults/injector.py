"""One worker's injector: the Verilated model loaded once, a golden run with periodic
snapshots, then faults injected one after another and classified.

Per fault: restore the nearest snapshot at or before the fault's cycle, run up to it, inject,
then run on; at every later snapshot cycle compare the whole state with the golden run's
(same cycle): equal means masked from then on, so the run stops there. Otherwise the run ends
at ``done`` or at the watchdog:

* DUE -- the error flag was raised, or the watchdog caught a hang;
* SDC -- outputs (the whole memory image) differ and no error was raised;
* masked -- outputs bit-identical; ``latent`` if the design's state (counters aside) still
  differs from the golden run's at the end (a fault left behind, undetected).

A flip in a memory entry needs no simulation when the golden run's memory-port trace says
what happens to that entry next: overwritten whole before any read (masked), or never touched
again (masked, latent). Only a read makes the fault live; then it is simulated as above.
"""

from __future__ import annotations

import time

import numpy as np

from .models import Fault, inject
from .sites import fault_sites, select_structures

__all__ = ["Injector", "GoldenKernel"]

OUTCOMES = ("masked", "sdc", "due")


_KIND = {"r": 0, "w": 1, "p": 2}     # a read sorts before a write in the same cycle
_ENTRY_SHIFT = 42


class GoldenKernel:
    def __init__(self, prog_addr, start_cycle, end_cycle, snaps, final_snap, final_mem,
                 accesses=None):
        self.prog_addr, self.start_cycle, self.end_cycle = prog_addr, start_cycle, end_cycle
        # {memory variable index: sorted keys entry << 42 | cycle << 2 | kind}
        self.accesses = accesses or {}
        self.snaps = snaps                  # [(cycle, bytes)], ascending
        self.snap_cycles = np.array([c for c, _ in snaps])
        self.final_snap, self.final_mem = final_snap, final_mem

    @property
    def cycles(self):
        """Cycles a fault can hit: [start_cycle, end_cycle)."""
        return self.end_cycle - self.start_cycle


class Injector:
    """Parameters
    ----------
    config : AccelConfig
    workload : Workload
    snapshot_every : cycles between golden snapshots (default: from ``snapshot_budget``)
    snapshot_budget : bytes all snapshots of all kernels may take
    structures : only these structures are fault sites (default: all)
    """

    def __init__(self, config, workload, *, snapshot_every=None, snapshot_budget=256 << 20,
                 structures=None, quiet=True, use_trace=True):
        from sim.fast import FastRunner
        self.config, self.workload = config, workload
        self.rtl = FastRunner(config, quiet=quiet)
        self.use_trace = use_trace      # False: simulate every memory fault (tests compare)
        self.traced = self.rtl.trace_ports() if use_trace else {}
        every = fault_sites(self.rtl)
        self.sites = select_structures(every, structures)
        self.elements = {e.name: e for s in self.sites.values() for e in s.elements}
        # latent check: every variable that is state, except the performance counters
        all_state = {e.var_index: s for s, st in every.items() for e in st.elements}
        self._latent_mask = bytes(int(all_state.get(i, "counters") != "counters")
                                  for i in range(len(self.rtl.variables())))
        self.golden = self._golden_runs(snapshot_every, snapshot_budget)

    # --- golden run ----------------------------------------------------------------------
    def _golden_runs(self, every, budget):
        rtl = self.rtl
        ends = []
        for k in self.workload.kernels:          # first pass: lengths, and a sanity check
            _, st = rtl.run(k.program, k.memory, pos=k.pos)
            if st["error"]:
                raise RuntimeError(f"workload kernel {k.name}: the golden run stopped with "
                                   f"{st['error']}")
            ends.append(st["sim_cycles"])
        snap_size = len(rtl.snapshot())
        total = sum(ends)
        if every is None:
            n_snaps = max(len(ends), budget // snap_size)
            every = max(32, -(-total // n_snaps))
        self.snapshot_every = every
        out = []
        for k in self.workload.kernels:
            addr = rtl.load(k.program, k.memory)
            rtl.trace(bool(self.traced))
            rtl.start(addr, k.pos)
            start = rtl.cycle
            snaps = []
            while True:
                snaps.append((rtl.cycle, rtl.snapshot()))
                if rtl.step(every):
                    break
            rtl.trace(False)
            out.append(GoldenKernel(addr, start, rtl.cycle, snaps, rtl.snapshot(),
                                    rtl.read_memory(k.memory).data, self._accesses()))
        return out

    def _accesses(self):
        if not self.traced:
            return {}
        cyc, mem, ent, kind = self.rtl.trace_events()
        code = np.array([_KIND[k] for k in kind.tolist()], np.int64)
        keys = (ent << _ENTRY_SHIFT) | (cyc << 2) | code
        return {m: np.sort(keys[mem == m]) for m in self.traced}

    def _next_access(self, g, elem, f):
        """For a flip in a traced memory entry: ``("w", cycle)`` (overwritten before any
        read), ``("none", None)`` (never touched again) or None (read, or part-written: run)."""
        keys = g.accesses.get(elem.var_index) if self.use_trace else None
        if keys is None or f.model not in ("flip", "mbu"):
            return None
        i = int(np.searchsorted(keys, (f.entry << _ENTRY_SHIFT) | (f.cycle << 2)))
        if i == len(keys) or keys[i] >> _ENTRY_SHIFT != f.entry:
            return "none", None
        if keys[i] & 3 == _KIND["w"]:
            return "w", int((keys[i] >> 2) & ((1 << (_ENTRY_SHIFT - 2)) - 1))
        return None

    # --- one fault -----------------------------------------------------------------------
    def run_fault(self, f: Fault) -> dict:
        rtl, g = self.rtl, self.golden[f.kernel]
        elem = self.elements[f.element]
        nxt = self._next_access(g, elem, f)
        if nxt is not None:
            untouched = nxt[0] == "none"
            return {"outcome": "masked", "error": None, "out_bytes": 0,
                    "latent": int(untouched and bool(self._latent_mask[elem.var_index])),
                    "converged": nxt[1], "end_cycle": g.end_cycle}
        j = int(np.searchsorted(g.snap_cycles, f.cycle, side="right")) - 1
        rtl.restore(g.snaps[j][1])
        if f.cycle > rtl.cycle:
            rtl.step(f.cycle - rtl.cycle)
        inject(rtl, elem, f)
        forced_until = (None if f.model in ("flip", "mbu") else
                        (f.cycle + f.duration if f.duration else float("inf")))
        budget_end = f.cycle + 2 * g.cycles + 1000      # the watchdog
        res = {"converged": None}
        done = False
        j += 1
        # compare at the next snapshots, then ever more rarely: a fault that has not been
        # masked after a few snapshots rarely is later, and a comparison is not free
        # (a fault masked late is still found masked at the end, from the outputs)
        checks, next_check = 0, j
        while not done:
            nxt = int(g.snap_cycles[j]) if j < len(g.snaps) else budget_end
            nxt = min(nxt, budget_end)
            done = rtl.step(nxt - rtl.cycle)
            if done or rtl.cycle >= budget_end:
                break
            if j < len(g.snaps) and j >= next_check and rtl.cycle == g.snap_cycles[j] and \
                    (forced_until is None or rtl.cycle >= forced_until):
                checks += 1
                next_check = j + (1 if checks < 4 else 1 << min(checks - 3, 6))
                if not rtl.state_equals(g.snaps[j][1]):
                    j += 1
                    continue
                res.update(outcome="masked", error=None, latent=0, converged=rtl.cycle,
                           end_cycle=g.end_cycle, out_bytes=0)
                return res
            j += 1
        res["end_cycle"] = rtl.cycle
        if not done:
            res.update(outcome="due", error="WATCHDOG", latent=0, out_bytes=0)
            return res
        st = rtl.stats()
        if st["error"]:
            res.update(outcome="due", error=st["error"], latent=0, out_bytes=0)
            return res
        k = self.workload.kernels[f.kernel]
        out = rtl.read_memory(k.memory)
        diff = np.frombuffer(out.data, np.uint8) != np.frombuffer(g.final_mem, np.uint8)
        n_bad = int(diff.sum())
        if not n_bad:
            rtl.release_all()
            latent = int(rtl.vars_differ(g.final_snap, self._latent_mask) > 0)
            res.update(outcome="masked", error=None, latent=latent, out_bytes=0)
            return res
        res.update(outcome="sdc", error=None, latent=0, out_bytes=n_bad)
        if self.workload.effect is not None:
            res.update(self.workload.effect(f.kernel, out))
        return res

    def run_batch(self, items):
        """``items``: [(fault id, Fault)] -> [(fault id, result dict)]."""
        out = []
        for fid, f in items:
            t0 = time.perf_counter()
            r = self.run_fault(f)
            r["wall_ms"] = 1e3 * (time.perf_counter() - t0)
            out.append((fid, r))
        return out
