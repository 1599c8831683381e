"""A timeline of every unit of a fast-runner run: which instruction each queue executor held
from which cycle to which, and when each unit was busy.

Recorded in C++ from flops only (sim/harness.cpp, ``record_timeline``), so the untraced
build serves and a run without a timeline pays one branch a cycle:

- each queue executor's FSM state and executing-slot instruction (``Front`` in hw/queue.py):
  an instruction's span runs from the cycle it enters the slot (state CHECK) through its
  checks and token waits to the cycle it leaves RUN; ``start`` is the cycle RUN begins.
- each host counter's event (hw/accelerator.py ``_counters``): the cycles the counter went
  up, read from the registered events (``ev_*``), the counters themselves, or the
  pending counts of ``counter_store = "bram"``. The busy tracks are the counters'
  definitions exactly, so their totals are the counters' values.

Exports: Chrome/Perfetto trace JSON (chrome://tracing, ui.perfetto.dev) and a PNG of each
unit's utilisation over time.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from hw.engines import specs_of
from hw.isa import Counter, IsaError, Queue, disasm

__all__ = ["Timeline", "Span", "TRACKS", "watch_list", "arm", "collect"]

#: Busy tracks: the counter whose events make the track, in display order (engines are
#: added by their spec's busy counter).
TRACKS = {
    "fetch": Counter.FETCH_BYTES,
    "dispatch": Counter.INSNS,
    "load": Counter.LOAD_BUSY,
    "compute (with drain)": Counter.COMPUTE_BUSY,
    "requant": Counter.REQUANT_BUSY,
    "store": Counter.STORE_BUSY,
    "memory read": Counter.BYTES_READ,
    "memory write": Counter.BYTES_WRITTEN,
}
_EXECUTORS = {Queue.LOAD: "load", Queue.COMPUTE: "compute", Queue.STORE: "store"}
_IDLE, _CHECK, _WAIT, _RUN, _HALT, _CHECK2 = range(6)     # hw/queue.py Front's states
_TOP = "TOP.llmaccel_top."


@dataclass
class Span:
    """One instruction in a queue executor's slot: cycles ``enter <= start < end``."""
    queue: Queue
    word: int
    enter: int
    start: int | None = None
    end: int | None = None

    @property
    def text(self):
        try:
            return disasm(self.word)
        except IsaError:
            return f"0x{self.word:032x}"


@dataclass
class Timeline:
    cycles: int
    clock_mhz: float
    config: str
    busy: dict = field(default_factory=dict)     # track -> [(start, end)] cycles, end excl.
    spans: dict = field(default_factory=dict)    # Queue -> [Span] in the order they ran

    def busy_cycles(self, track) -> int:
        return sum(b - a for a, b in self.busy.get(track, ()))

    def instructions(self) -> int:
        return sum(len(v) for v in self.spans.values())

    # --- exports --------------------------------------------------------------------------
    def trace_events(self) -> dict:
        """The Chrome trace-event format: one thread per executor and per busy track."""
        us = 1.0 / self.clock_mhz
        ev = [{"ph": "M", "pid": 1, "name": "process_name",
               "args": {"name": f"llmaccel {self.config} @ {self.clock_mhz:g} MHz"}}]
        tid = 0
        for q, name in _EXECUTORS.items():
            tid += 1
            ev += _thread(tid, f"{name} queue")
            for i, s in enumerate(self.spans.get(q, ())):
                end = s.end if s.end is not None else self.cycles
                ev.append({"ph": "X", "pid": 1, "tid": tid, "name": s.text.split()[0],
                           "ts": s.enter * us, "dur": (end - s.enter) * us,
                           "args": {"insn": s.text, "index": i, "enter_cycle": s.enter,
                                    "start_cycle": s.start, "end_cycle": s.end,
                                    "wait_cycles": (s.start - s.enter)
                                    if s.start is not None else None}})
        for track, ranges in self.busy.items():
            tid += 1
            ev += _thread(tid, track)
            ev += [{"ph": "X", "pid": 1, "tid": tid, "name": track, "ts": a * us,
                    "dur": (b - a) * us, "args": {"cycles": b - a, "from_cycle": a}}
                   for a, b in ranges]
        return {"traceEvents": ev, "displayTimeUnit": "ns",
                "otherData": {"config": self.config, "cycles": self.cycles,
                              "clock_mhz": self.clock_mhz}}

    def write_trace(self, path):
        Path(path).write_text(json.dumps(self.trace_events()))

    def utilisation(self, bins=200):
        """``(edges, {track: fraction busy per bin})`` over the run."""
        n = max(1, min(bins, self.cycles))
        edges = np.linspace(0, self.cycles, n + 1)
        out = {}
        for track, ranges in self.busy.items():
            busy = np.zeros(n)
            if ranges:
                a = np.array(ranges, dtype=np.float64)
                for i in range(n):
                    lo, hi = edges[i], edges[i + 1]
                    busy[i] = np.clip(np.minimum(a[:, 1], hi) - np.maximum(a[:, 0], lo),
                                      0, None).sum() / max(hi - lo, 1e-9)
            out[track] = busy
        return edges, out

    def write_png(self, path, bins=200):
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        edges, util = self.utilisation(bins)
        tracks = [t for t in util if t != "dispatch"]
        fig, axes = plt.subplots(len(tracks), 1, figsize=(10, 0.8 + 0.55 * len(tracks)),
                                 sharex=True, squeeze=False)
        mid = (edges[:-1] + edges[1:]) / 2
        for ax, t in zip(axes[:, 0], tracks):
            u = util[t]
            ax.fill_between(mid, u, step="mid", alpha=0.8)
            ax.set_ylim(0, 1.05)
            ax.set_yticks([])
            total = self.busy_cycles(t) / max(self.cycles, 1)
            ax.set_ylabel(f"{t}\n{total:.0%}", rotation=0, ha="right", va="center", fontsize=8)
        axes[-1, 0].set_xlabel("cycle")
        axes[0, 0].set_title(f"utilisation per unit: {self.config}, {self.cycles} cycles "
                             f"(share of each bin busy; the total beside the name)", fontsize=9)
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        plt.close(fig)

    def table(self) -> str:
        rows = [f"{'unit':<22}{'busy cycles':>13}{'share':>8}{'instructions':>14}"]
        for q, name in _EXECUTORS.items():
            n = len(self.spans.get(q, ()))
            rows.append(f"{name + ' queue':<22}{self.slot_cycles(q):>13}"
                        f"{self.slot_cycles(q) / max(self.cycles, 1):>8.1%}{n:>14}")
        for t in self.busy:
            c = self.busy_cycles(t)
            rows.append(f"{t:<22}{c:>13}{c / max(self.cycles, 1):>8.1%}{'':>14}")
        return "\n".join(rows)

    def slot_cycles(self, q) -> int:
        """Cycles the executor of queue ``q`` held an instruction (its busy signal)."""
        return sum((s.end if s.end is not None else self.cycles) - s.enter
                   for s in self.spans.get(q, ()))


def _thread(tid, name):
    return [{"ph": "M", "pid": 1, "tid": tid, "name": "thread_name", "args": {"name": name}},
            {"ph": "M", "pid": 1, "tid": tid, "name": "thread_sort_index",
             "args": {"sort_index": tid}}]


def _round_robin_address(verilog):
    """The counters' RAM's round-robin read address (``rr`` in ``_bram_counters``): its
    always-enabled read port (the host's port has an enable)."""
    from .state import memory_ports
    for p in memory_ports(verilog).get(("llmaccel_top", "cnt_mem")) or ():
        if p.kind == "r" and p.en is None:
            return p.addr
    raise RuntimeError("timeline: the counters' RAM has no round-robin read port")


def watch_list(config, variables, verilog):
    """What to watch in this model: ``(rows, rr)``; a row is ``(label, var index, kind,
    sel, shift)``: kind as in the harness, ``shift`` the cycles between an event and the
    cycle it is recorded at. Raises RuntimeError when the model lacks a variable."""
    byname = {v.name: v.index for v in variables}

    def var(name):
        if _TOP + name not in byname:
            raise RuntimeError(f"timeline: the model has no variable {name}")
        return byname[_TOP + name]
    rows = []
    for q, name in _EXECUTORS.items():
        # the slot's word first: the harness records a cycle's changes in this order, so a
        # new instruction's word is known when the state says it entered
        rows.append((("insn", q), var(f"{name}.insn"), 0, 0, 0))
        rows.append((("state", q), var(f"{name}.state"), 0, 0, 0))
    tracks = dict(TRACKS)
    for es in specs_of(config):
        tracks[es.name] = es.busy_counter
    if config.sfu:
        tracks["sfu"] = Counter.SFU_BUSY
    rr = -1
    for track, c in tracks.items():
        low = c.name.lower()
        if config.counter_store == "bram":
            rr = var(_round_robin_address(verilog))
            rows.append((("busy", track), var(f"cnt_pend_{low}"), 2, c.value, 0))
        elif _TOP + f"ev_{low}" in byname:     # registered events: the value is the event
            rows.append((("busy", track), var(f"ev_{low}"), 0, 0, 1))
        else:
            rows.append((("busy", track), var(f"cnt_{low}"), 1, 0, 0))
    return rows, rr


def arm(runner):
    """Set up the watches on ``runner`` (a FastRunner); returns the rows for ``collect``."""
    rows, rr = watch_list(runner.config, runner.variables(),
                          (runner.build_dir / "llmaccel_top.v").read_text())
    var = np.array([r[1] for r in rows], np.int32)
    kind = np.array([r[2] for r in rows], np.int32)
    sel = np.array([r[3] for r in rows], np.uint64)
    if runner.lib.sim_timeline_watch(runner.h, len(rows), var.ctypes.data, kind.ctypes.data,
                                     sel.ctypes.data, rr) != 0:
        raise RuntimeError("timeline: a watched variable is out of range")
    return rows


def collect(runner, rows, cycles) -> Timeline:
    """Turn what the harness recorded into a Timeline (``cycles``: the run's length)."""
    lib, h = runner.lib, runner.h
    n = int(lib.sim_timeline_count(h))
    cyc = np.empty(n, np.uint64)
    watch = np.empty(n, np.uint32)
    val = np.empty((n, 16), np.uint8)
    if n:
        lib.sim_timeline_take(h, cyc.ctypes.data, watch.ctypes.data, val.ctypes.data)
    tl = Timeline(cycles=cycles, clock_mhz=runner.config.clock_mhz, config=runner.config.name)
    words = {q: 0 for q in _EXECUTORS}
    tl.spans = {q: [] for q in _EXECUTORS}
    open_at = {}
    for r in rows:
        if r[0][0] == "busy":
            tl.busy[r[0][1]] = []
    on_flags = val.any(axis=1).tolist()
    first = val[:, 0].tolist()
    for i, (c, w) in enumerate(zip(cyc.tolist(), watch.tolist())):
        (what, key), _, kind, _, shift = rows[w]
        c -= shift
        if what == "insn":
            words[key] = int.from_bytes(val[i].tobytes(), "little")
        elif what == "state":
            new = first[i]
            _step(tl.spans[key], new, c, words[key], key)
        elif on_flags[i]:
            open_at.setdefault(key, c)
        elif key in open_at:
            tl.busy[key].append((open_at.pop(key), c))
    for key, a in open_at.items():
        tl.busy[key].append((a, cycles))
    return tl


def _step(spans, new, cycle, word, q):
    """Apply one FSM state change of queue ``q``'s executor at ``cycle``: entering CHECK
    is a new instruction in the slot (from IDLE, or straight from the last one's RUN)."""
    if new == _CHECK:
        if spans and spans[-1].end is None:
            spans[-1].end = cycle
        spans.append(Span(q, word, cycle))
    elif new == _RUN and spans:
        spans[-1].start = cycle
    elif new in (_IDLE, _HALT) and spans and spans[-1].end is None:
        spans[-1].end = cycle
