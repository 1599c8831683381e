"""The ``llmaccel`` command line.

Every user mistake (bad config, corrupt or foreign program, unsupported model, out-of-range
address) ends with one line on stderr and a non-zero exit status, never a traceback; set
LLMACCEL_DEBUG=1 to see one anyway.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

__all__ = ["main"]

EXIT_USER, EXIT_MISMATCH, EXIT_ACCEL = 2, 3, 4


from sw.errors import UserError  # noqa: E402


def _say(msg):
    print(msg, file=sys.stderr, flush=True)


def _config(name):
    from hw.config import load_config
    return load_config(name)


def _executor(name, config, quiet=False, port=None, baud=None):
    if name == "board":
        from boards.host import BoardExecutor
        if not port:
            raise UserError("--executor board needs --port (the board's serial device)")
        return BoardExecutor(config, port, baud=baud or 1_000_000)
    if name == "board-sim":
        from boards.host import BoardExecutor
        from boards.sim import BoardSim, SimSerial
        return BoardExecutor(config, SimSerial(BoardSim(config, quiet=quiet)), slack=0.001,
                             resync=0.001)
    if name == "golden":
        from sw.golden import Machine
        return Machine(config)
    if name == "verilator":
        from sim.fast import FastRunner
        return FastRunner(config, quiet=quiet)
    if name == "pyverilator":
        from sim.interactive import InteractiveRunner
        return InteractiveRunner(config, quiet=quiet)
    raise UserError(f"unknown executor {name!r}; choose golden, verilator, pyverilator, board "
                    f"or board-sim")


# --- demo ------------------------------------------------------------------------------------
def cmd_demo(args):
    import torch
    from compiler.frontend import compile_model
    from compiler.models import SHAPES, demo_inputs, demo_shape, make_block
    from sw.golden import Machine

    cfg = _config(args.config or ("lut" if args.engine == "lut" else "default"))
    shape = args.shape or demo_shape(cfg)
    if shape not in SHAPES:
        raise UserError(f"unknown shape {shape!r}; choose from {', '.join(SHAPES)}")
    if args.engine == "systolic" and args.wbits is not None:
        raise UserError("--wbits selects low-bit weights for the LUT engine: add --engine lut")
    wformat = "int8" if args.engine == "systolic" else (
        "ternary" if args.wbits == "ternary" else f"w{args.wbits or 2}")
    quiet = args.json
    log = (lambda m: None) if quiet else _say
    blk = make_block(shape, seed=args.seed)
    calib, x = demo_inputs(blk, args.tokens, args.seed)
    log(f"[demo] decoder block {shape} (hidden {blk.s.hidden}, inter {blk.s.inter}, heads "
        f"{blk.s.heads}/{blk.s.kv_heads}), {args.tokens} tokens, config {cfg.name!r} "
        f"({cfg.rows}x{cfg.cols} array), weights {wformat}"
        + (f" in groups of {args.group_size} on the LUT engine" if wformat != "int8" else ""))
    runner = _executor("verilator", cfg, quiet=quiet)
    t0 = time.perf_counter()
    cm = compile_model(blk, calib, cfg, wformat=wformat, group=args.group_size,
                       progress=lambda m: log(f"[compile] {m}"))
    log(f"[compile] {len(cm.kernels)} linear layers, "
        f"{sum(len(k.program) for k in cm.kernels.values())} instructions in "
        f"{time.perf_counter() - t0:.1f}s")
    out, rep = cm.run((x,), runner, check=Machine(cfg), progress=lambda m: log(f"[run] {m}"))
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


# --- pieces ----------------------------------------------------------------------------------
def cmd_verilog(args):
    import hw
    cfg = _config(args.config)
    Path(args.output).write_text(hw.verilog(cfg))
    _say(f"wrote {args.output} ({cfg.name}: {cfg.rows}x{cfg.cols} array)")
    return 0


def cmd_compile(args):
    import numpy as np
    cfg = _config(args.config)
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    if args.linear:
        from compiler.frontend import lower_layer
        from compiler.quantize import quantize_act
        m, k, n = args.linear
        rng = np.random.default_rng(args.seed)
        w = rng.normal(size=(n, k)) / np.sqrt(k)
        x = rng.normal(size=(m, k))
        kern = lower_layer(cfg, "linear", m, w, float(np.abs(x).max()), 4.0, args.weights,
                           group=args.group_size)
        kern.write_input(kern.memory, quantize_act(x, kern.x_scale))
        kernels = {"linear": kern}
    else:
        from compiler.frontend import compile_model
        from compiler.models import demo_inputs, demo_shape, make_block
        blk = make_block(args.shape or demo_shape(cfg), seed=args.seed)
        calib, _ = demo_inputs(blk, args.tokens, args.seed)
        kernels = compile_model(blk, calib, cfg, wformat=args.weights, group=args.group_size,
                                progress=_say).kernels
    manifest = {"config": cfg.name, "config_hash": cfg.hash.hex(), "kernels": []}
    for name, kern in kernels.items():
        stem = name.removesuffix(".weight").replace(".", "_")
        (out / f"{stem}.prog").write_bytes(kern.program.to_bytes())
        kern.memory.save(out / f"{stem}.mem.npz")
        manifest["kernels"].append({"name": name, "program": f"{stem}.prog",
                                    "memory": f"{stem}.mem.npz", "m": kern.m, "k": kern.k,
                                    "n": kern.n, "instructions": len(kern.program),
                                    "engine": kern.engine.name.lower(), "wbits": kern.wbits})
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1))
    _say(f"wrote {len(kernels)} program(s) to {out}/ (manifest.json)")
    return 0


def _load_program(path, cfg):
    from sw.program import Program
    p = Path(path)
    if not p.exists():
        raise UserError(f"{path}: no such program file")
    prog = Program.from_bytes(p.read_bytes(), source=str(path))
    prog.check_config(cfg, source=str(path))
    return prog


def cmd_run(args):
    from sw.program import MemoryImage
    cfg = _config(args.config)
    prog = _load_program(args.program, cfg)
    mem_path = args.memory or str(Path(args.program).with_suffix("").with_suffix("")) + ".mem.npz"
    if not Path(mem_path).exists():
        raise UserError(f"{mem_path}: no such memory image (give --memory)")
    mem = MemoryImage.load(mem_path)
    ex = _executor(args.executor, cfg, quiet=args.json, port=args.port, baud=args.baud)
    out, st = ex.run(prog, mem)
    result = {"executor": args.executor, "stats": st}
    if args.check and args.executor != "golden":
        from sw.golden import Machine
        ref, rst = Machine(cfg).run(prog, mem)
        result["bit_exact"] = ref.data == out.data and rst["error"] == st["error"]
    if args.output:
        out.save(args.output)
    if args.json:
        print(json.dumps(result))
    else:
        for k, v in st.items():
            print(f"{k:>16}: {v}")
        if "bit_exact" in result:
            print(f"{'bit_exact':>16}: {result['bit_exact']}")
    if st.get("error"):
        _say(f"llmaccel: the accelerator stopped with error {st['error']}")
        return EXIT_ACCEL
    return 0 if result.get("bit_exact", True) else EXIT_MISMATCH


def cmd_disasm(args):
    cfg = _config(args.config)
    print(_load_program(args.program, cfg).listing())
    return 0


def cmd_area(args):
    import json
    from hw.synth import SynthError, unit_area
    cfg = _config(args.config)
    _say(f"synthesizing {cfg.name} for {args.family} per unit (yosys, about a minute)")
    try:
        rows = unit_area(cfg, args.family)
    except SynthError as e:
        raise UserError(str(e)) from None
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
    from hw.config import load_config, preset_names
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


def build_parser():
    p = argparse.ArgumentParser(prog="llmaccel", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("demo", help="compile the decoder block, run it on Verilator, check it")
    d.add_argument("--config", help="configuration (default: 'default', or 'lut' with "
                   "--engine lut)")
    d.add_argument("--shape", help="block shape (smollm2-135m, llama2-7b, toy, ...)")
    d.add_argument("--tokens", type=int, default=16)
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--json", action="store_true")
    d.add_argument("--engine", choices=["systolic", "lut"], default="systolic",
                   help="engine for the linear layers (lut: low-bit weights by table lookup)")
    d.add_argument("--wbits", choices=["1", "2", "3", "4", "ternary"],
                   help="LUT engine weight width (default 2)")
    d.add_argument("--group-size", type=int, default=128,
                   help="LUT weights: input features per group scale (default 128)")
    d.set_defaults(fn=cmd_demo)
    v = sub.add_parser("verilog", help="write the accelerator's Verilog")
    v.add_argument("--config", required=True)
    v.add_argument("-o", "--output", required=True)
    v.set_defaults(fn=cmd_verilog)
    c = sub.add_parser("compile", help="compile the decoder block (or one linear) to programs")
    c.add_argument("--config", default="default")
    c.add_argument("--shape")
    c.add_argument("--tokens", type=int, default=16)
    c.add_argument("--linear", type=int, nargs=3, metavar=("M", "K", "N"),
                   help="compile one random int8 linear layer instead")
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--weights", default="int8",
                   choices=["int8", "w1", "w2", "w3", "w4", "ternary"],
                   help="weight format: int8 (systolic engine) or low-bit (LUT engine)")
    c.add_argument("--group-size", type=int, default=128,
                   help="low-bit weights: input features per group scale")
    c.add_argument("-o", "--output", required=True, help="output directory")
    c.set_defaults(fn=cmd_compile)
    r = sub.add_parser("run", help="run a program on an executor")
    r.add_argument("program")
    r.add_argument("--memory", help="memory image (.mem.npz); default: beside the program")
    r.add_argument("--config", default="default")
    r.add_argument("--executor", default="verilator",
                   help="golden, verilator, pyverilator, board (a board on --port) or "
                   "board-sim (the board top simulated behind a UART)")
    r.add_argument("--port", help="serial device of the board (--executor board)")
    r.add_argument("--baud", type=int, help="baud rate of the board link (default 1000000)")
    r.add_argument("--check", action="store_true", help="compare with the golden model")
    r.add_argument("-o", "--output", help="write the final memory image here")
    r.add_argument("--json", action="store_true")
    r.set_defaults(fn=cmd_run)
    da = sub.add_parser("disasm", help="list a program's instructions")
    da.add_argument("program")
    da.add_argument("--config", default="default")
    da.set_defaults(fn=cmd_disasm)
    ar = sub.add_parser("area", help="logic per unit of the accelerator (Yosys, no place "
                        "and route): where the area goes")
    ar.add_argument("--config", required=True)
    ar.add_argument("--family", choices=["ice40", "ecp5"], default="ice40")
    ar.add_argument("--json", action="store_true")
    ar.set_defaults(fn=cmd_area)
    cf = sub.add_parser("configs", help="list the preset configurations")
    cf.set_defaults(fn=cmd_configs)
    from sw.faults_cli import add_parser as add_faults
    add_faults(sub)
    from boards.cli import add_parsers as add_boards
    add_boards(sub)
    return p


def main(argv=None):
    from compiler.lower import CompileError
    from hw.config import ConfigError
    from hw.isa import IsaError
    from sim.build import BuildError
    from sw.program import ProgramError
    args = build_parser().parse_args(argv)
    known = (UserError, ConfigError, ProgramError, CompileError, IsaError, OSError)
    try:
        return args.fn(args)
    except known as e:
        if os.environ.get("LLMACCEL_DEBUG"):
            raise
        _say(f"llmaccel: error: {e}")
        return EXIT_USER
    except BuildError as e:
        if os.environ.get("LLMACCEL_DEBUG"):
            raise
        _say(f"llmaccel: error: the Verilator build failed: {str(e).splitlines()[0]}")
        return EXIT_USER
    except KeyboardInterrupt:
        _say("llmaccel: interrupted")
        return 130


if __name__ == "__main__":
    sys.exit(main())
