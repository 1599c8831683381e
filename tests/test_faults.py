"""Fault-injection campaigns: statistics against exhaustive truth, injections that really
change what they should, kill-and-resume, protections, Ray, reports and CLI errors."""

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time

import numpy as np
import pytest

from sim.faults.campaign import CampaignSpec, run_campaign, plan_faults
from sim.faults.db import CampaignDB
from sim.faults.models import Fault, fault_id, parse_model
from sim.faults.stats import sample_size, wilson, allocate, stratified, safety_metrics

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_sample_size_matches_leveugle():
    assert sample_size(10 ** 12, 0.01, 0.99) == 16588
    assert sample_size(10 ** 12, 0.01, 0.95) == 9604
    assert sample_size(10 ** 12, 0.05, 0.95) == 385
    assert sample_size(100, 0.05, 0.95) == 80          # finite population correction
    assert sample_size(10, 0.01, 0.99) == 10


def test_wilson_and_stratified():
    lo, hi = wilson(0, 1000, 0.95)
    assert lo == 0 and 0.003 < hi < 0.004               # ~3/n with no events
    lo, hi = wilson(50, 100, 0.95)
    assert lo < 0.5 < hi and abs((lo + hi) / 2 - 0.5) < 1e-9
    # proportional allocation keeps a minimum per stratum
    assert allocate({"a": 9000, "b": 1000, "c": 1}, 100, minimum=5) == {"a": 90, "b": 10, "c": 1}
    p, lo, hi = stratified({"a": (900, 9, 90), "b": (100, 5, 10)}, 0.95)
    assert abs(p - (0.9 * 0.1 + 0.1 * 0.5)) < 1e-12 and lo < p < hi
    m = safety_metrics([{"bits": 100, "sdc": (0.01, 0, 0.02), "latent": (0.0, 0, 0)}], 1.0)
    assert abs(m["spfm"] - 0.99) < 1e-12 and m["asil"] == "D"


def test_fault_ids_are_deterministic():
    f = Fault(0, 10, "array", "compute.systolic.array.pe0_0_acc", 0, 3, "flip")
    assert fault_id(1, f) == fault_id(1, Fault(0, 10, "array", "compute.systolic.array.pe0_0_acc", 0, 3,
                                                "flip"))
    assert fault_id(1, f) != fault_id(2, f) and 0 <= fault_id(1, f) < 2 ** 63
    assert parse_model("mbu:3") == ("mbu", 3, 0) and parse_model("stuck1:50") == ("stuck1", 1, 50)
    with pytest.raises(ValueError, match="unknown fault model 'zap'"):
        parse_model("zap")


def _fresh(path):
    for p in (path, f"{path}-wal", f"{path}-shm"):
        if os.path.exists(p):
            os.remove(p)
    return str(path)


@pytest.mark.slow
def test_exhaustive_rate_lies_in_sampled_interval(tmp_path):
    """Every accumulator bit x every cycle of a small MATMUL, against a 5%/95% sample."""
    ex = CampaignSpec(config="tiny", workload="matmul", exhaustive=True,
                      structures=("accumulators",), confidence=0.95)
    s_ex = run_campaign(ex, _fresh(tmp_path / "ex.db"), workers=1, quiet=True)
    e = s_ex["structures"]["accumulators"]
    assert s_ex["planned"] == s_ex["done"] == e["bits"] * s_ex["info"]["total_cycles"]
    truth_sdc, truth_masked = e["sdc"] / e["n"], e["masked"] / e["n"]
    assert 0.01 < truth_sdc < 0.5
    for seed in (0, 1):
        sp = CampaignSpec(config="tiny", workload="matmul", margin=0.05, confidence=0.95,
                          structures=("accumulators",), seed=seed)
        s = run_campaign(sp, _fresh(tmp_path / f"s{seed}.db"), workers=1, quiet=True)
        e = s["structures"]["accumulators"]
        assert e["n"] == sample_size(e["population"], 0.05, 0.95)
        _, lo, hi = e["avf_sdc"]
        assert lo <= truth_sdc <= hi, f"seed={seed}: exhaustive {truth_sdc} not in [{lo}, {hi}]"
        _, lo, hi = e["p_masked"]
        assert lo <= truth_masked <= hi, f"seed={seed}"


@pytest.fixture(scope="module")
def injector(tiny):
    from sim.faults.injector import Injector
    from sim.faults.workload import make_workload
    return Injector(tiny, make_workload("matmul", tiny))


def _fault(inj, element, cycle, bit=0, model="flip", entry=0, duration=0):
    s = next(s for s in inj.sites.values() if any(e.name == element for e in s.elements))
    return Fault(0, cycle, s.name, element, entry, bit, model, 1, duration)


def test_flip_in_live_accumulator_is_sdc(injector):
    g = injector.golden[0]
    acc = injector.elements["compute.systolic.array.pe0_0_acc"]
    # find a cycle where the accumulator is live (non-zero and the MATMUL still running)
    rtl = injector.rtl
    rtl.restore(g.snaps[0][1])
    live = None
    while rtl.cycle < g.end_cycle:
        rtl.step(1)
        if rtl.peek(acc) != 0:
            live = rtl.cycle + 1
            break
    assert live is not None
    r = injector.run_fault(_fault(injector, acc.name, live, bit=20))
    assert r["outcome"] == "sdc" and r["out_bytes"] >= 1


def test_flip_in_dead_register_is_masked(injector):
    g = injector.golden[0]
    # the array's input register is rewritten every cycle: a flip before the MATMUL starts
    # is gone the next cycle and the state converges back to the golden run
    r = injector.run_fault(_fault(injector, "compute.systolic.array.in_a0", g.start_cycle + 1, bit=3))
    assert r["outcome"] == "masked" and r["converged"] is not None and not r["latent"]
    # a performance counter is never an output
    r = injector.run_fault(_fault(injector, "cnt_macs", g.start_cycle + 5, bit=40))
    assert r["outcome"] == "masked"
    # an accumulator-scratchpad entry the program never touches: masked but latent
    r = injector.run_fault(_fault(injector, "acc_mem", g.start_cycle + 5, bit=7, entry=60))
    assert r["outcome"] == "masked" and r["latent"] == 1


def test_memory_trace_shortcut_agrees_with_simulation(injector):
    """A memory flip decided from the golden run's port trace (overwritten first: masked;
    never touched again: masked, latent) gets exactly what simulating it gives."""
    import numpy as np
    seed = 11
    rng = np.random.default_rng(seed)
    g = injector.golden[0]
    mems = [e for e in injector.elements.values() if e.var_index in injector.traced]
    assert {"act_sp", "wgt_sp", "acc_sp", "insn_queues"} <= \
        {s.name for s in injector.sites.values() for e in s.elements if e in mems}
    kinds = {"w": 0, "none": 0, "run": 0}
    for _ in range(400):
        e = mems[rng.integers(len(mems))]
        model = "mbu" if rng.random() < 0.2 else "flip"
        nb = 2 if model == "mbu" else 1
        cycle, entry = int(rng.integers(g.start_cycle, g.end_cycle)), int(rng.integers(e.depth))
        keys = g.accesses[e.var_index]
        if len(keys) and rng.random() < 0.5:     # shortly before an access the trace holds
            k = int(keys[rng.integers(len(keys))])
            entry = k >> 42
            cycle = max(g.start_cycle, ((k >> 2) & ((1 << 40) - 1)) - int(rng.integers(30)))
        f = Fault(0, cycle, "", e.name, entry, int(rng.integers(e.width - nb + 1)), model, nb)
        nxt = injector._next_access(g, e, f)
        kinds["run" if nxt is None else nxt[0]] += 1
        fast = injector.run_fault(f)
        injector.use_trace = False
        try:
            full = injector.run_fault(f)
        finally:
            injector.use_trace = True
        keys = ("outcome", "error", "latent", "out_bytes")
        assert [fast[k] for k in keys] == [full[k] for k in keys], f"seed={seed} {f}"
    assert min(kinds.values()) >= 10, kinds


# (the executing slot's opcode bits are decoded into flags as it loads: its live header
# bits are the token masks, 4..9)
@pytest.mark.parametrize("element,bits", [("compute.insn", range(4, 8)),
                                          ("fetch.pc", range(4, 8)),
                                          (r"q_compute\.(.*\.)?storage", range(0, 4))])
def test_stuck_at_in_instruction_path_never_hangs_silently(injector, element, bits):
    g = injector.golden[0]
    name = next((n for n in injector.elements if re.match(element, n)), None)
    assert name is not None, f"no state element {element}*"
    outcomes = []
    for b in bits:
        for model in ("stuck0", "stuck1"):
            t0 = time.perf_counter()
            r = injector.run_fault(_fault(injector, name, g.start_cycle + 2, bit=b,
                                          model=model))
            assert time.perf_counter() - t0 < 30
            outcomes.append(r["outcome"])
            if r["outcome"] == "due" and r["error"] == "WATCHDOG":
                assert r["end_cycle"] >= g.end_cycle      # the watchdog, not a silent stop
    assert set(outcomes) <= {"masked", "sdc", "due"}
    assert {"sdc", "due"} & set(outcomes), f"{element}: {outcomes}"


def _cli(*args, **kw):
    return subprocess.run([sys.executable, "-m", "llmaccel", *args], cwd=ROOT,
                          capture_output=True, text=True, **kw)


@pytest.mark.slow
def test_kill_and_resume(tmp_path):
    db = _fresh(tmp_path / "kill.db")
    cmd = [sys.executable, "-m", "llmaccel", "faults", "run", "--config", "tiny", "--workload",
           "demo", "--margin", "0.05", "--confidence", "0.95", "--db", db, "--workers", "2"]
    p = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                         start_new_session=True)
    deadline = time.time() + 300
    done = planned = 0
    try:
        while time.time() < deadline and p.poll() is None:
            time.sleep(0.2)
            try:
                con = sqlite3.connect(db, timeout=5)
                planned = con.execute("SELECT COUNT(*) FROM faults").fetchone()[0]
                done = con.execute("SELECT COUNT(*) FROM results").fetchone()[0]
                con.close()
            except sqlite3.Error:
                continue
            if done >= 64:
                break
    finally:
        os.killpg(p.pid, signal.SIGKILL)
        p.wait()
    assert 0 < done < planned, f"could not kill mid-way ({done}/{planned})"
    r = _cli(*cmd[3:], "--json")
    assert r.returncode == 0, r.stderr
    s = json.loads(r.stdout)
    assert s["planned"] == s["done"] == planned
    con = sqlite3.connect(db)
    ids = [x[0] for x in con.execute("SELECT id FROM results")]
    planned_ids = {x[0] for x in con.execute("SELECT id FROM faults")}
    assert len(ids) == len(set(ids)) == len(planned_ids) and set(ids) == planned_ids
    # the plan is the one a fresh run of the same spec makes
    spec = CampaignSpec(config="tiny", workload="demo", margin=0.05, confidence=0.95)
    from sim.faults.campaign import _make_injector
    _, fresh, _ = plan_faults(spec, _make_injector(spec))
    assert {fid for fid, _ in fresh} == planned_ids


def _small(tmp_path, name, workload="matmul", **kw):
    spec = CampaignSpec(config="tiny", workload=workload, margin=0.1, confidence=0.95, **kw)
    return run_campaign(spec, _fresh(tmp_path / f"{name}.db"), workers=1, quiet=True)


@pytest.mark.slow
def test_parity_turns_scratchpad_flips_into_due(tmp_path):
    plain = _small(tmp_path, "plain", "demo", structures=("act_sp", "wgt_sp"))
    prot = _small(tmp_path, "prot", "demo", structures=("act_sp", "wgt_sp"),
                  protect=("act_parity", "wgt_parity"))
    for h in ("act_sp", "wgt_sp"):
        assert plain["structures"][h]["sdc"] > 0, h
        assert prot["structures"][h]["sdc"] == 0, h
        assert prot["structures"][h]["due"] > 0, h
    assert prot["safety"]["spfm"] == 1.0 > plain["safety"]["spfm"]


@pytest.mark.slow
def test_ray_local_gives_identical_results(tmp_path):
    pytest.importorskip("ray", reason="Ray is an optional extra (pip install 'llmaccel[ray]')")
    spec = CampaignSpec(config="tiny", workload="matmul", margin=0.1, confidence=0.95,
                        structures=("accumulators", "dma"), models=("flip", "stuck1:20"))
    run_campaign(spec, _fresh(tmp_path / "a.db"), workers=1, quiet=True)
    run_campaign(spec, _fresh(tmp_path / "b.db"), workers=2, ray_address="local", quiet=True)
    rows = []
    for name in ("a", "b"):
        db = CampaignDB(tmp_path / f"{name}.db")
        rows.append({r["id"]: (r["outcome"], r["error"], r["out_bytes"], r["latent"])
                     for r in db.joined()})
        db.close()
    assert rows[0] == rows[1] and len(rows[0]) > 50


def test_report_and_exports(tmp_path):
    s = _small(tmp_path, "rep", structures=("accumulators", "act_sp"), models=("flip", "mbu:2"))
    db = str(tmp_path / "rep.db")
    out = tmp_path / "r.html"
    r = _cli("faults", "report", "--db", db, "-o", str(out), "--csv", str(tmp_path / "r.csv"),
             "--parquet", str(tmp_path / "r.parquet"), "--json")
    assert r.returncode == 0, r.stderr
    j = json.loads(r.stdout)
    assert j["done"] == s["done"] and set(j["structures"]) == {"accumulators", "act_sp"}
    text = out.read_text()
    assert text.count("<svg") >= 2 and "accumulators" in text and "SPFM" in text
    assert len((tmp_path / "r.csv").read_text().splitlines()) == s["planned"] + 1
    pq = pytest.importorskip("pyarrow.parquet")
    assert pq.read_table(tmp_path / "r.parquet").num_rows == s["planned"]


def test_planner_picks_cheapest_set(tmp_path):
    from sim.faults.planner import plan_protection
    s = _small(tmp_path, "plan", structures=("accumulators", "act_sp", "wgt_sp", "dma"))
    db = CampaignDB(tmp_path / "plan.db")
    rows = db.joined()
    db.close()
    a = lambda x: {"area": x, "luts": x, "ffs": 0, "brams": 0, "dsps": 0}   # noqa: E731
    areas = {"base": a(1000), "act_parity": a(1010), "wgt_parity": a(1050),
             "acc_residue": a(1100)}
    plan = plan_protection(s, rows, areas, "B")
    pts = {p["label"]: p for p in plan["points"]}
    assert len(pts) == 8 and pts["none"]["area_overhead"] == 0
    full = pts["act_parity, wgt_parity, acc_residue"]
    assert abs(full["area_overhead"] - 0.16) < 1e-12 and full["spfm"] >= pts["none"]["spfm"]
    ok = [p for p in plan["points"] if p["spfm"] >= plan["target_spfm"]]
    if ok:
        assert plan["chosen_area_overhead"] == min(p["area_overhead"] for p in ok)
        assert plan["chosen_spfm"] >= plan["target_spfm"]


def test_cli_errors(tmp_path):
    db = str(tmp_path / "e.db")
    for args, msg in [
        (("--models", "zap"), "unknown fault model 'zap'"),
        (("--structures", "nowhere", "--workload", "matmul"), "unknown structure 'nowhere'"),
        (("--protect", "tmr"), "unknown protection 'tmr'"),
        (("--workload", "bert"), "unknown workload 'bert'"),
        (("--config", "nosuch"), "unknown configuration 'nosuch'"),
    ]:
        r = _cli("faults", "run", "--db", db, *args)
        assert r.returncode == 2 and msg in r.stderr and "Traceback" not in r.stderr, r.stderr
        errs = [x for x in r.stderr.splitlines() if "error" in x]
        assert len(errs) == 1 and errs[0].startswith("llmaccel: error: "), r.stderr
    r = _cli("faults", "report", "--db", str(tmp_path / "missing.db"))
    assert r.returncode == 2 and "no such campaign database" in r.stderr
    (tmp_path / "junk.db").write_bytes(b"not sqlite at all" * 100)
    r = _cli("faults", "report", "--db", str(tmp_path / "junk.db"))
    assert r.returncode == 2 and "not a campaign database" in r.stderr
    # the same database with other options: refused, nothing mixed
    base = ("faults", "run", "--db", db, "--workload", "matmul", "--structures", "requant",
            "--margin", "0.2", "--confidence", "0.9", "--workers", "1")
    assert _cli(*base).returncode == 0
    r = _cli(*base[:-2], "--workers", "1", "--seed", "5")
    assert r.returncode == 2 and "holds another campaign (different seed)" in r.stderr


def test_generate_workload_token_changes(tiny):
    """Faults in token generation: each run of the trained model is a kernel at its own
    position, and a corrupted run is judged by the token it picks."""
    from sw.golden import Machine
    from sim.faults.workload import make_workload
    wl = make_workload("generate", tiny)
    assert [k.pos for k in wl.kernels][1:] == [16]          # "The accelerator " is 16 chars
    for i, k in enumerate(wl.kernels):
        out, st = Machine(tiny).run(k.program, k.memory, pos=k.pos)
        assert st["error"] is None
        assert wl.effect(i, out) == {"top1_changed": 0, "layer_rel_err": 0.0}
        logits = k.read_output(out)
        other = int(np.argmin(logits))
        lane_sym = out.symbols[f"logits@{4 if k.pos else 16}"]
        lane = k.pos % 4 if k.pos else 15
        out.data[lane_sym.addr + other * lane_sym.row_stride + lane] = 127
        out.data[lane_sym.addr + int(np.argmax(logits)) * lane_sym.row_stride + lane] = 0x80
        assert wl.effect(i, out)["top1_changed"] == 1
