"""``llmaccel verilog``, ``area`` and ``configs``: the hardware of a configuration."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from .config import load_config, preset_names

__all__ = ["add_parsers"]


def say(msg):
    print(msg, file=sys.stderr, flush=True)


def cmd_verilog(args):
    from . import verilog
    cfg = load_config(args.config)
    Path(args.output).write_text(verilog(cfg))
    say(f"wrote {args.output} ({cfg.name}: {cfg.rows}x{cfg.cols} array)")
    return 0


def cmd_area(args):
    from .synth import unit_area
    cfg = load_config(args.config)
    say(f"synthesizing {cfg.name} for {args.family} per unit (yosys, about a minute)")
    rows = unit_area(cfg, args.family)       # (a SynthError is the user's one-line error)
    total = {k: sum(r[k] for r in rows) for k in ("luts", "ffs", "carry", "dsps", "brams")}
    if args.json:
        print(json.dumps({"config": cfg.name, "family": args.family, "units": rows,
                          "total": total}))
        return 0
    lut = "LUT4" if args.family in ("ice40", "ecp5") else "LUT"
    print(f"{'unit':<24} {lut:>6} {'FF':>6} {'carry':>6} {'DSP':>4} {'BRAM':>5}")
    for r in rows + [{"unit": "total", **total}]:
        print(f"{r['unit']:<24} {r['luts']:>6} {r['ffs']:>6} {r['carry']:>6} {r['dsps']:>4} "
              f"{r['brams']:>5}")
    return 0


def cmd_configs(args):
    for n in preset_names():
        c = load_config(n)
        lut = (f" + LUT engine {c.rows}x{c.lut_cols}x4 W{','.join(map(str, c.lut_wbits))}"
               if c.has_lut else "")
        sys_ = f"{c.rows}x{c.cols} array" if "systolic" in c.engines else "no systolic array"
        print(f"{n:<10} {sys_}{lut}, {c.bus_bytes * 8}-bit bus, "
              f"act {c.act_depth * c.act_entry_bytes // 1024} KiB, "
              f"wgt {c.wgt_depth * c.wgt_entry_bytes // 1024} KiB, "
              f"acc {c.acc_depth * c.acc_entry_bytes // 1024} KiB, hash {c.hash.hex()}")
    return 0


def add_parsers(sub):
    v = sub.add_parser("verilog", help="write the accelerator's Verilog")
    v.add_argument("--config", required=True)
    v.add_argument("-o", "--output", required=True)
    v.set_defaults(fn=cmd_verilog)
    ar = sub.add_parser("area", help="logic per unit of the accelerator (Yosys, no place "
                        "and route): where the area goes")
    ar.add_argument("--config", required=True)
    ar.add_argument("--family", choices=["ice40", "ecp5"], default="ice40")
    ar.add_argument("--json", action="store_true")
    ar.set_defaults(fn=cmd_area)
    cf = sub.add_parser("configs", help="list the preset configurations")
    cf.set_defaults(fn=cmd_configs)
