"""The LUT tensor core as an engine (hw/lut.py; docs/lut.md)."""

from __future__ import annotations

from amaranth import Const, Module, Mux
from amaranth.lib import wiring

from ..config import LUT_GROUP
from ..isa import Counter, Engine
from ..lut import LutArray, LutPrecompute
from .base import EngineSpec, engine_signature, is_value

__all__ = ["LutSpec", "LutUnit"]


def _enabled(cfg, wbits):
    """Whether ``wbits`` is one of the configuration's LUT weight widths."""
    mask = sum(1 << b for b in cfg.lut_wbits)
    if is_value(wbits):
        return Const(mask, 8).bit_select(wbits, 1)
    return bool(mask >> wbits & 1)


class LutSpec(EngineSpec):
    """``rows x 2*cols`` cells; a step is one bit plane of a group of 4 features."""

    tag = Engine.LUT
    busy_counter = Counter.LUT_BUSY
    act_group = LUT_GROUP
    act_held = True

    def channels(self, cfg):
        return cfg.lut_cols

    def steps(self, cfg, k, mode):
        g, w = k >> 2, mode.wbits
        if not is_value(k, w):
            return g * w
        # wbits is 1..4 where it counts (other widths are refused first): shifts and one
        # adder, no multiplier between the instruction and the range checks
        return Mux(w[2], g << 2, Mux(w[1], Mux(w[0], g + (g << 1), g << 1), g))

    def planes(self, mode):
        return mode.wbits

    def max_planes(self, cfg):
        return max(cfg.lut_wbits)

    def illegal(self, cfg, k, mode):
        if is_value(k, mode.wbits):
            return ~_enabled(cfg, mode.wbits) | (k[:2] != 0)
        return not _enabled(cfg, mode.wbits) or k % LUT_GROUP != 0

    def peak_macs(self, cfg, mode):
        return cfg.lut_peak_macs_per_cycle(mode.wbits)

    def macs_per_credit(self, cfg):
        return LUT_GROUP * cfg.rows * cfg.lut_cols

    def component(self, cfg, *, tag_bits, plane_bits):
        return LutUnit(rows=cfg.rows, cols=cfg.cols, ch=cfg.lut_cols, tag_bits=tag_bits,
                       plane_bits=plane_bits, max_wbits=max(cfg.lut_wbits),
                       deep=cfg.pipelining.lut_skid, skew=cfg.pipelining.lut_skew)


class LutUnit(wiring.Component):
    """The table precompute and the LUT array behind the engine interface: a step is one
    plane of a 4-feature group (its activations, from the four banks, with the group's first
    plane); a credit per group."""

    def __init__(self, *, rows, cols, ch, tag_bits, plane_bits, max_wbits, deep, skew):
        self._rows, self._ch, self._tag = rows, ch, tag_bits
        self._wbits, self._deep, self._skew = max_wbits, deep, skew
        super().__init__(engine_signature(rows=rows, cols=cols, tag_bits=tag_bits,
                                          plane_bits=plane_bits, inflight=6))

    def elaborate(self, platform):
        m = Module()
        R, N, T = self._rows, self._ch, self._tag
        m.submodules.pre = pre = LutPrecompute(rows=R, ch=N, tag_bits=T, deep=self._deep,
                                               chained=True)
        m.submodules.array = lut = LutArray(rows=R, ch=N, tag_bits=T, max_wbits=self._wbits,
                                            skew=self._skew)
        wiring.connect(m, pre.o, lut.i)
        m.d.comb += pre.first_ok.eq(lut.first_ok)
        p, pi = self.i.payload, pre.i.payload
        m.d.comb += [
            pre.i.valid.eq(self.i.valid), self.i.ready.eq(pre.i.ready),
            pi.act.eq(p.act4), pi.nib.eq(p.wgt), pi.plane.eq(p.plane), pi.newgroup.eq(p.new),
            pi.first.eq(p.first), pi.last.eq(p.last), pi.odd.eq(p.mode.lut.odd),
            pi.steps.eq(p.steps), pi.tag.eq(p.tag),
        ]
        wiring.connect(m, lut.o, wiring.flipped(self.o))
        held = [(lut.pending, lut.pending_tag), (lut.active, lut.active_tag),
                (lut.staged, lut.staged_tag), (pre.o.valid, pre.o.payload.tag),
                (pre.held[0], pre.held_tags[0]), (pre.held[1], pre.held_tags[1])]
        for slot, (valid, tag) in zip(self.inflight, held):
            m.d.comb += [slot.valid.eq(valid), slot.tag.eq(tag)]
        entered = lut.i.valid & lut.i.ready
        m.d.comb += [
            self.idle.eq(lut.idle & ~pre.o.valid & ~pre.held.any()),
            self.step.eq(entered),
            self.credit.eq(entered & lut.i.payload.newgroup),
        ]
        return m
