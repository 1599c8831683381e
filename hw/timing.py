"""Pipelining choices: the registers, slices and skews that only serve timing.

One frozen object of named knobs replaces a "low clock" flag read throughout the units. By
default every knob follows the target clock: on above ``LOW_CLOCK_MHZ`` (each costs flops
and, for some, a cycle of latency), off at or below it, where the paths are short enough
and small FPGAs need the logic. A configuration overrides single knobs in a ``[timing]``
table. No knob changes what a program computes; a few change how many cycles it takes.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

__all__ = ["Pipelining", "LOW_CLOCK_MHZ", "KNOBS"]

#: Target clocks up to this leave every knob off by default.
LOW_CLOCK_MHZ = 40


def _knob(why):
    return field(default=True, metadata={"why": why})


@dataclass(frozen=True)
class Pipelining:
    """Each field is one pipelining choice (True: the register is built); ``KNOBS`` maps
    every name to its reason."""

    check_lookahead: bool = _knob(
        "range checks' sums are registered as an instruction leaves its queue and the "
        "verdict two cycles later: no adder between an instruction and the error logic "
        "(a check waits up to two cycles)")
    fetch_registered: bool = _knob(
        "fetch's program-counter sums and in-range check come from registers")
    bus_slices: bool = _knob(
        "a register slice between each unit and the bus arbiter, and both ways between "
        "the accelerator and a board's memory: the arbitration meets no RAM address pin")
    queue_slices: bool = _knob(
        "the last two entries of each instruction queue and of the load's job queue are a "
        "register slice: no FIFO read logic in front of the units")
    dispatch_stage: bool = _knob(
        "dispatch decodes a registered copy of the fetch buffer's head (128 flip-flops)")
    token_registered: bool = _knob(
        "a dependency token's take is registered: the counters' adders work on flops alone "
        "(a token given back is seen two cycles later)")
    store_read_registered: bool = _knob(
        "the store's words are registered as the block RAMs give them, the bank and buffer "
        "choice after, and its read address is a counting register")
    load_write_staged: bool = _knob(
        "the load writes the scratchpads from a two-entry buffer: no response's ready waits "
        "for the activation port's arbitration")
    end_registered: bool = _knob(
        "a run's end and stuck verdicts are registered before they act (a run ends a cycle "
        "later)")
    events_registered: bool = _knob(
        "counter events are registered before their 64-bit adders")
    address_registers: bool = _knob(
        "the compute unit's scratchpad addresses and read enables are registers kept as its "
        "counts move: no adder or comparator between an instruction and a RAM's pins")
    requant_registered_inputs: bool = _knob(
        "the requant unit's inputs are registered in the fabric before the multipliers' own "
        "registers (a RAM's word reaches no DSP input in the same cycle)")
    requant_late_residual: bool = _knob(
        "with activation banks, the residual is registered as it leaves them and their "
        "multiplexer comes after; the requant unit takes it a cycle later")
    lut_skew: bool = _knob(
        "the LUT array takes a step systolically, one register a hop along rows and channel "
        "groups: no register drives cells further than its neighbours")
    lut_skid: bool = _knob(
        "a skid buffer in front of the LUT table precompute: block-RAM activations meet no "
        "adder in their cycle, and its ready comes from a flop")
    group_scale_copy: bool = _knob(
        "the group-scale drain registers the lane's scale once more, a copy per multiplier "
        "(one register routed to every multiplier was too far)")
    idle_registered: bool = _knob(
        "the engines' idleness is registered before it reaches the token logic")
    hazard_registered: bool = _knob(
        "a REQUANT's hazard comparisons are registered before their OR (it starts a cycle "
        "later)")
    link_registers: bool = _knob(
        "the board's host link registers its CRC, memory words and addresses")
    board_memory_registered: bool = _knob(
        "the board memory's reads are registered twice on their way to the bus")
    reset_domain: bool = _knob(
        "on a board, the accelerator's reset is a flop of the host link driving a clock "
        "domain of its own (over a global network on an ECP5)")

    @classmethod
    def derive(cls, clock_mhz, overrides=()):
        """The knobs for a target of ``clock_mhz``, with ``overrides`` ((name, bool) pairs or
        a dict) on top."""
        on = clock_mhz > LOW_CLOCK_MHZ
        knobs = {name: on for name in KNOBS}
        knobs.update(dict(overrides))
        return cls(**knobs)

    def replace(self, **changes):
        return dataclasses.replace(self, **changes)


#: knob name -> its reason
KNOBS = {f.name: f.metadata["why"] for f in dataclasses.fields(Pipelining)}
