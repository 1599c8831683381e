"""Simulation throughput on one program: fast runner (ctypes, C++ loop) vs the bare C++ loop
over the same Verilated model vs pyverilator (Python per cycle) vs cocotb.

Targets: fast runner >= 0.8x the bare loop and >= 10x cocotb.
"""

import json
import sys
import tempfile
from pathlib import Path

import numpy as np

from .common import ROOT, save, table


def program(cfg, m, k, n):
    from compiler.lower import lower_linear
    rng = np.random.default_rng(0)
    w = rng.integers(-127, 128, (n, k), dtype=np.int8)
    kern = lower_linear(cfg, "bench", m, w, rng.integers(1 << 13, 1 << 15, n).astype(np.int16), 18)
    kern.write_input(kern.memory, rng.integers(-127, 128, (m, k), dtype=np.int8))
    return kern.program, kern.memory


def run(config="default", shape=(16, 576, 576)):
    from hw.config import load_config
    from sim.fast import FastRunner
    from sim.interactive import InteractiveRunner
    from sw.golden import Machine
    cfg = load_config(config)
    prog, mem = program(cfg, *shape)
    gold, _ = Machine(cfg).run(prog, mem)
    rows = {}

    fast = FastRunner(cfg)
    best = None
    for _ in range(3):
        out, st = fast.run(prog, mem)
        assert out.data == gold.data and st["error"] is None
        best = max(best or 0, st["sim_cycles_per_s"])
    rows["fast runner (ctypes)"] = {"cycles": st["sim_cycles"], "cycles_per_s": best}

    bare = max((fast.run_bare(prog, mem) for _ in range(3)), key=lambda r: -r["seconds"])
    rows["bare C++ loop"] = {"cycles": bare["cycles"], "cycles_per_s": bare["cycles"] / bare["seconds"]}

    inter = InteractiveRunner(cfg)
    out, st = inter.run(prog, mem)
    assert out.data == gold.data
    rows["pyverilator per-cycle"] = {"cycles": st["sim_cycles"], "cycles_per_s": st["sim_cycles_per_s"]}

    rows["cocotb"] = _cocotb(cfg, prog, mem)
    fr = rows["fast runner (ctypes)"]["cycles_per_s"]
    result = {
        "config": cfg.name, "shape_mkn": list(shape), "executors": rows,
        "fast_vs_bare": fr / rows["bare C++ loop"]["cycles_per_s"],
        "fast_vs_cocotb": fr / rows["cocotb"]["cycles_per_s"],
        "targets": {"fast_vs_bare": 0.8, "fast_vs_cocotb": 10},
    }
    path = save("sim_throughput", result)
    print(f"\nSimulation throughput, config {cfg.name!r}, linear {shape[0]}x{shape[1]}x{shape[2]} "
          f"({rows['fast runner (ctypes)']['cycles']} cycles)")
    print(table(["executor", "cycles/s", "vs fast runner"],
                [[k, f"{v['cycles_per_s']:,.0f}", f"{v['cycles_per_s'] / fr:.3f}x"]
                 for k, v in rows.items()]))
    print(f"fast / bare = {result['fast_vs_bare']:.2f} (target >= 0.8); "
          f"fast / cocotb = {result['fast_vs_cocotb']:.0f}x (target >= 10x)  -> {path}")
    return result


def _cocotb(cfg, prog, mem):
    import hw
    from sim.cocotb_run import run_testbench
    from sw.executor import program_image
    image, prog_addr = program_image(cfg, prog, mem)
    with tempfile.TemporaryDirectory() as d:
        img = Path(d) / "image.npy"
        np.save(img, image)
        out = Path(d) / "out.json"
        params = {"bus_bytes": cfg.bus_bytes, "latency": cfg.mem_latency, "image": str(img),
                  "prog_addr": prog_addr, "out": str(out)}
        tests, fails, log = run_testbench(hw.verilog(cfg), "llmaccel_top", "tb_bench",
                                          ROOT / "benchmarks" / "cocotb", params=params,
                                          quiet=False)
        if fails or not out.exists():
            raise RuntimeError("cocotb bench failed:\n" + log[-3000:])
        r = json.loads(out.read_text())
    return {"cycles": r["cycles"], "cycles_per_s": r["cycles"] / r["seconds"]}


if __name__ == "__main__":
    run(*sys.argv[1:2])
