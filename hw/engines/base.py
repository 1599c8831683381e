"""The spec every MATMUL engine fills in (hw/engines/__init__.py registers them)."""

from __future__ import annotations

from amaranth import Value, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ..isa import Counter, Engine, MatmulMode
from ..systolic import column_layout

__all__ = ["EngineSpec", "is_value", "feed_layout", "inflight_layout", "engine_signature"]


def is_value(*xs):
    """Whether any of ``xs`` is an Amaranth value (a rule is being built as hardware)."""
    return any(isinstance(x, Value) or hasattr(x, "as_value") for x in xs)


def feed_layout(*, rows, cols, tag_bits, plane_bits):
    """One step the compute unit feeds an engine: the operands it read and where the step
    stands in its MATMUL. An engine takes the fields it needs."""
    return data.StructLayout({
        "act": data.ArrayLayout(signed(8), rows),         # the activation entry read
        # the four entries 4a .. 4a + 3 from the four activation banks (act_group 4)
        "act4": data.ArrayLayout(data.ArrayLayout(signed(8), rows), 4),
        "wgt": 8 * cols,                                  # the weight entry read
        "plane": plane_bits,    # steps since the activation read (0 .. planes - 1)
        "new": 1,               # plane 0: the activations were read for this step
        "first": 1, "last": 1,  # first / last step of the MATMUL
        "steps": 16,            # the MATMUL's steps (EngineSpec.steps; read on ``first``)
        "mode": MatmulMode,     # the MATMUL's mode
        "tag": tag_bits,        # carried to the drained columns
    })


def inflight_layout(tag_bits):
    """A MATMUL the engine holds whose columns are not yet drained (for the REQUANT
    hazard: the accumulators from the tag's address on, ``channels`` of them)."""
    return data.StructLayout({"valid": 1, "tag": tag_bits})


def engine_signature(*, rows, cols, tag_bits, plane_bits, inflight):
    """What every engine component offers the compute unit (the engine's side).

    Members
    -------
    i : In(stream)
        Steps (``feed_layout``).
    o : Out(stream, always ready)
        Drained columns (``hw.systolic.column_layout``): one output channel of ``rows``
        int32 results with its column index and the MATMUL's tag; zero-payload when idle
        is not required (the compute unit takes a column by its valid).
    idle : Out(1)
        Nothing in the engine: no step, no result still to drain.
    inflight : Out(array of ``inflight_layout``)
        Each place a MATMUL may wait in before its columns are written.
    step : Out(1)
        A step entered the engine's datapath this cycle (its busy counter).
    credit : Out(1)
        The engine did ``EngineSpec.macs_per_credit`` weight-MACs' work this cycle
        (the MACS counter).
    fault : Out(1)
        A protection check failed (error RESIDUE).
    """
    return wiring.Signature({
        "i": In(stream.Signature(feed_layout(rows=rows, cols=cols, tag_bits=tag_bits,
                                             plane_bits=plane_bits))),
        "o": Out(stream.Signature(column_layout(rows, tag_bits), always_ready=True)),
        "idle": Out(1),
        "inflight": Out(data.ArrayLayout(inflight_layout(tag_bits), inflight)),
        "step": Out(1),
        "credit": Out(1),
        "fault": Out(1),
    })


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
    busy_counter : Counter
        The counter of cycles a step enters the engine.
    act_held : bool
        The engine keeps using an activation read over several steps (its planes), so a
        shared activation port must not serve another reader meanwhile.
    """

    tag: Engine
    busy_counter: Counter
    act_group = 1
    act_held = False

    @property
    def name(self):
        return self.tag.name.lower()

    def channels(self, cfg):
        """Output channels (accumulator entries) one MATMUL writes."""
        raise NotImplementedError

    def steps(self, cfg, k, mode):
        """Engine steps of a MATMUL of ``k`` features: also the weight entries it reads."""
        raise NotImplementedError

    def head(self, mode):
        """Whether the MATMUL's first step is a header: a weight entry read with no
        activations (the bit-serial engine's FPX selectors), before the steps that read
        them."""
        return False

    def planes(self, mode):
        """Steps per activation read (a read serves this many consecutive steps)."""
        return 1

    def max_planes(self, cfg):
        """The most steps one activation read serves in this configuration."""
        return 1

    def macs_per_credit(self, cfg):
        """Weight-MACs one ``credit`` of the engine's component counts."""
        raise NotImplementedError

    def illegal(self, cfg, k, mode):
        """Whether ``k`` and ``mode`` are refused (ILLEGAL_FIELD) beyond the generic rules
        (engine built, ``k`` > 0, no mode bit beyond the engine's)."""
        return False

    def misaligned(self, act_addr):
        """Whether ``act_addr`` breaks the engine's alignment (MISALIGNED)."""
        if self.act_group == 1:
            return False
        return (act_addr & (self.act_group - 1)) != 0

    def late_column(self, cfg):
        """Whether a drained column's data comes the cycle after its valid (the accumulator
        writer then registers its address first and needs no copy of the data)."""
        return False

    def peak_macs(self, cfg, mode):
        """Weight-MACs per cycle at full rate in ``mode``."""
        raise NotImplementedError

    def component(self, cfg, *, tag_bits, plane_bits):
        """The engine's hardware: a component with ``engine_signature``'s members."""
        raise NotImplementedError
