"""LUT engine vs systolic array: cycles for decode GEMV (M = 1) and prefill GEMM (M = 128)
on LLaMA-2-7B and BitNet b1.58 2B4T linear-layer shapes, and utilisation of each engine's
peak.

Each layer is quantized and compiled by the real compiler for the ``lut`` preset (16x16
int8 systolic array + 16x32x4 LUT engine, 16 B/cycle memory) and run on the Verilated
accelerator, checked bit-exact against the golden model. Systolic: int8 weights per channel.
LUT: LLaMA-2-7B at W2 and W4 in groups of 128 (group scales in the accumulator drain);
BitNet at ternary with its per-tensor scale (2 bit planes). As in the utilisation benchmark
the first 512 output channels are simulated (the schedule repeats per output tile).
"""

import sys

import numpy as np

from .common import run_checked, save, table

# Layers with the same K behave the same on the first N_SLICE channels: one row each.
SHAPES = {
    "llama2-7b": [("q/k/v/o,gate/up", 4096, 4096), ("down_proj", 11008, 4096)],
    "bitnet-2b4t": [("q/k/v/o,gate/up", 2560, 2560), ("down_proj", 6912, 2560)],
}
FORMATS = {"llama2-7b": [("int8", None), ("w2", 128), ("w4", 128)],
           "bitnet-2b4t": [("int8", None), ("ternary", None)]}
N_SLICE = 512


def run(config="lut", ms=(1, 128)):
    from compiler.frontend import lower_layer
    from hw.config import load_config
    from sim.fast import FastRunner
    from sw.golden import Machine
    cfg = load_config(config)
    fast, gold = FastRunner(cfg), Machine(cfg)
    rng = np.random.default_rng(0)
    rows = []
    for model, layers in SHAPES.items():
        for name, k, n in layers:
            n_sim = min(n, N_SLICE)
            w = rng.normal(size=(n_sim, k)) / np.sqrt(k)
            for m in ms:
                x = rng.normal(size=(m, k))
                for fmt, group in FORMATS[model]:
                    kern = lower_layer(cfg, name, m, w, np.abs(x).max(), 4.0, fmt, group=group)
                    st, wall, exact = run_checked(fast, gold, kern, x)
                    cyc = st["cycles"]
                    macs = m * k * n_sim
                    rows.append({
                        "model": model, "layer": name, "m": m, "k": k, "n": n,
                        "n_simulated": n_sim, "weights": fmt, "group": group,
                        "engine": kern.engine.name.lower(), "cycles": cyc, "macs": macs,
                        "peak": kern.peak, "util": macs / (cyc * kern.peak),
                        "macs_per_cycle": macs / cyc, "bytes_read": st["bytes_read"],
                        "bus_util": (st["bytes_read"] + st["bytes_written"] + st["fetch_bytes"])
                        / (cyc * fast.bytes_per_cycle),
                        "bit_exact": exact, "sim_cycles_per_s": cyc / wall,
                    })
                    r = rows[-1]
                    print(f"  {model:11s} {name:13s} M={m:<4d} {fmt:8s} {cyc:>9d} cycles "
                          f"{r['macs_per_cycle']:7.1f} MAC/c  util {r['util']:6.1%}  "
                          f"bus {r['bus_util']:6.1%}  "
                          f"exact {r['bit_exact']}", flush=True)
    # speed-up of each LUT format over the systolic run of the same layer and M
    base = {(r["model"], r["layer"], r["m"]): r["cycles"] for r in rows
            if r["engine"] == "systolic"}
    for r in rows:
        r["speedup_vs_systolic"] = base[(r["model"], r["layer"], r["m"])] / r["cycles"]
    path = save("lut_cycles", {"config": cfg.name, "n_slice": N_SLICE, "rows": rows})
    print(f"\nLUT vs systolic, config {cfg.name!r} ({fast.bytes_per_cycle} B/cycle memory), "
          f"first {N_SLICE} output channels")
    print(table(["model", "layer", "M", "weights", "engine", "cycles", "MAC/cycle", "peak",
                 "util", "bus", "vs int8", "exact"],
                [[r["model"], r["layer"], r["m"], r["weights"], r["engine"], r["cycles"],
                  f"{r['macs_per_cycle']:.1f}", f"{r['peak']:.0f}", f"{r['util']:.1%}",
                  f"{r['bus_util']:.1%}", f"{r['speedup_vs_systolic']:.2f}x", r["bit_exact"]]
                 for r in rows]))
    print("util: weight-MACs per cycle over the engine's peak at that width (M = 1 is memory "
          "bound: see bus, the share of memory cycles moving data)")
    print(f"-> {path}")
    return rows


if __name__ == "__main__":
    run(*sys.argv[1:2])
