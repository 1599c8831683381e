"""The LUT tensor core as an engine (hw/lut.py; docs/lut.md)."""

from __future__ import annotations

from amaranth import Const, Mux

from ..config import LUT_GROUP
from ..isa import Engine
from .base import EngineSpec, is_value

__all__ = ["LutSpec"]


def _enabled(cfg, wbits):
    """Whether ``wbits`` is one of the configuration's LUT weight widths."""
    mask = sum(1 << b for b in cfg.lut_wbits)
    if is_value(wbits):
        return Const(mask, 8).bit_select(wbits, 1)
    return bool(mask >> wbits & 1)


class LutSpec(EngineSpec):
    """``rows x 2*cols`` cells; a step is one bit plane of a group of 4 features."""

    tag = Engine.LUT
    act_group = LUT_GROUP

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

    def illegal(self, cfg, k, mode):
        bad = ~_enabled(cfg, mode.wbits) if is_value(mode.wbits) else \
            not _enabled(cfg, mode.wbits)
        if is_value(k):
            return bad | (k[:2] != 0)
        return bad or k % LUT_GROUP != 0

    def peak_macs(self, cfg, mode):
        return cfg.lut_peak_macs_per_cycle(mode.wbits)
