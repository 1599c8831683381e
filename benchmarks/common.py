"""Shared helpers for benchmarks: results directory, tables, JSON."""

import json
import platform
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "results"


def machine():
    import os
    return {"cpu_count": os.cpu_count(), "python": platform.python_version(),
            "machine": platform.machine(), "date": time.strftime("%Y-%m-%d %H:%M:%S")}


def save(name, data):
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps({"machine": machine(), **data}, indent=1))
    return path


def table(headers, rows):
    widths = [max(len(str(h)), *(len(str(r[i])) for r in rows)) for i, h in enumerate(headers)]
    line = "  ".join(str(h).rjust(w) for h, w in zip(headers, widths))
    out = [line, "-" * len(line)]
    out += ["  ".join(str(c).rjust(w) for c, w in zip(r, widths)) for r in rows]
    return "\n".join(out)


def run_checked(fast, gold, kern, x):
    """Run compiled layer ``kern`` on input ``x`` (float ``[M, K]``, quantized here) on the
    fast runner, timed, and on the golden model: ``(stats, wall seconds, bit-exact)``."""
    from compiler.quantize import quantize_act
    kern.write_input(kern.memory, quantize_act(x, kern.x_scale))
    t0 = time.perf_counter()
    out, st = fast.run(kern.program, kern.memory)
    wall = time.perf_counter() - t0
    ref, _ = gold.run(kern.program, kern.memory)
    return st, wall, out.data == ref.data
