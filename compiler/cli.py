"""``llmaccel compile``: a decoder block, or one linear layer, to programs and memory images."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from hw.config import load_config
from sw.errors import positive_int, say

__all__ = ["add_parsers"]


def cmd_compile(args):
    cfg = load_config(args.config)
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    if args.linear:
        from .frontend import lower_layer
        from .quantize import quantize_act
        m, k, n = args.linear
        rng = np.random.default_rng(args.seed)
        w = rng.normal(size=(n, k)) / np.sqrt(k)
        x = rng.normal(size=(m, k))
        kern = lower_layer(cfg, "linear", m, w, float(np.abs(x).max()), 4.0, args.weights,
                           group=args.group_size)
        kern.write_input(kern.memory, quantize_act(x, kern.x_scale))
        kernels = {"linear": kern}
    else:
        from .frontend import compile_model
        from .models import demo_inputs, demo_shape, make_block
        blk = make_block(args.shape or demo_shape(cfg), seed=args.seed)
        calib, _ = demo_inputs(blk, args.tokens, args.seed)
        kernels = compile_model(blk, calib, cfg, wformat=args.weights, group=args.group_size,
                                progress=say).kernels
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
    say(f"wrote {len(kernels)} program(s) to {out}/ (manifest.json)")
    return 0


def add_parsers(sub):
    c = sub.add_parser("compile", help="compile the decoder block (or one linear) to programs")
    c.add_argument("--config", default="default")
    c.add_argument("--shape")
    c.add_argument("--tokens", type=positive_int, default=16)
    c.add_argument("--linear", type=positive_int, nargs=3, metavar=("M", "K", "N"),
                   help="compile one random int8 linear layer instead")
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--weights", default="int8",
                   choices=["int8", "w1", "w2", "w3", "w4", "ternary"],
                   help="weight format: int8 (systolic engine) or low-bit (LUT engine)")
    c.add_argument("--group-size", type=positive_int, default=128,
                   help="low-bit weights: input features per group scale")
    c.add_argument("-o", "--output", required=True, help="output directory")
    c.set_defaults(fn=cmd_compile)
