"""Fault-injection rate: the fast injector (snapshots, early exit, C++ cycle loop) running a
full campaign on 2 cores vs a cocotb injector (reset and rerun per fault, flip through the
simulator handle) on the same workload and faults.

Target: a 1%-margin, 99%-confidence campaign (~16.6k injections) on the demo workload in
<= 10 minutes on 2 cores, and >= 100x the cocotb injector's rate.
"""

import json
import re
import sys
import tempfile
from pathlib import Path

import numpy as np

from .common import ROOT, save, table


def run(config="tiny", n_cocotb=12):
    from sim.faults.campaign import CampaignSpec, run_campaign
    spec = CampaignSpec(config=config, workload="demo", margin=0.01, confidence=0.99)
    with tempfile.TemporaryDirectory() as d:
        db = Path(d) / "bench.db"
        s = run_campaign(spec, db, workers=2, log=lambda m: print(m, file=sys.stderr))
        from sim.faults.db import CampaignDB
        cdb = CampaignDB(db)
        rows = cdb.joined()
        cdb.close()
    fast = s["this_run"]
    walls = [r["wall_ms"] for r in rows]
    per_core = 1e3 / np.mean(walls)

    # the same faults (flip-flop flips, spread over the kernels) on the cocotb injector
    # (one injector gives the flops' names, the kernels and their golden results)
    from sim.faults.campaign import _make_injector
    inj = _make_injector(spec)
    rng = np.random.default_rng(0)
    plain = {n for n, e in inj.elements.items()
             if e.depth == 1 and re.fullmatch(r"[A-Za-z]\w*(\.[A-Za-z]\w*)*", n)}
    flops = [r for r in rows if r["model"] == "flip" and r["element"] in plain]
    pick = [flops[i] for i in rng.choice(len(flops), n_cocotb, replace=False)]
    coco = _cocotb(inj, pick)
    agree = sum(a == r["outcome"] for a, r in zip(coco["outcomes"], pick))
    coco_rate = len(pick) / coco["seconds"]
    result = {
        "config": config, "workload": "demo", "injections": fast["injections"],
        "campaign_wall_s": fast["wall_s"], "campaign_per_s": fast["per_s"],
        "fast_per_core_per_s": per_core,
        "cocotb_injections": len(pick), "cocotb_per_s": coco_rate,
        "outcome_agreement": f"{agree}/{len(pick)}",
        "speedup_campaign_vs_cocotb": fast["per_s"] / coco_rate,
        "speedup_per_core": per_core / coco_rate,
        "overall_sdc": s["overall"]["sdc"], "spfm": s["safety"]["spfm"],
        "targets": {"campaign_wall_s": 600, "speedup": 100},
    }
    path = save("fault_rate", result)
    print(f"\nFault-injection rate, workload demo on config {config!r} "
          f"({s['info']['total_cycles']} cycles over {len(s['info']['kernels'])} kernels)")
    print(table(["injector", "injections", "wall s", "injections/s", "vs cocotb"], [
        ["fast, campaign on 2 workers", fast["injections"], f"{fast['wall_s']:.1f}",
         f"{fast['per_s']:.1f}", f"{result['speedup_campaign_vs_cocotb']:.0f}x"],
        ["fast, per core (per-fault time)", "", "", f"{per_core:.1f}",
         f"{result['speedup_per_core']:.0f}x"],
        ["cocotb (1 process)", len(pick), f"{coco['seconds']:.1f}", f"{coco_rate:.2f}", "1x"],
    ]))
    print(f"campaign: {fast['injections']} injections in {fast['wall_s']:.0f}s (target <= 600 s); "
          f"outcomes agree with cocotb on {agree}/{len(pick)} faults  -> {path}")
    return result


def _cocotb(inj, faults):
    import hw
    from sim.cocotb_run import run_testbench
    from sw.executor import program_image
    cfg = inj.config
    with tempfile.TemporaryDirectory() as d:
        kernels = []
        for i, (k, g) in enumerate(zip(inj.workload.kernels, inj.golden)):
            image, prog_addr = program_image(cfg, k.program, k.memory)
            np.save(Path(d) / f"k{i}.npy", image)
            np.save(Path(d) / f"g{i}.npy", np.frombuffer(g.final_mem, np.uint8))
            kernels.append({"image": str(Path(d) / f"k{i}.npy"),
                            "golden": str(Path(d) / f"g{i}.npy"),
                            "prog_addr": prog_addr, "cycles": g.cycles})
        out = Path(d) / "out.json"
        params = {"bus_bytes": cfg.bus_bytes, "latency": cfg.mem_latency,
                  "dram_bytes": cfg.dram_bytes, "kernels": kernels, "out": str(out),
                  "faults": [{"kernel": f["kernel"], "cycle": f["cycle"], "bit": f["bit"],
                              "element": f["element"]} for f in faults]}
        tests, fails, log = run_testbench(hw.verilog(cfg), "llmaccel_top", "tb_inject",
                                          ROOT / "benchmarks" / "cocotb", params=params,
                                          quiet=False)
        if fails or not out.exists():
            raise RuntimeError("cocotb injector failed:\n" + log[-3000:])
        return json.loads(out.read_text())


if __name__ == "__main__":
    run(*sys.argv[1:2])
