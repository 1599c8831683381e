"""The output-stationary int8 x int8 systolic array as an engine (hw/systolic.py)."""

from __future__ import annotations

from amaranth import Module
from amaranth.lib import wiring

from ..isa import Counter, Engine
from ..systolic import SystolicArray
from .base import EngineSpec, engine_signature

__all__ = ["SystolicSpec", "SystolicUnit"]


class SystolicSpec(EngineSpec):
    """``rows x cols`` int8 MACs; one input feature per step, ``cols`` channels."""

    tag = Engine.SYSTOLIC
    busy_counter = Counter.ARRAY_BUSY

    def channels(self, cfg):
        return cfg.cols

    def steps(self, cfg, k, mode):
        return k

    def peak_macs(self, cfg, mode):
        return cfg.rows * cfg.cols

    def macs_per_credit(self, cfg):
        return cfg.rows * cfg.cols

    def late_column(self, cfg):
        # the two-stage accumulator writer (no group scales) takes a directly drained
        # array's column a cycle late instead of registering it
        return cfg.systolic_drain == "direct" and not cfg.group_scale

    def component(self, cfg, *, tag_bits, plane_bits):
        late = self.late_column(cfg)
        return SystolicUnit(rows=cfg.rows, cols=cfg.cols, tag_bits=tag_bits,
                            plane_bits=plane_bits, residue=cfg.acc_check == "residue",
                            drain=cfg.systolic_drain, late=late,
                            acc_bits=cfg.systolic_acc_bits, tile_rows=cfg.systolic_tile_rows)


class SystolicUnit(wiring.Component):
    """The systolic array behind the engine interface (``engine_signature``): a step's
    activation entry and weight entry are one k step; a credit per step."""

    def __init__(self, *, rows, cols, tag_bits, plane_bits, **array):
        self._args = dict(rows=rows, cols=cols, tag_bits=tag_bits, **array)
        super().__init__(engine_signature(rows=rows, cols=cols, tag_bits=tag_bits,
                                          plane_bits=plane_bits, inflight=2))

    def elaborate(self, platform):
        m = Module()
        m.submodules.array = array = SystolicArray(**self._args)
        p, ai = self.i.payload, array.i.payload
        m.d.comb += [
            array.i.valid.eq(self.i.valid), self.i.ready.eq(array.i.ready),
            ai.a.eq(p.act), ai.b.eq(p.wgt), ai.first.eq(p.first), ai.last.eq(p.last),
            ai.k.eq(p.steps), ai.tag.eq(p.tag),
            self.idle.eq(array.idle), self.fault.eq(array.fault),
            self.inflight[0].valid.eq(array.pending), self.inflight[0].tag.eq(array.pending_tag),
            self.inflight[1].valid.eq(array.active), self.inflight[1].tag.eq(array.active_tag),
            self.step.eq(array.i.valid & array.i.ready),
            self.credit.eq(array.i.valid & array.i.ready),
        ]
        wiring.connect(m, array.o, wiring.flipped(self.o))
        return m
