"""``llmaccel compile``: a decoder block, or one linear layer, to programs and memory images."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from hw.config import load_config
from sw.errors import positive_int, say
from .quantize import FORMATS

__all__ = ["add_parsers"]

WFORMATS = list(FORMATS)


def cmd_compile(args):
    cfg = load_config(args.config)
    out = Path(args.output)
    if args.model:
        return _compile_model(args, cfg, out)
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


def _compile_model(args, cfg, out):
    """A whole model (a file, a directory or a built-in name) to its programs and memory
    image, with a manifest of the programs and of every linear layer's kernel."""
    from .llm import compile_llm
    from .llmquant import quantize_model
    from .modelload import calibration, load
    model, tok, corpus = load(args.model, args.seed)
    say(f"calibrating {args.model} ({model.config.num_hidden_layers} layers)")
    qm = quantize_model(model, calibration(model, tok, corpus,
                                           min(64, model.config.max_position_embeddings)))
    cm = compile_llm(cfg, qm, max_len=args.max_len, wformat=args.weights,
                     group=args.group_size, requantize=args.requantize,
                     progress=lambda m: say(f"compiling {m}"))
    out.mkdir(parents=True, exist_ok=True)
    cm.memory.save(out / "model.mem.npz")
    manifest = {"config": cfg.name, "config_hash": cfg.hash.hex(), "model": str(args.model),
                "memory": "model.mem.npz", "programs": {}, "kernels": {}}
    for name, prog in cm.programs.items():
        (out / f"{name}.prog").write_bytes(prog.to_bytes())
        manifest["programs"][name] = {"file": f"{name}.prog", "instructions": len(prog)}
    for name, k in cm.kernels.items():
        manifest["kernels"][name] = {"k": k.k, "n": k.n, "engine": k.engine.name.lower(),
                                     "wbits": k.wbits, "source": getattr(k, "kind", "")}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1))
    say(f"wrote {len(cm.programs)} program(s) and the memory image to {out}/ (manifest.json)")
    return 0


def cmd_inspect(args):
    from .modelinfo import format_report, inspect_file
    rep = inspect_file(args.file, load_config(args.config), wformat=args.weights)
    if args.json:
        print(json.dumps(rep))
    else:
        print("\n".join(format_report(rep)))
    return 0


def add_parsers(sub):
    c = sub.add_parser("compile", help="compile the decoder block (or one linear) to programs")
    c.add_argument("--config", default="default")
    c.add_argument("--shape")
    c.add_argument("--tokens", type=positive_int, default=16)
    c.add_argument("--linear", type=positive_int, nargs=3, metavar=("M", "K", "N"),
                   help="compile one random int8 linear layer instead")
    c.add_argument("--model", help="compile a whole model instead: a GGUF file, a model "
                   "directory (config.json + model.safetensors) or a built-in name")
    c.add_argument("--max-len", type=positive_int, help="--model: KV-cache positions")
    c.add_argument("--requantize", action="store_true",
                   help="--model: re-quantize tensors whose format no engine holds")
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--weights", default="int8",
                   choices=WFORMATS,
                   help="weight format of float weights: int8 (systolic engine) or low-bit "
                        "(LUT engine); a quantized file's tensors keep their own")
    c.add_argument("--group-size", type=positive_int, default=128,
                   help="low-bit weights: input features per group scale")
    c.add_argument("-o", "--output", required=True, help="output directory")
    c.set_defaults(fn=cmd_compile)
    i = sub.add_parser("inspect", help="a model file's architecture and tensors, and the "
                       "engine each tensor maps to")
    i.add_argument("file", help="a GGUF file or a model directory (config.json and "
                   "safetensors: float, GPTQ, AWQ, BitNet)")
    i.add_argument("--config", default="lut", help="the configuration to map onto")
    i.add_argument("--weights", default="int8", choices=WFORMATS,
                   help="the format float linear layers would be quantized in")
    i.add_argument("--json", action="store_true")
    i.set_defaults(fn=cmd_inspect)
