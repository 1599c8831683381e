"""Simulation throughput on one program: fast runner (ctypes, C++ loop) vs the bare C++ loop
over the same Verilated model vs pyverilator (Python per cycle) vs cocotb; and the fast
runner with its visibility on: the timeline, and waveforms (VCD, FST) of a 10k-cycle window.

Targets: fast runner >= 0.8x the bare loop and >= 10x cocotb; the timeline costs at most 10%.
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
    visibility = _visibility(cfg, prog, mem, gold)
    fr = rows["fast runner (ctypes)"]["cycles_per_s"]
    result = {
        "config": cfg.name, "shape_mkn": list(shape), "executors": rows,
        "fast_vs_bare": fr / rows["bare C++ loop"]["cycles_per_s"],
        "fast_vs_cocotb": fr / rows["cocotb"]["cycles_per_s"],
        "targets": {"fast_vs_bare": 0.8, "fast_vs_cocotb": 10, "timeline_vs_off": 0.9},
        "visibility": visibility,
    }
    path = save("sim_throughput", result)
    print(f"\nSimulation throughput, config {cfg.name!r}, linear {shape[0]}x{shape[1]}x{shape[2]} "
          f"({rows['fast runner (ctypes)']['cycles']} cycles)")
    print(table(["executor", "cycles/s", "vs fast runner"],
                [[k, f"{v['cycles_per_s']:,.0f}", f"{v['cycles_per_s'] / fr:.3f}x"]
                 for k, v in rows.items()]))
    print(f"fast / bare = {result['fast_vs_bare']:.2f} (target >= 0.8); "
          f"fast / cocotb = {result['fast_vs_cocotb']:.0f}x (target >= 10x)")
    _print_visibility(visibility)
    print(f"-> {path}")
    return result


def _visibility(cfg, prog, mem, gold, repeats=21, wave_repeats=5):
    """Wall time of one run with waves off, the timeline on, and waves on (VCD, FST) over a
    10k-cycle window. Each comparison is interleaved against its own waves-off runs (A B A B
    ...): the timeline in ``repeats`` pairs, the waveforms (whose hundreds of MB written
    disturb whatever runs next) in ``wave_repeats`` rounds of their own."""
    import statistics
    import time
    from sim.fast import FastRunner
    tmp = Path(tempfile.mkdtemp())
    off = FastRunner(cfg, quiet=True)
    cycles = off.run(prog, mem)[1]["sim_cycles"]
    start = max(0, cycles // 2 - 5000)
    window = (start, start + 10_000)
    groups = [
        ({"timeline on": FastRunner(cfg, quiet=True, timeline=True)}, repeats),
        ({"waves on (VCD, 10k cycles)": FastRunner(cfg, quiet=True, waves=tmp / "w.vcd",
                                                    window=window),
          "waves on (FST, 10k cycles)": FastRunner(cfg, quiet=True, waves=tmp / "w.fst",
                                                    window=window)}, wave_repeats),
    ]
    modes = {}
    for runners, n in groups:
        runners = {"waves off": off, **runners}
        times = {k: [] for k in runners}
        for _ in range(n):
            for k, r in runners.items():
                t0 = time.perf_counter()
                out, st = r.run(prog, mem)
                times[k].append(time.perf_counter() - t0)
                assert out.data == gold.data and st["error"] is None, k
        base = statistics.median(times["waves off"])
        for k, ts in times.items():
            med = statistics.median(ts)
            row = {"median_s": med, "min_s": min(ts), "max_s": max(ts), "runs": n,
                   "cycles_per_s": cycles / med, "vs_off": base / med}
            if runners[k].waves:
                row["file_bytes"] = runners[k].waves.stat().st_size
            modes[k if k != "waves off" or "waves off" not in modes else "waves off "] = row
    return {"cycles": cycles, "window": list(window), "repeats": repeats, "modes": modes}


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


def run_visibility(config="default", shape=(16, 576, 576)):
    """Only the visibility modes (no pyverilator or cocotb builds)."""
    from hw.config import load_config
    from sw.golden import Machine
    cfg = load_config(config)
    prog, mem = program(cfg, *shape)
    gold, _ = Machine(cfg).run(prog, mem)
    v = _visibility(cfg, prog, mem, gold)
    path = save("sim_visibility", {"config": cfg.name, "shape_mkn": list(shape), **v})
    _print_visibility(v)
    print(f"-> {path}")
    return v


def _print_visibility(v):
    print(f"\nThe fast runner with visibility on: median wall time of a run, each mode "
          f"interleaved with its own waves-off runs; the waveform window is cycles "
          f"{v['window'][0]}-{v['window'][1] - 1} of {v['cycles']}")
    print(table(["mode", "runs", "median s", "min-max s", "cycles/s", "vs off", "file bytes"],
                [[k, r["runs"], f"{r['median_s']:.4f}", f"{r['min_s']:.4f}-{r['max_s']:.4f}",
                  f"{r['cycles_per_s']:,.0f}", f"{r['vs_off']:.3f}x", r.get("file_bytes", "")]
                 for k, r in v["modes"].items()]))
    print(f"timeline / off = {v['modes']['timeline on']['vs_off']:.3f} (target >= 0.9)")


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    (run_visibility if "--visibility-only" in sys.argv else run)(*args[:1])
