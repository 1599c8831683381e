"""Fault models and deterministic fault ids."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, astuple

__all__ = ["MODELS", "Fault", "fault_id", "inject", "parse_model"]

#: flip: one bit inverted at a cycle; mbu: ``nbits`` adjacent bits inverted (multi-bit
#: upset); stuck0 / stuck1: bits held at 0 / 1 for ``duration`` cycles (0: permanently).
#: Memories (scratchpad entries) take the same models as flops.
MODELS = ("flip", "mbu", "stuck0", "stuck1")


@dataclass(frozen=True)
class Fault:
    kernel: int         # which program of the workload
    cycle: int          # injected when the run has reached this cycle (1 = start)
    structure: str
    element: str        # hierarchical state element name
    entry: int          # entry (memories), 0 for flops
    bit: int            # lowest affected bit
    model: str
    nbits: int = 1
    duration: int = 0   # stuck-at only; 0 = permanent

    @property
    def mask(self):
        return ((1 << self.nbits) - 1) << self.bit


def fault_id(seed: int, f: Fault) -> int:
    """A 63-bit id from (seed, the fault's fields): the same fault always has the same id."""
    key = repr((int(seed),) + astuple(f)).encode()
    return int.from_bytes(hashlib.sha256(key).digest()[:8], "little") >> 1


def parse_model(text):
    """``flip``, ``mbu`` / ``mbu:3`` (bits), ``stuck0`` / ``stuck1:100`` (cycles; 0 or none:
    permanent) -> (model, nbits, duration)."""
    name, _, arg = text.partition(":")
    if name not in MODELS:
        raise ValueError(f"unknown fault model {name!r}; choose from {', '.join(MODELS)} "
                         "(mbu:BITS, stuck0:CYCLES, stuck1:CYCLES)")
    try:
        val = int(arg) if arg else None
    except ValueError:
        raise ValueError(f"fault model {text!r}: {arg!r} is not an integer") from None
    if name == "flip":
        if val is not None:
            raise ValueError("fault model 'flip' takes no argument")
        return name, 1, 0
    if name == "mbu":
        n = 2 if val is None else val
        if not 2 <= n <= 8:
            raise ValueError(f"fault model {text!r}: a multi-bit upset has 2 to 8 bits")
        return name, n, 0
    d = 0 if val is None else val
    if d < 0:
        raise ValueError(f"fault model {text!r}: the duration must be >= 0 cycles")
    return name, 1, d


def inject(runner, elem, f: Fault):
    """Apply ``f`` to ``runner`` (a FastRunner) at its current cycle."""
    if f.model in ("flip", "mbu"):
        runner.poke(elem, runner.peek(elem, f.entry) ^ f.mask, f.entry)
    else:
        runner.force(elem, f.mask, f.mask if f.model == "stuck1" else 0, f.entry, f.duration)
