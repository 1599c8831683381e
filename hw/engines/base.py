"""The spec every MATMUL engine fills in (hw/engines/__init__.py registers them)."""

from __future__ import annotations

from amaranth import Value

from ..isa import Engine

__all__ = ["EngineSpec", "is_value"]


def is_value(*xs):
    """Whether any of ``xs`` is an Amaranth value (a rule is being built as hardware)."""
    return any(isinstance(x, Value) or hasattr(x, "as_value") for x in xs)


class EngineSpec:
    """One MATMUL engine, as the compute unit, the golden model and the compiler see it.

    Rules take plain integers (the golden model, the compiler) or Amaranth values (the
    compute unit's checks) and give the same answer; ``mode`` is the engine's member of the
    ISA's ``MatmulMode`` (a view in hardware, a namespace of its fields in software).

    Members
    -------
    tag : Engine
        The ISA's tag; ``name`` (its lower-case name) is what configurations list.
    act_group : int
        Activation entries one read takes (1: an entry per step; 4: a table group from the
        four activation banks at once, ``act_addr`` a multiple of 4).
    """

    tag: Engine
    act_group = 1

    @property
    def name(self):
        return self.tag.name.lower()

    def channels(self, cfg):
        """Output channels (accumulator entries) one MATMUL writes."""
        raise NotImplementedError

    def steps(self, cfg, k, mode):
        """Engine steps of a MATMUL of ``k`` features: also the weight entries it reads."""
        raise NotImplementedError

    def planes(self, mode):
        """Steps per activation read (a read serves this many consecutive steps)."""
        return 1

    def illegal(self, cfg, k, mode):
        """Whether ``k`` and ``mode`` are refused (ILLEGAL_FIELD) beyond the generic rules
        (engine built, ``k`` > 0, no mode bit beyond the engine's)."""
        return False

    def misaligned(self, act_addr):
        """Whether ``act_addr`` breaks the engine's alignment (MISALIGNED)."""
        if self.act_group == 1:
            return False
        return (act_addr & (self.act_group - 1)) != 0

    def peak_macs(self, cfg, mode):
        """Weight-MACs per cycle at full rate in ``mode``."""
        raise NotImplementedError

    def component(self, cfg, timing, *, tag_bits):
        """The engine's hardware: a component with ``engine_signature``'s members."""
        raise NotImplementedError
