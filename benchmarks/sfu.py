"""The special-function unit: each op's error against float (from the golden model, which the
RTL equals bit for bit) and its cycles on the fast runner for LLM-sized rows.

    python -m benchmarks.sfu [--config default]
"""

import argparse

from compiler.schedule import Scheduler
from compiler.sfu_accuracy import measure
from hw.config import load_config
from hw.isa import Buffer, Opcode, SfuFunc
from sw.program import MemoryImage
from .common import save, table

#: op -> (entries, the instruction's extra fields): SmolLM2-135M's hidden (576) and MLP
#: (1536) widths, a 64-wide head and 512 keys
SIZES = {
    SfuFunc.RMSNORM: (576, {}), SfuFunc.LAYERNORM: (576, {}),
    SfuFunc.SOFTMAX: (512, dict(imm0=92, shift=10, causal=1, imm1=511)),
    SfuFunc.LOOKUP: (1536, {}), SfuFunc.MUL: (1536, dict(imm0=1 << 14, shift=20)),
    SfuFunc.ADD: (576, dict(imm0=1 << 14, imm1=1 << 14, shift=15)),
    SfuFunc.ROPE: (64, dict(shift=7)), SfuFunc.TRANSPOSE: (64, {}),
    SfuFunc.MERGE: (576, dict(imm1=1)), SfuFunc.TABLE: (None, {}),
}


def cycles(cfg, runner):
    """Per op: (entries, SFU busy cycles, cycles per entry) of one instruction."""
    out = {}
    for f, (n, extra) in SIZES.items():
        n = n or 256 // cfg.rows
        s = Scheduler(cfg)
        s.emit(Opcode.SFU, func=f, src=0, src2=n, dst=2 * n if f != SfuFunc.TABLE else 0,
               count=n, reads=[(Buffer.ACT, 0, n)], **extra)
        mem = MemoryImage(bytearray(64))
        _, st = runner.run(s.program(), mem)
        assert st["error"] is None, (f, st["error"])
        out[f.name.lower()] = dict(entries=n, cycles=st["sfu_busy"],
                                   per_entry=round(st["sfu_busy"] / n, 2))
    return out


def run(config="default"):
    from sim.fast import FastRunner
    cfg = load_config(config)
    acc = measure()
    cyc = cycles(cfg, FastRunner(cfg, quiet=True))
    print(f"SFU on {cfg.name} ({cfg.rows} lanes); error vs float in output steps "
          f"(0.5 = the int8 output's own rounding)")
    rows = []
    for op in acc:
        c = cyc.get(op, cyc.get("lookup") if op in ("silu", "gelu", "relu2") else None)
        rows.append([op, f"{acc[op]['max_lsb']:.3f}", f"{acc[op]['mean_lsb']:.3f}",
                     c["entries"] if c else "", c["cycles"] if c else "",
                     c["per_entry"] if c else "", acc[op]["inputs"]])
    for op in ("merge", "transpose", "table"):
        c = cyc[op]
        rows.append([op, "exact", "exact", c["entries"], c["cycles"], c["per_entry"], ""])
    print(table(["op", "max err", "mean err", "entries", "cycles", "cyc/entry", "inputs"],
                rows))
    path = save("sfu", {"config": cfg.name, "error": acc, "cycles": cyc})
    print(f"-> {path}")
    return acc, cyc


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="default")
    run(ap.parse_args().config)
