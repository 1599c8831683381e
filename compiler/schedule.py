"""Dependency tokens from data dependencies.

The lowering emits instructions with the scratchpad ranges (and external-memory ranges) each
reads and writes. This pass finds, for every instruction, the last conflicting instruction
(read-after-write, write-after-read, write-after-write) in each *other* queue, and turns those
edges into wait/release bits. Tokens between two queues are matched in order (the i-th wait
takes the i-th release), so the kept edges must be strictly increasing on both sides: an
edge implied by an earlier wait of the same queue is dropped.

Because every edge points backwards in program order, the result cannot deadlock whatever
the queue depth: the earliest unfinished instruction always finds room in its queue and has
all its producers finished.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from hw.isa import Opcode, Queue, QUEUE_OF, buffer_depth
from sw.program import Program
from .asm import Assembler

__all__ = ["Insn", "Scheduler"]


class _Ranges:
    """External-memory ranges ``[lo, hi)`` with the index and queue of the instruction that
    touched them, queried for the latest overlapping index per queue. Numpy columns: a query
    is one vectorised pass. A range fully inside a newer one of the same queue can never be
    the latest overlap again, so it is dropped (a program that rewrites the same activation
    slot layer after layer keeps a short list)."""

    def __init__(self):
        self.n = 0
        self.lo = np.zeros(64, np.int64)
        self.hi = np.zeros(64, np.int64)
        self.idx = np.zeros(64, np.int64)
        self.q = np.zeros(64, np.int8)

    def add(self, lo, hi, idx, q):
        n = self.n
        if n:
            dead = (self.q[:n] == q) & (self.lo[:n] >= lo) & (self.hi[:n] <= hi)
            if dead.any():
                keep = ~dead
                m = int(keep.sum())
                for a in (self.lo, self.hi, self.idx, self.q):
                    a[:m] = a[:n][keep]
                n = m
        if n == len(self.lo):
            for name in ("lo", "hi", "idx", "q"):
                a = getattr(self, name)
                setattr(self, name, np.concatenate([a, np.zeros_like(a)]))
        self.lo[n], self.hi[n], self.idx[n], self.q[n] = lo, hi, idx, q
        self.n = n + 1

    def latest(self, lo, hi):
        """{queue value: latest index} over the ranges overlapping [lo, hi)."""
        n = self.n
        hit = (self.lo[:n] < hi) & (lo < self.hi[:n])
        if not hit.any():
            return {}
        qs, ids = self.q[:n][hit], self.idx[:n][hit]
        return {int(q): int(ids[qs == q].max()) for q in np.unique(qs)}


@dataclass
class Insn:
    op: Opcode
    fields: dict
    reads: list = field(default_factory=list)     # (Buffer | "dram", lo, hi)
    writes: list = field(default_factory=list)
    comment: str = ""
    queue: Queue = None
    wait: int = 0
    release: int = 0


class Scheduler:
    """Collects instructions in program order and assigns their dependency tokens."""

    def __init__(self, config):
        self.config = config
        self.insns: list[Insn] = []
        depth = buffer_depth(config)
        # per buffer entry: index of the last writer, and of the last reader in each queue
        self._writer = {b: np.full(d, -1, np.int64) for b, d in depth.items()}
        self._reader = {b: np.full((len(Queue), d), -1, np.int64) for b, d in depth.items()}
        self._dram_w = _Ranges()
        self._dram_r = _Ranges()

    def emit(self, op, *, reads=(), writes=(), comment="", **fields) -> int:
        q = fields["queue"] if op == Opcode.SYNC else QUEUE_OF[op]
        ins = Insn(op, fields, list(reads), list(writes), comment, Queue(q))
        idx = len(self.insns)
        self.insns.append(ins)
        deps = self._conflicts(ins)
        ins.deps = deps
        self._record(ins, idx)
        return idx

    def _conflicts(self, ins):
        last = {}     # queue -> latest conflicting instruction index

        def note(idxs):
            for i in np.atleast_1d(idxs):
                i = int(i)
                if i >= 0:
                    q = self.insns[i].queue
                    last[q] = max(last.get(q, -1), i)

        for buf, lo, hi in ins.reads:
            if buf == "dram":
                note(list(self._dram_w.latest(lo, hi).values()))
            else:
                note(self._writer[buf][lo:hi].max(initial=-1))
        for buf, lo, hi in ins.writes:
            if buf == "dram":
                note(list(self._dram_w.latest(lo, hi).values())
                     + list(self._dram_r.latest(lo, hi).values()))
            else:
                note(self._writer[buf][lo:hi].max(initial=-1))
                for q in Queue:
                    note(self._reader[buf][q.value, lo:hi].max(initial=-1))
        last.pop(ins.queue, None)      # same queue: program order already holds
        return last

    def _record(self, ins, idx):
        for buf, lo, hi in ins.reads:
            if buf == "dram":
                self._dram_r.add(lo, hi, idx, ins.queue.value)
            else:
                self._reader[buf][ins.queue.value, lo:hi] = idx
        for buf, lo, hi in ins.writes:
            if buf == "dram":
                self._dram_w.add(lo, hi, idx, ins.queue.value)
            else:
                self._writer[buf][lo:hi] = idx

    def program(self) -> Program:
        # Keep, per queue pair, only edges that are not implied by an earlier wait.
        latest = {}   # (producer queue, consumer queue) -> producer index already waited for
        for b, ins in enumerate(self.insns):
            for p, a in sorted(ins.deps.items(), key=lambda pa: pa[0].value):
                key = (p, ins.queue)
                if a <= latest.get(key, -1):
                    continue
                latest[key] = a
                ins.wait |= 1 << p.value
                self.insns[a].release |= 1 << ins.queue.value
        asm = Assembler(self.config)
        for ins in self.insns:
            asm._emit(ins.op, ins.comment, wait=ins.wait, release=ins.release, **ins.fields)
        return asm.program()
