"""``llmaccel demo``: a decoder block compiled, run on the Verilated accelerator and checked."""

from __future__ import annotations

import json
import time

from hw.config import load_config
from sw.errors import EXIT_MISMATCH, UserError, positive_int, say
from .run import executor, write_timeline

__all__ = ["add_parsers"]


def cmd_demo(args):
    import torch
    from compiler.frontend import compile_model
    from compiler.models import SHAPES, demo_inputs, demo_shape, make_block
    from sw.golden import Machine

    cfg = load_config(args.config or ("lut" if args.engine == "lut" else "default"))
    shape = args.shape or demo_shape(cfg)
    if shape not in SHAPES:
        raise UserError(f"unknown shape {shape!r}; choose from {', '.join(SHAPES)}")
    if args.engine == "systolic" and args.wbits is not None:
        raise UserError("--wbits selects low-bit weights for the LUT engine: add --engine lut")
    wformat = "int8" if args.engine == "systolic" else (
        "ternary" if args.wbits == "ternary" else f"w{args.wbits or 2}")
    quiet = args.json
    log = (lambda m: None) if quiet else say
    blk = make_block(shape, seed=args.seed)
    calib, x = demo_inputs(blk, args.tokens, args.seed)
    log(f"[demo] decoder block {shape} (hidden {blk.s.hidden}, inter {blk.s.inter}, heads "
        f"{blk.s.heads}/{blk.s.kv_heads}), {args.tokens} tokens, config {cfg.name!r} "
        f"({cfg.rows}x{cfg.cols} array), weights {wformat}"
        + (f" in groups of {args.group_size} on the LUT engine" if wformat != "int8" else ""))
    runner = executor("verilator", cfg, quiet=quiet, timeline=bool(args.timeline))
    def save_timeline(name, st):
        from pathlib import Path
        write_timeline(runner.timeline,
                       Path(args.timeline) / f"{name.removesuffix('.weight')}.json")
    t0 = time.perf_counter()
    cm = compile_model(blk, calib, cfg, wformat=wformat, group=args.group_size,
                       progress=lambda m: log(f"[compile] {m}"))
    log(f"[compile] {len(cm.kernels)} linear layers, "
        f"{sum(len(k.program) for k in cm.kernels.values())} instructions in "
        f"{time.perf_counter() - t0:.1f}s")
    out, rep = cm.run((x,), runner, check=Machine(cfg), progress=lambda m: log(f"[run] {m}"),
                      after=save_timeline if args.timeline else None)
    with torch.no_grad():
        ref = blk(x)
        # the same block with the weights the kernels really use (quantized, dequantized):
        # what is left against it is the int8 activations and requantization, not the weights
        blk_q = make_block(shape, seed=args.seed)
        sd = blk_q.state_dict()
        for name, kern in cm.kernels.items():
            sd[name] = torch.from_numpy(kern.w_dequant).to(sd[name].dtype)
        blk_q.load_state_dict(sd)
        ref_q = blk_q(x)
    err = float((out - ref).abs().max())
    err_q = float((out - ref_q).abs().max())
    cycles = rep["cycles"]
    util = rep["peak_cycles"] / cycles if cycles else 0.0
    result = {
        "config": cfg.name, "shape": shape, "tokens": args.tokens, "weights": wformat,
        "engine": args.engine,
        "bit_exact": not rep["mismatches"],
        "mismatches": rep["mismatches"],
        "cycles": cycles,
        "macs": rep["macs"],
        "macs_per_cycle": rep["macs"] / cycles if cycles else 0.0,
        "peak_macs_per_cycle": rep["macs"] / rep["peak_cycles"] if cycles else 0.0,
        "utilization": util,
        "sim_cycles_per_s": rep["sim_cycles"] / rep["sim_wall_s"] if rep["sim_wall_s"] else 0.0,
        "max_abs_err_vs_float": err,
        "max_abs_err_vs_float_quantized_weights": err_q,
        "max_abs_float": float(ref.abs().max()),
        "layers": rep["kernels"],
    }
    if args.json:
        print(json.dumps(result))
    else:
        print(f"\n{'layer':<20}{'M x K x N':>20}{'cycles':>12}{'util':>8}{'bit-exact':>11}")
        for k in rep["kernels"]:
            u = k["macs"] / (k["cycles"] * k["peak"])
            print(f"{k['name'].removesuffix('.weight'):<20}{k['m']:>6} x{k['k']:>6} x{k['n']:>6}"
                  f"{k['cycles']:>12}{u:>8.1%}{str(k.get('bit_exact')):>11}")
        print(f"\nbit-exact RTL vs golden : {result['bit_exact']}")
        print(f"cycles                  : {cycles}")
        print(f"MACs / cycle            : {result['macs_per_cycle']:.1f} of "
              f"{result['peak_macs_per_cycle']:.0f} peak ({result['utilization']:.1%})")
        print(f"simulation speed        : {result['sim_cycles_per_s'] / 1e3:.0f}k cycles/s")
        print(f"max |int8 - float torch|: {err:.4f} (outputs up to {result['max_abs_float']:.2f})")
        print(f"  same, float model with the kernels' quantized weights: {err_q:.4f}")
    return 0 if result["bit_exact"] else EXIT_MISMATCH


def add_parsers(sub):
    d = sub.add_parser("demo", help="compile the decoder block, run it on Verilator, check it")
    d.add_argument("--config", help="configuration (default: 'default', or 'lut' with "
                   "--engine lut)")
    d.add_argument("--shape", help="block shape (smollm2-135m, llama2-7b, toy, ...)")
    d.add_argument("--tokens", type=positive_int, default=16)
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--json", action="store_true")
    d.add_argument("--engine", choices=["systolic", "lut"], default="systolic",
                   help="engine for the linear layers (lut: low-bit weights by table lookup)")
    d.add_argument("--wbits", choices=["1", "2", "3", "4", "ternary"],
                   help="LUT engine weight width (default 2)")
    d.add_argument("--group-size", type=positive_int, default=128,
                   help="LUT weights: input features per group scale (default 128)")
    d.add_argument("--timeline", metavar="DIR", help="write each layer's timeline here "
                   "(Perfetto JSON and a utilisation PNG per layer)")
    d.set_defaults(fn=cmd_demo)
