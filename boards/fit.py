"""Whether a configuration can fit a board, decided in milliseconds before synthesis runs.

Only lower bounds the design cannot go below, so a refusal is certain, never a guess:

- block RAM: the scratchpads' bits (activations, weights, accumulators, scales); queues,
  FIFOs and counters come on top;
- flip-flops: the systolic array's accumulators, one register per processing element
  (output-stationary); every other unit comes on top.

Anything that passes may still not fit (the logic is only known after synthesis); then
nextpnr's own count ends the build as before.
"""

from __future__ import annotations

__all__ = ["fit_problems", "needs"]


def needs(config) -> dict:
    """Lower bounds on what ``config`` takes: ``{"ram_bits": ..., "flops": ...}``."""
    c = config
    ram = 8 * (c.act_depth * c.act_entry_bytes + c.wgt_depth * c.wgt_entry_bytes
               + c.acc_depth * c.acc_entry_bytes + c.scale_depth * c.scale_entry_bytes)
    flops = c.rows * c.cols * c.systolic_acc_bits if "systolic" in c.engines else 0
    return {"ram_bits": ram, "flops": flops}


def fit_problems(board, config) -> list[str]:
    """Why ``config`` cannot fit ``board``, one phrase per resource (empty: it may fit)."""
    n = needs(config)
    out = []
    if board.ram_bits and n["ram_bits"] > board.ram_bits:
        out.append(f"the scratchpads alone take {n['ram_bits'] / 8192:,.0f} KiB of block RAM "
                   f"and the {board.title} has {board.ram_bits / 8192:,.0f} KiB")
    if board.flops and n["flops"] > board.flops:
        out.append(f"the {config.rows}x{config.cols} array's {config.systolic_acc_bits}-bit "
                   f"accumulators alone take {n['flops']:,} flip-flops and the device has "
                   f"{board.flops:,}")
    return out
