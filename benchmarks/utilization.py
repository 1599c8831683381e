"""Utilisation on real linear-layer shapes (LLaMA-2-7B, SmolLM2-135M), M in {1, 16, 128}.

Each layer is compiled by the real compiler and run on the Verilated accelerator (default
config, its default memory model), checked bit-exact against the golden model. LLaMA-2-7B
layers are simulated over their full K and M and the first 512 output channels (noted per
row).

Steady state: every layer also runs with half its output channels; the difference between
the two runs (MACs, cycles, bytes) is what the repeating part of the schedule does, without
the one-off loading of the activations, pipeline fill and the last drain. At M = 16 a 16x16
array on 16 B/cycle is exactly balanced, so the whole-layer figure is capped below 90% by the
activation bytes alone (roofline, shown per row).

Targets: MACs/cycle >= 90% of peak for M >= 16 in steady state; for M = 1 (decode GEMV,
memory bound), >= 90% of the memory model's bandwidth in steady state.
"""

import sys
import time

import numpy as np

from .common import save, table

SHAPES = {
    "smollm2-135m": [("q/o_proj", 576, 576), ("k/v_proj", 576, 192), ("gate/up_proj", 576, 1536),
                     ("down_proj", 1536, 576)],
    "llama2-7b": [("q/k/v/o_proj", 4096, 4096), ("gate/up_proj", 4096, 11008),
                  ("down_proj", 11008, 4096)],
}
N_SLICE = 512


def run(config="default", ms=(1, 16, 128), quick=False):
    from compiler.lower import lower_linear
    from hw.config import load_config
    from sim.fast import FastRunner
    from sw.golden import Machine
    cfg = load_config(config)
    fast = FastRunner(cfg)
    gold = Machine(cfg)
    rng = np.random.default_rng(0)
    rows = []
    for model, layers in SHAPES.items():
        for name, k, n in layers:
            if quick and model == "llama2-7b":
                continue
            n_sim = min(n, N_SLICE) if model == "llama2-7b" else n
            w = rng.integers(-127, 128, (n_sim, k), dtype=np.int8)
            mult = rng.integers(1 << 13, 1 << 15, n_sim).astype(np.int16)
            n_half = n_sim // 2 // cfg.cols * cfg.cols
            for m in ms:
                x = rng.integers(-127, 128, (m, k), dtype=np.int8)
                runs = []
                for nn in (n_sim, n_half):
                    kern = lower_linear(cfg, name, m, w[:nn], mult[:nn], 20)
                    kern.write_input(kern.memory, x)
                    t0 = time.perf_counter()
                    out, st = fast.run(kern.program, kern.memory)
                    wall = time.perf_counter() - t0
                    ref, _ = gold.run(kern.program, kern.memory)
                    runs.append((st, wall, out.data == ref.data))
                (st, wall, exact), (st_h, _, exact_h) = runs
                cyc, cyc_h = st["cycles"], st_h["cycles"]
                bpc, peak = fast.bytes_per_cycle, cfg.peak_macs_per_cycle
                cap = cyc * bpc
                moved = st["bytes_read"] + st["bytes_written"] + st["fetch_bytes"]
                moved_h = st_h["bytes_read"] + st_h["bytes_written"] + st_h["fetch_bytes"]
                useful = k * n_sim + m * k + m * n_sim         # unpadded weights, X, Y
                macs, dmacs = m * k * n_sim, m * k * (n_sim - n_half)
                rows.append({
                    "model": model, "layer": name, "m": m, "k": k, "n": n, "n_simulated": n_sim,
                    "cycles": cyc, "macs": macs,
                    "mac_util": macs / (cyc * peak),
                    "roofline_util": min(1.0, macs / (useful / bpc * peak)),
                    "bus_util": moved / cap, "useful_bw_util": useful / cap,
                    "steady_mac_util": dmacs / ((cyc - cyc_h) * peak),
                    "steady_bus_util": (moved - moved_h) / ((cyc - cyc_h) * bpc),
                    "bit_exact": exact and exact_h, "sim_cycles_per_s": cyc / wall,
                })
                r = rows[-1]
                print(f"  {model:13s} {name:13s} M={m:<4d} {cyc:>9d} cycles  MACs {r['mac_util']:6.1%}"
                      f" (steady {r['steady_mac_util']:6.1%})  bus {r['bus_util']:6.1%}"
                      f" (steady {r['steady_bus_util']:6.1%})", flush=True)
    result = {"config": cfg.name, "peak_macs_per_cycle": cfg.peak_macs_per_cycle,
              "mem_bytes_per_cycle": fast.bytes_per_cycle, "mem_latency": fast.latency,
              "n_slice_llama": N_SLICE, "rows": rows}
    path = save("utilization", result)
    print(f"\nUtilisation, config {cfg.name!r} ({cfg.rows}x{cfg.cols}, {fast.bytes_per_cycle} B/cycle, "
          f"latency {fast.latency})")
    print(table(["model", "layer", "M", "K", "N(sim)", "cycles", "MAC util", "roofline",
                 "steady MAC", "bus util", "steady bus", "useful B/W", "exact"],
                [[r["model"], r["layer"], r["m"], r["k"], r["n_simulated"], r["cycles"],
                  f"{r['mac_util']:.1%}", f"{r['roofline_util']:.1%}",
                  f"{r['steady_mac_util']:.1%}", f"{r['bus_util']:.1%}",
                  f"{r['steady_bus_util']:.1%}", f"{r['useful_bw_util']:.1%}",
                  r["bit_exact"]] for r in rows]))
    big = [r["steady_mac_util"] for r in rows if r["m"] >= 16]
    whole = [r["mac_util"] for r in rows if r["m"] >= 16]
    gemv = [r["steady_bus_util"] for r in rows if r["m"] == 1]
    print(f"M >= 16: steady-state MAC utilisation min {min(big):.1%} (target >= 90%; whole "
          f"layer min {min(whole):.1%}); M = 1: steady-state bandwidth min {min(gemv):.1%} "
          f"(target >= 90%)  -> {path}")
    return result


if __name__ == "__main__":
    run(*sys.argv[1:2])
