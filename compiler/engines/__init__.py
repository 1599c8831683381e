"""What the compiler knows of each MATMUL engine, one module each, keyed by the ISA's
``Engine`` tag (a test fails when a tag has no entry here): how a weight format becomes the
engine's MATMUL mode, how integer weights are packed into weight-scratchpad entries, and
how random programs draw its operands. Tiling (compiler/lower.py) reads the rest from the
hardware's spec (hw/engines): channels, steps, activation alignment."""

from hw.isa import Engine

from . import bitserial, lut, systolic

__all__ = ["PLUGINS", "plugin"]

#: tag -> the engine's compiler module
PLUGINS = {Engine.SYSTOLIC: systolic, Engine.LUT: lut, Engine.BITSERIAL: bitserial}


def plugin(engine):
    """The compiler module of ``engine`` (a tag)."""
    return PLUGINS[Engine(engine)]
