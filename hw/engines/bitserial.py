"""The bit-serial engine (hw/bitserial.py; docs/bitserial.md): 4-bit codes of several data
types, per-group FP4 extra values (BitMoD), int8 as two nibble planes."""

from __future__ import annotations

from amaranth import Module, Mux
from amaranth.lib import wiring

from ..bitserial import BitSerialArray
from ..config import BITSERIAL_DTYPES, LUT_GROUP
from ..isa import BitSerialType, Counter, Engine
from .base import EngineSpec, engine_signature, is_value

__all__ = ["BitSerialSpec", "BitSerialUnit", "is_dtype"]


def is_dtype(mode, t):
    """Whether ``mode``'s data type is ``t`` (a ``BitSerialType``; int or Value)."""
    d = mode.dtype
    if is_value(d):
        return d == t
    return int(getattr(d, "value", d)) == t.value


class BitSerialSpec(EngineSpec):
    """``rows x cols/2`` elements of a 4-feature dot product; a step is one weight entry
    (four features' codes per channel), two terms; an FPX MATMUL starts with its selector
    entry and covers at most one group (``bitserial_group`` features)."""

    tag = Engine.BITSERIAL
    busy_counter = Counter.BITSERIAL_BUSY
    act_group = LUT_GROUP
    act_held = True

    def channels(self, cfg):
        return cfg.bitserial_cols

    def steps(self, cfg, k, mode):
        g = k >> 2
        gs = cfg.bitserial_group.bit_length() - 1
        heads = (k + cfg.bitserial_group - 1) >> gs       # one selector entry per group
        if not is_value(k, mode.dtype):
            if is_dtype(mode, BitSerialType.INT8):
                return 2 * g
            return g + heads if is_dtype(mode, BitSerialType.FPX) else g
        return Mux(is_dtype(mode, BitSerialType.INT8), g << 1,
                   Mux(is_dtype(mode, BitSerialType.FPX), g + heads, g))

    def head(self, mode):
        return is_dtype(mode, BitSerialType.FPX)

    def planes(self, mode):
        if is_value(mode.dtype):
            return Mux(is_dtype(mode, BitSerialType.INT8), 2, 1)
        return 2 if is_dtype(mode, BitSerialType.INT8) else 1

    def max_planes(self, cfg):
        return 2 if "int8" in cfg.bitserial_dtypes else 1

    def illegal(self, cfg, k, mode):
        enabled = [BitSerialType[n.upper()] for n in BITSERIAL_DTYPES
                   if n in cfg.bitserial_dtypes]
        fpx = is_dtype(mode, BitSerialType.FPX)
        if is_value(k, mode.dtype):
            ok = 0
            for t in enabled:
                ok = ok | is_dtype(mode, t)
            return ~ok | (k[:2] != 0) | (fpx & (k > cfg.bitserial_group))
        return (not any(is_dtype(mode, t) for t in enabled) or k % LUT_GROUP != 0
                or (fpx and k > cfg.bitserial_group))

    def peak_macs(self, cfg, mode):
        terms = 4 if is_dtype(mode, BitSerialType.INT8) else 2
        return cfg.rows * cfg.bitserial_cols * LUT_GROUP / terms

    def macs_per_credit(self, cfg):
        return LUT_GROUP * cfg.rows * cfg.bitserial_cols

    def component(self, cfg, *, tag_bits, plane_bits):
        return BitSerialUnit(rows=cfg.rows, cols=cfg.cols, ch=cfg.bitserial_cols,
                             tag_bits=tag_bits, plane_bits=plane_bits)


class BitSerialUnit(wiring.Component):
    """The bit-serial array behind the engine interface: a step's four activation entries
    (from the four banks, read with plane 0) and its weight entry; a credit per group of
    four features (its plane 0 step)."""

    def __init__(self, *, rows, cols, ch, tag_bits, plane_bits):
        self._args = dict(rows=rows, ch=ch, tag_bits=tag_bits, plane_bits=plane_bits)
        super().__init__(engine_signature(rows=rows, cols=cols, tag_bits=tag_bits,
                                          plane_bits=plane_bits, inflight=4))

    def elaborate(self, platform):
        m = Module()
        m.submodules.array = arr = BitSerialArray(**self._args)
        p, ai = self.i.payload, arr.i.payload
        m.d.comb += [
            arr.i.valid.eq(self.i.valid), self.i.ready.eq(arr.i.ready),
            ai.act.eq(p.act4), ai.codes.as_value().eq(p.wgt), ai.plane.eq(p.plane),
            ai.first.eq(p.first), ai.last.eq(p.last), ai.dtype.eq(p.mode.bitserial.dtype),
            ai.steps.eq(p.steps), ai.tag.eq(p.tag),
        ]
        wiring.connect(m, arr.o, wiring.flipped(self.o))
        held = [(arr.pending, arr.pending_tag), (arr.active, arr.active_tag),
                (arr.staged[0], arr.staged_tags[0]), (arr.staged[1], arr.staged_tags[1])]
        for slot, (valid, tag) in zip(self.inflight, held):
            m.d.comb += [slot.valid.eq(valid), slot.tag.eq(tag)]
        entered = arr.i.valid & arr.i.ready
        m.d.comb += [
            self.idle.eq(arr.idle),
            self.step.eq(entered),
            # (a header step reads no activations: ``new`` is low on it)
            self.credit.eq(entered & p.new),
        ]
        return m
