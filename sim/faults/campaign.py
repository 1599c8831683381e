"""Fault-injection campaigns: plan (statistical or exhaustive, stratified by structure),
run on a local process pool or on Ray, resume after a kill, summarise."""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass, asdict

import numpy as np

from .db import CampaignDB
from .models import Fault, fault_id, parse_model
from .stats import allocate, sample_size, stratified, wilson, safety_metrics

__all__ = ["CampaignSpec", "CampaignError", "run_campaign", "summarize", "plan_faults",
           "PROTECTIONS", "protected_config"]

#: Protection name -> (structure it protects, AccelConfig change).
PROTECTIONS = {
    "act_parity": ("act_sp", {"parity": "act"}),
    "wgt_parity": ("wgt_sp", {"parity": "wgt"}),
    "acc_parity": ("acc_sp", {"parity": "acc"}),
    "scale_parity": ("scale_sp", {"parity": "scale"}),
    "acc_residue": ("accumulators", {"acc_check": "residue"}),
}


class CampaignError(RuntimeError):
    """A campaign cannot run as asked (one line for the user)."""


def protected_config(config, protect):
    parity = list(config.parity)
    changes = {}
    for p in protect:
        if p not in PROTECTIONS:
            raise CampaignError(f"unknown protection {p!r}; choose from {', '.join(PROTECTIONS)}")
        ch = PROTECTIONS[p][1]
        if "parity" in ch:
            parity.append(ch["parity"])
        else:
            changes.update(ch)
    return config.replace(parity=tuple(parity), **changes) if (parity or changes) else config


@dataclass(frozen=True)
class CampaignSpec:
    """Everything that defines a campaign; the same spec and seed give the same fault ids."""
    config: str = "tiny"
    workload: str = "demo"
    seed: int = 0
    margin: float = 0.01
    confidence: float = 0.99
    models: tuple = ("flip",)
    structures: tuple = ()          # empty: every structure
    exhaustive: bool = False
    min_per_structure: int = 30
    protect: tuple = ()
    fit_per_bit: float = 1e-3       # raw FIT per bit (reporting only; not part of the plan)

    def plan_key(self):
        d = asdict(self)
        d.pop("fit_per_bit")
        d["models"], d["structures"], d["protect"] = (list(d[k]) for k in
                                                      ("models", "structures", "protect"))
        return d

    def accel_config(self):
        from hw.config import load_config
        return protected_config(load_config(self.config), self.protect)


# --- workers (one Injector per process, built once) -----------------------------------------
_INJ = None


def _make_injector(spec: CampaignSpec, snapshot_every=None):
    from .injector import Injector
    from .workload import make_workload
    cfg = spec.accel_config()
    wl = make_workload(spec.workload, cfg, seed=spec.seed)
    return Injector(cfg, wl, snapshot_every=snapshot_every,
                    structures=list(spec.structures) or None)


def _one_thread():
    # workers are one per core: torch's own thread pool would only oversubscribe them
    import torch
    torch.set_num_threads(1)


def _pool_init(spec, snapshot_every):
    global _INJ
    _one_thread()
    _INJ = _make_injector(spec, snapshot_every)


def _pool_run(batch):
    return _INJ.run_batch(batch)


# --- planning ----------------------------------------------------------------------------------
def plan_faults(spec: CampaignSpec, injector):
    """-> (strata {name: bits/population/planned}, [(id, Fault)] in plan order)."""
    models = [parse_model(m) for m in spec.models]
    g = injector.golden
    cyc = np.cumsum([0] + [k.cycles for k in g])
    total_cycles = int(cyc[-1])
    pops = {h: s.bits * total_cycles * len(models) for h, s in injector.sites.items()}
    n_total = sample_size(sum(pops.values()), spec.margin, spec.confidence)
    if spec.exhaustive:
        if sum(pops.values()) > 5_000_000:
            raise CampaignError(f"an exhaustive campaign here is {sum(pops.values()):,} "
                                "injections; restrict --structures or sample instead")
        alloc = dict(pops)
    else:
        alloc = allocate(pops, n_total, spec.min_per_structure)
    rng = np.random.default_rng(spec.seed)
    faults, seen = [], set()
    strata = {}
    for h, s in injector.sites.items():
        n_h = alloc[h]
        idx = (np.arange(pops[h]) if spec.exhaustive
               else np.sort(rng.choice(pops[h], size=n_h, replace=False)))
        for i in idx.tolist():
            mi, rest = i % len(models), i // len(models)
            c, b = rest % total_cycles, rest // total_cycles
            kern = int(np.searchsorted(cyc, c, side="right")) - 1
            elem, entry, bit = s.locate(b)
            model, nbits, dur = models[mi]
            nbits = min(nbits, elem.width)
            bit = min(bit, elem.width - nbits)
            f = Fault(kern, int(g[kern].start_cycle + c - cyc[kern]), h, elem.name, entry, bit,
                      model, nbits, dur)
            fid = fault_id(spec.seed, f)
            if fid in seen:          # an MBU clipped at a word's top edge: already planned
                continue
            seen.add(fid)
            faults.append((fid, f))
        strata[h] = {"bits": s.bits, "population": pops[h], "planned": n_h}
    order = rng.permutation(len(faults))        # run order: every structure from the start
    return strata, [faults[i] for i in order], {"sample_size": n_total,
                                                "total_cycles": total_cycles}


# --- running -----------------------------------------------------------------------------------
class _Progress:
    def __init__(self, total, done, out=sys.stderr, quiet=False):
        self.total, self.start_done, self.done = total, done, done
        self.t0 = time.perf_counter()
        self.counts = {"masked": 0, "sdc": 0, "due": 0}
        self.out, self.quiet, self.last = out, quiet, 0.0

    def update(self, batch):
        self.done += len(batch)
        for _, r in batch:
            self.counts[r["outcome"]] += 1
        now = time.perf_counter()
        tty = getattr(self.out, "isatty", lambda: False)()
        if self.quiet or (now - self.last < (0.5 if tty else 15) and self.done < self.total):
            return
        self.last = now
        rate = (self.done - self.start_done) / max(now - self.t0, 1e-9)
        eta = (self.total - self.done) / rate if rate else 0
        n = max(1, sum(self.counts.values()))
        width = 30
        fill = int(width * self.done / max(self.total, 1))
        print(f"\r[faults] |{'#' * fill}{'.' * (width - fill)}| {self.done}/{self.total} "
              f"{rate:6.1f}/s ETA {int(eta // 60)}m{int(eta % 60):02d}s  "
              f"masked {self.counts['masked'] / n:.1%} SDC {self.counts['sdc'] / n:.1%} "
              f"DUE {self.counts['due'] / n:.1%}", end="" if tty else "\n", file=self.out,
              flush=True)

    def finish(self):
        if not self.quiet and getattr(self.out, "isatty", lambda: False)():
            print(file=self.out, flush=True)


def _batches(items, size):
    for i in range(0, len(items), size):
        yield items[i:i + size]


def run_campaign(spec: CampaignSpec, db_path, *, workers=None, ray_address=None, batch=64,
                 log=None, quiet=False, limit=None):
    """Plan (first time) and run every pending fault of ``spec`` into ``db_path``.

    ``limit`` stops after that many more faults (the rest stays pending). Returns the summary.
    """
    log = log or (lambda m: None)
    db = CampaignDB(db_path)
    try:
        have = db.meta("spec")
        if have is not None and have != spec.plan_key():
            diff = sorted(k for k in have if have.get(k) != spec.plan_key().get(k))
            raise CampaignError(f"{db_path} holds another campaign (different "
                                f"{', '.join(diff)}); use a new --db or the same options")
        inj = None
        if have is None:
            log(f"[faults] golden run of workload {spec.workload!r} on config "
                f"{spec.config!r}" + (f" protected by {', '.join(spec.protect)}"
                                      if spec.protect else ""))
            inj = _make_injector(spec)
            strata, faults, info = plan_faults(spec, inj)
            info.update(snapshot_every=inj.snapshot_every,
                        kernels=[k.name for k in inj.workload.kernels],
                        kernel_cycles=[g.cycles for g in inj.golden],
                        workload_info=inj.workload.info, config=inj.config.to_dict())
            db.write_plan(spec.plan_key(), info, strata, faults)
            log(f"[faults] planned {len(faults)} injections over {len(strata)} structures "
                f"(population {sum(s['population'] for s in strata.values()):,}; "
                f"{info['total_cycles']} cycles)")
        info = db.meta("info")
        pending = db.pending()
        planned, done = db.counts()
        if done:
            log(f"[faults] resuming: {done} of {planned} done, {len(pending)} to go")
        if limit is not None:
            pending = pending[:limit]
        prog = _Progress(done + len(pending), done, quiet=quiet)
        t0 = time.perf_counter()
        batches = list(_batches(pending, batch))
        workers = workers or os.cpu_count() or 1
        if pending:
            if ray_address:
                _run_ray(spec, info, batches, db, prog, ray_address, workers)
            elif workers == 1:
                inj = inj or _make_injector(spec, info["snapshot_every"])
                for b in batches:
                    res = inj.run_batch(b)
                    db.add_results(res)
                    prog.update(res)
            else:
                _run_pool(spec, info, batches, db, prog, workers, inj)
        prog.finish()
        wall = time.perf_counter() - t0
        if pending:
            db.set_meta(f"run_{int(time.time())}", {"injections": len(pending), "wall_s": wall,
                                                     "workers": workers,
                                                     "ray": ray_address or None})
        s = summarize(db, spec.fit_per_bit)
        s["this_run"] = {"injections": len(pending), "wall_s": wall,
                         "per_s": len(pending) / wall if wall > 0 else 0.0}
        return s
    finally:
        db.close()


def _run_pool(spec, info, batches, db, prog, workers, inj=None):
    """``workers - 1`` pool processes, and this process as the last worker (with the
    planner's injector when there is one, else its own, built while the pool starts)."""
    import multiprocessing as mp
    import torch
    from concurrent.futures import ProcessPoolExecutor, FIRST_COMPLETED, wait
    from concurrent.futures.process import BrokenProcessPool
    ctx = mp.get_context("spawn")
    threads = torch.get_num_threads()
    with ProcessPoolExecutor(workers - 1, mp_context=ctx, initializer=_pool_init,
                             initargs=(spec, info["snapshot_every"])) as ex:
        todo = list(reversed(batches))
        inflight = set()

        def record(res):
            db.add_results(res)
            prog.update(res)
        try:
            _one_thread()
            while todo and len(inflight) < 2 * (workers - 1):
                inflight.add(ex.submit(_pool_run, todo.pop()))
            inj = inj or _make_injector(spec, info["snapshot_every"])
            while todo or inflight:
                while todo and len(inflight) < 2 * (workers - 1):
                    inflight.add(ex.submit(_pool_run, todo.pop()))
                if todo:
                    record(inj.run_batch(todo.pop()))
                    fin = {fu for fu in inflight if fu.done()}
                    inflight -= fin
                else:
                    fin, inflight = wait(inflight, return_when=FIRST_COMPLETED)
                for fu in fin:
                    record(fu.result())
        except BrokenProcessPool:
            raise CampaignError("a campaign worker died (out of memory, or its model failed "
                                "to build or load); results so far are saved, run the same "
                                "command again to resume") from None
        except BaseException:
            for fu in inflight:
                fu.cancel()
            raise
        finally:
            torch.set_num_threads(threads)


def _run_ray(spec, info, batches, db, prog, address, workers):
    try:
        import ray
    except ImportError:
        raise CampaignError("--ray needs Ray: pip install 'llmaccel[ray]'") from None
    if not ray.is_initialized():
        if address == "local":
            ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False)
        else:
            ray.init(address=address, log_to_driver=False)

    @ray.remote
    class Worker:
        def __init__(self, spec, every):
            _one_thread()
            self.inj = _make_injector(spec, every)

        def run(self, b):
            return self.inj.run_batch(b)

    n = min(workers if address == "local" else int(ray.cluster_resources().get("CPU", 1)),
            len(batches))
    actors = [Worker.remote(spec, info["snapshot_every"]) for _ in range(n)]
    todo = list(batches)
    inflight = {}
    for a in actors:            # two batches in flight per actor keeps it busy
        for _ in range(2):
            if todo:
                inflight[a.run.remote(todo.pop(0))] = a
    while inflight:
        ready, _ = ray.wait(list(inflight), num_returns=1)
        a = inflight.pop(ready[0])
        res = ray.get(ready[0])
        db.add_results(res)
        prog.update(res)
        if todo:
            inflight[a.run.remote(todo.pop(0))] = a
    for a in actors:
        ray.kill(a)


# --- summary -----------------------------------------------------------------------------------
def summarize(db: CampaignDB, fit_per_bit=None):
    spec = db.meta("spec")
    info = db.meta("info") or {}
    fit = fit_per_bit if fit_per_bit is not None else CampaignSpec.fit_per_bit
    conf = spec["confidence"]
    done_by = {}
    for r in db.joined():
        if r["outcome"] is not None:
            done_by.setdefault(r["structure"], []).append(r)
    per = {}
    for h, st in db.strata().items():
        rs = done_by.get(h, [])
        n = len(rs)
        k = {o: sum(r["outcome"] == o for r in rs) for o in ("masked", "sdc", "due")}
        lat = sum(bool(r["latent"]) for r in rs)
        top1 = sum(bool(r["top1_changed"]) for r in rs)
        entry = {"bits": st["bits"], "population": st["population"], "planned": st["planned"],
                 "n": n, **k, "latent_n": lat, "top1_n": top1}
        for name, cnt in (("sdc", k["sdc"]), ("due", k["due"]), ("masked", k["masked"]),
                          ("latent", lat), ("top1", top1)):
            p = cnt / n if n else 0.0
            lo, hi = wilson(cnt, n, conf) if n else (0.0, 1.0)
            entry[f"avf_{name}" if name in ("sdc", "due") else f"p_{name}"] = (p, lo, hi)
        errs = [r["layer_rel_err"] for r in rs if r["layer_rel_err"] is not None]
        entry["sdc_layer_rel_err_median"] = float(np.median(errs)) if errs else None
        per[h] = entry
    overall = {}
    for name, key in (("sdc", "sdc"), ("due", "due"), ("masked", "masked"),
                      ("latent", "latent_n"), ("top1", "top1_n")):
        overall[name] = stratified({h: (e["population"], e[key], e["n"])
                                    for h, e in per.items()}, conf)
    metrics = safety_metrics([{"bits": e["bits"], "sdc": e["avf_sdc"], "latent": e["p_latent"]}
                              for e in per.values()], fit)
    planned, done = db.counts()
    return {"spec": spec, "info": info, "planned": planned, "done": done,
            "structures": per, "overall": overall, "safety": metrics, "fit_per_bit": fit}
