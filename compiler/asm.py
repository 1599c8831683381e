"""A small assembler over hw.isa: the compiler and the tests emit programs through it."""

from __future__ import annotations

from hw.isa import Buffer, Engine, Opcode, Queue, encode
from sw.program import Program

__all__ = ["Assembler", "mask"]


def mask(*queues) -> int:
    m = 0
    for q in queues:
        m |= 1 << Queue(q).value
    return m


class Assembler:
    """Accumulates instruction words; ``wait``/``release`` take queue masks (see ``mask``)."""

    def __init__(self, config):
        self.config = config
        self.words: list[int] = []
        self.comments: list[str] = []

    def _emit(self, op, comment="", **f):
        self.words.append(encode(op, **f))
        self.comments.append(comment)

    def load(self, buf, sp_addr, dram_addr, rows, stride, *, wait=0, release=0, comment=""):
        self._emit(Opcode.LOAD, comment, buf=Buffer(buf), sp_addr=sp_addr, dram_addr=dram_addr,
                   rows=rows, stride=stride, wait=wait, release=release)

    def store(self, buf, sp_addr, dram_addr, rows, stride, *, wait=0, release=0, comment=""):
        self._emit(Opcode.STORE, comment, buf=Buffer(buf), sp_addr=sp_addr, dram_addr=dram_addr,
                   rows=rows, stride=stride, wait=wait, release=release)

    def matmul(self, act_addr, wgt_addr, acc_addr, k, *, accumulate=False,
               engine=Engine.SYSTOLIC, mode=0, scaled=False, shift=0,
               scale_addr=0, wait=0, release=0, comment=""):
        """``mode``: the engine's MATMUL mode, a dict of its fields (or the raw bits)."""
        self._emit(Opcode.MATMUL, comment, act_addr=act_addr, wgt_addr=wgt_addr,
                   acc_addr=acc_addr, k=k, accumulate=int(accumulate), engine=engine,
                   mode=mode, scaled=int(scaled), shift=shift,
                   scale_addr=scale_addr, wait=wait, release=release)

    def requant(self, acc_addr, out_addr, scale_addr, count, shift, *, res_addr=None,
                relu=False, wait=0, release=0, comment=""):
        self._emit(Opcode.REQUANT, comment, acc_addr=acc_addr, out_addr=out_addr,
                   scale_addr=scale_addr, count=count, shift=shift,
                   residual=int(res_addr is not None), res_addr=res_addr or 0,
                   relu=int(relu), wait=wait, release=release)

    def sync(self, queue, *, wait=0, release=0, comment=""):
        self._emit(Opcode.SYNC, comment, queue=Queue(queue), wait=wait, release=release)

    def end(self):
        self._emit(Opcode.END, "end")

    def program(self) -> Program:
        if not self.words or self.words[-1] != encode(Opcode.END):
            self.end()
        return Program(list(self.words), self.config.hash, list(self.comments))
