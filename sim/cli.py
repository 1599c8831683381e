"""``llmaccel faults run | report | plan``: fault-injection campaigns from the command line."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from sw.errors import count, positive_float, positive_int

__all__ = ["add_parsers"]


def _user_error(msg):
    from sw.errors import UserError
    return UserError(msg)


def _split(text):
    return tuple(x.strip() for x in text.split(",") if x.strip()) if text else ()


def _open_db(path):
    from sim.faults.db import CampaignDB, DBError
    if not Path(path).exists():
        raise _user_error(f"{path}: no such campaign database (run `llmaccel faults run` first)")
    try:
        db = CampaignDB(path)
        if db.meta("spec") is None:
            raise _user_error(f"{path}: the database holds no campaign")
        return db
    except DBError as e:
        raise _user_error(str(e)) from None


def cmd_run(args):
    from sim.faults.campaign import CampaignSpec, CampaignError, run_campaign
    from sim.faults.db import DBError
    from sim.faults.models import parse_model
    from sim.faults.report import table
    from sim.faults.workload import WORKLOADS
    models = _split(args.models)
    try:
        for mdl in models:
            parse_model(mdl)
    except ValueError as e:
        raise _user_error(str(e)) from None
    if args.workload not in WORKLOADS:
        raise _user_error(f"unknown workload {args.workload!r}; choose from "
                          f"{', '.join(WORKLOADS)}")
    if not (0 < args.margin < 1 and 0 < args.confidence < 1):
        raise _user_error("--margin and --confidence must be between 0 and 1")
    if args.workers is not None and args.workers < 1:
        raise _user_error("--workers must be at least 1")
    spec = CampaignSpec(config=args.config, workload=args.workload, seed=args.seed,
                        margin=args.margin, confidence=args.confidence, models=models,
                        structures=_split(args.structures), exhaustive=args.exhaustive,
                        protect=_split(args.protect), fit_per_bit=args.fit_per_bit)
    log = (lambda m: None) if args.json else (lambda m: print(m, file=sys.stderr, flush=True))
    try:
        spec.accel_config()         # a bad config or protection name fails here, at once
        s = run_campaign(spec, args.db, workers=args.workers, ray_address=args.ray, log=log,
                         quiet=args.json, limit=args.limit)
    except (CampaignError, DBError, ValueError) as e:
        raise _user_error(str(e)) from None
    if args.json:
        print(json.dumps(s, default=str))
    else:
        r = s["this_run"]
        if r["injections"]:
            print(f"{r['injections']} injections in {r['wall_s']:.1f}s "
                  f"({r['per_s']:.1f}/s)", file=sys.stderr)
        print(table(s))
    return 0


def cmd_report(args):
    from sim.faults.campaign import summarize
    from sim.faults.report import table, html_report, export_csv, export_parquet
    db = _open_db(args.db)
    try:
        s = summarize(db, args.fit_per_bit)
        plan = db.meta("plan")
        if args.csv:
            n = export_csv(db, args.csv)
            print(f"wrote {n} rows to {args.csv}", file=sys.stderr)
        if args.parquet:
            try:
                n = export_parquet(db, args.parquet)
            except RuntimeError as e:
                raise _user_error(str(e)) from None
            print(f"wrote {n} rows to {args.parquet}", file=sys.stderr)
        out = args.output or str(Path(args.db).with_suffix(".html"))
        Path(out).write_text(html_report(s, plan))
        if args.json:
            print(json.dumps({**s, "plan": plan, "report": out}, default=str))
        else:
            print(table(s))
            print(f"report: {out}", file=sys.stderr)
    finally:
        db.close()
    return 0


def cmd_plan(args):
    from sim.faults.campaign import summarize, PROTECTIONS
    from sim.faults.planner import plan_protection, protection_areas
    db = _open_db(args.db)
    try:
        s = summarize(db, args.fit_per_bit)
        spec = s["spec"]
        if spec["protect"]:
            raise _user_error(f"{args.db} is a campaign on an already protected design; plan "
                              "from a campaign on the unprotected one")
        from hw.config import load_config
        cfg = load_config(spec["config"])
        names = [n for n in PROTECTIONS if PROTECTIONS[n][0] in s["structures"]]
        say = (lambda m: None) if args.json else \
            (lambda m: print(f"[plan] {m}", file=sys.stderr, flush=True))
        say(f"area from Yosys (ECP5) for {1 + len(names)} designs (cached after the first time)")
        areas = protection_areas(cfg, names, progress=say)
        plan = plan_protection(s, db.joined(), areas, args.asil)
        db.set_meta("plan", plan)
    finally:
        db.close()
    if args.json:
        print(json.dumps(plan))
        return 0
    print(f"{'protection':<14}{'structure':<14}{'area +':>9}{'LUT':>8}{'FF':>7}{'BRAM':>6}")
    for n in names:
        a = areas[n]
        print(f"{n:<14}{PROTECTIONS[n][0]:<14}{plan['overheads'][n]:>9.2%}{a['luts']:>8}"
              f"{a['ffs']:>7}{a['brams']:>6}")
    b = areas["base"]
    print(f"{'(unprotected)':<28}{'':>9}{b['luts']:>8}{b['ffs']:>7}{b['brams']:>6}")
    print(f"\ntarget ASIL-{args.asil}: SPFM >= {plan['target_spfm']:.0%}; unprotected SPFM "
          f"{s['safety']['spfm']:.2%}")
    verb = "reaches it" if plan["reached"] else "is the best reachable (target NOT met)"
    print(f"cheapest set that {verb}: {', '.join(plan['chosen']) or 'none'} "
          f"(+{plan['chosen_area_overhead']:.2%} area, predicted SPFM {plan['chosen_spfm']:.2%})")
    if plan["chosen"]:
        print(f"measure it: llmaccel faults run --config {spec['config']} --workload "
              f"{spec['workload']} --protect {','.join(plan['chosen'])} --margin {spec['margin']} "
              f"--confidence {spec['confidence']} --db protected.db")
    return 0 if plan["reached"] else 1


def cmd_wave(args):
    from dataclasses import fields
    from sim.faults.campaign import CampaignSpec
    from sim.faults.wave import fault_waves, fault_window
    from sim.faults.workload import make_workload
    db = _open_db(args.db)
    try:
        f = db.fault(args.id)
        if f is None:
            raise _user_error(f"{args.db} plans no fault with id {args.id} (the ids are in "
                              "`llmaccel faults report --csv`)")
        result = db.result(args.id)
        spec = CampaignSpec(**{k: v for k, v in db.meta("spec").items()
                               if k in {x.name for x in fields(CampaignSpec)}})
    finally:
        db.close()
    window = fault_window(f, args.start, args.cycles)
    out = Path(args.output or f"{Path(args.db).with_suffix('')}-fault{args.id}")
    cfg = spec.accel_config()
    wl = make_workload(spec.workload, cfg, spec.seed)
    fw = fault_waves(cfg, wl, f, out, fmt=args.format, window=window, quiet=args.json)
    info = {"id": args.id, "fault": vars(f), "result": result, "golden": str(fw.golden),
            "faulty": str(fw.faulty), "window": list(fw.window),
            "first_difference_cycle": fw.first_cycle, "first_difference": fw.signals}
    if args.json:
        print(json.dumps(info, default=str))
        return 0
    outcome = result["outcome"] if result else "not run yet"
    print(f"fault {args.id}: {f.model} of {f.element}[{f.entry}] bit {f.bit} at cycle "
          f"{f.cycle} of kernel {f.kernel} ({outcome})")
    print(f"golden: {fw.golden}\nfaulty: {fw.faulty}\n(cycles {fw.window[0]} to "
          f"{fw.window[1] - 1}; cycle c is at time c x {1e6 / cfg.clock_mhz:.0f} ps)")
    if fw.first_cycle is None:
        print("the two runs do not differ in this window")
    else:
        shown = ", ".join(n.removeprefix("TOP.llmaccel_top.") for n in fw.signals[:8])
        more = f" and {len(fw.signals) - 8} more" if len(fw.signals) > 8 else ""
        print(f"first difference at cycle {fw.first_cycle}: {shown}{more}")
    return 0


def add_parsers(sub):
    f = sub.add_parser("faults", help="fault-injection campaigns on the accelerator RTL")
    fs = f.add_subparsers(dest="faults_cmd", required=True)
    r = fs.add_parser("run", help="run (or resume) a campaign into a SQLite database")
    r.add_argument("--config", default="tiny")
    r.add_argument("--workload", default="demo", help="demo (the decoder block), generate (the trained model's "
                        "prefill and decode runs) or matmul")
    r.add_argument("--db", required=True, help="campaign database (SQLite); re-run to resume")
    r.add_argument("--margin", type=float, default=0.01)
    r.add_argument("--confidence", type=float, default=0.99)
    r.add_argument("--seed", type=count, default=0)
    r.add_argument("--models", default="flip",
                   help="comma list: flip, mbu[:BITS], stuck0[:CYCLES], stuck1[:CYCLES] "
                   "(stuck-at without CYCLES is permanent)")
    r.add_argument("--structures", help="comma list of structures (default: all)")
    r.add_argument("--exhaustive", action="store_true",
                   help="every site x bit x cycle instead of a sample")
    r.add_argument("--protect", help="comma list of protections: act_parity, wgt_parity, "
                   "acc_parity, scale_parity, acc_residue")
    r.add_argument("--workers", type=positive_int, help="local worker processes (default: all cores)")
    r.add_argument("--ray", metavar="ADDRESS",
                   help="run on a Ray cluster (ADDRESS, or 'local' for this machine)")
    r.add_argument("--limit", type=positive_int, help="stop after this many injections (resume later)")
    r.add_argument("--fit-per-bit", type=positive_float, default=1e-3, help="raw FIT per bit")
    r.add_argument("--json", action="store_true")
    r.set_defaults(fn=cmd_run)
    p = fs.add_parser("report", help="tables, HTML report, CSV/Parquet export")
    p.add_argument("--db", required=True)
    p.add_argument("-o", "--output", help="HTML report path (default: DB name + .html)")
    p.add_argument("--csv")
    p.add_argument("--parquet")
    p.add_argument("--fit-per-bit", type=positive_float)
    p.add_argument("--json", action="store_true")
    p.set_defaults(fn=cmd_report)
    pl = fs.add_parser("plan", help="cheapest protection reaching an ASIL's SPFM target")
    pl.add_argument("--db", required=True, help="a campaign on the unprotected design")
    pl.add_argument("--asil", default="D", choices=["B", "C", "D"])
    pl.add_argument("--fit-per-bit", type=positive_float)
    pl.add_argument("--json", action="store_true")
    pl.set_defaults(fn=cmd_plan)
    w = fs.add_parser("wave", help="waveforms of one fault: the golden and the faulty run")
    w.add_argument("--db", required=True)
    w.add_argument("--id", type=int, required=True, help="the fault's id")
    w.add_argument("-o", "--output", help="directory (default: DB name + -faultID)")
    w.add_argument("--format", choices=["vcd", "fst"], default="vcd")
    w.add_argument("--from", dest="start", type=count, metavar="C",
                   help="first cycle (default: 16 before the fault)")
    w.add_argument("--cycles", type=positive_int, metavar="N", help="cycles (default 272)")
    w.add_argument("--json", action="store_true")
    w.set_defaults(fn=cmd_wave)
