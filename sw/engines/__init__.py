"""Each MATMUL engine's arithmetic in the golden model, one module each, keyed by the ISA's
``Engine`` tag (a test fails when a tag has no entry here)."""

from hw.isa import Engine

from . import bitserial, lut, systolic

__all__ = ["ARITHMETIC", "matmul"]

#: tag -> ``fn(act [k, rows] int8, weight entries, mode) -> int64 [channels, rows]``
ARITHMETIC = {Engine.SYSTOLIC: systolic.matmul, Engine.LUT: lut.matmul,
              Engine.BITSERIAL: bitserial.matmul}


def matmul(engine, act, entries, mode):
    """The exact (unwrapped) product an engine computes from its operands."""
    return ARITHMETIC[Engine(engine)](act, entries, mode)
