"""The output-stationary int8 x int8 systolic array as an engine (hw/systolic.py)."""

from __future__ import annotations

from ..isa import Engine
from .base import EngineSpec

__all__ = ["SystolicSpec"]


class SystolicSpec(EngineSpec):
    """``rows x cols`` int8 MACs; one input feature per step, ``cols`` channels."""

    tag = Engine.SYSTOLIC

    def channels(self, cfg):
        return cfg.cols

    def steps(self, cfg, k, mode):
        return k

    def peak_macs(self, cfg, mode):
        return cfg.rows * cfg.cols
