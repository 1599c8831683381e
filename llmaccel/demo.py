"""``llmaccel demo``: a whole decoder block on the Verilated accelerator -- every op from the
input norm to the second residual add -- checked against the golden model and float torch."""

from __future__ import annotations

import json
import time

from hw.config import load_config
from sw.errors import EXIT_MISMATCH, UserError, positive_int, say
from .run import executor, write_timeline

__all__ = ["add_parsers"]

#: token ids of the demo's one-layer model (its embedding table; no LM head runs)
VOCAB = 256


def _model_config(shape, tokens):
    from compiler.models import SHAPES, ModelConfig
    s = SHAPES[shape]
    return ModelConfig(hidden_size=s.hidden, intermediate_size=s.inter,
                       num_attention_heads=s.heads, num_key_value_heads=s.kv_heads,
                       num_hidden_layers=1, vocab_size=VOCAB, head_dim=s.head_dim,
                       rope_theta=s.rope_theta, rms_norm_eps=s.eps,
                       max_position_embeddings=tokens)


def _float_block_out(model, ids):
    """The float block's output (the residual stream after the layer) [T, hidden]."""
    from compiler.llmquant import float_forward
    got = {}
    float_forward(model, ids, lambda name, v: got.__setitem__(name, v) if name == "0.xb"
                  else None)
    return got["0.xb"].numpy()


def _with_weights(model, cm):
    """A copy of ``model`` whose linear layers hold the weights the kernels really multiply
    by (quantized, then dequantized)."""
    import copy
    import torch
    m = copy.deepcopy(model)
    blk = m.layers[0]
    for name, kern in cm.kernels.items():
        # a layer cut into parts (more outputs than the scales hold) is "name[n0:]"
        layer, _, rest = name.split(".", 1)[1].partition("[")
        n0 = int(rest.split(":")[0]) if rest else 0
        w = getattr(blk, layer).weight
        with torch.no_grad():
            w[n0:n0 + kern.w_dequant.shape[0]] = torch.from_numpy(kern.w_dequant)
    return m


def _compile(args, cfg, wformat, log):
    import numpy as np
    from compiler.llm import check_fits, compile_llm
    from compiler.llmquant import quantize_model
    from compiler.lower import pad_to
    from compiler.models import SHAPES, demo_shape, make_model
    shape = args.shape or demo_shape(cfg)
    if shape not in SHAPES:
        raise UserError(f"unknown shape {shape!r}; choose from {', '.join(SHAPES)}")
    T = pad_to(args.tokens, cfg.rows)
    max_len = pad_to(T, np.lcm(cfg.cols, cfg.bus_bytes))
    mc = _model_config(shape, max_len)
    check_fits(cfg, mc, max_len)        # before the float model of a large shape is built
    model = make_model(mc, seed=args.seed)
    rng = np.random.default_rng(args.seed)
    # calibration over every token of the vocabulary (the demo's input is random tokens)
    calib = [rng.permutation(VOCAB)[i:i + 64] for i in range(0, VOCAB, 64)]
    ids = rng.integers(0, VOCAB, args.tokens)
    s = SHAPES[shape]
    log(f"[demo] decoder block {shape} (hidden {s.hidden}, inter {s.inter}, heads "
        f"{s.heads}/{s.kv_heads}), {args.tokens} tokens, config {cfg.name!r} "
        f"({cfg.rows}x{cfg.cols} array), weights {wformat}"
        + (f" in groups of {args.group_size}" if wformat != "int8" else ""))
    t0 = time.perf_counter()
    cm = compile_llm(cfg, quantize_model(model, calib), max_len=max_len, prefill=[T],
                     decode=[], wformat=wformat, group=args.group_size, head=False)
    prog = cm.programs[f"prefill{T}"]
    log(f"[compile] every op of the block in one program: {len(prog)} instructions, "
        f"{len(cm.kernels)} linear layers, in {time.perf_counter() - t0:.1f}s")
    return shape, model, cm, ids, T


def _run(cm, ids, T, runner, golden):
    """The block on ``runner`` and on the golden model; returns (RTL output int8 [hidden,
    tokens], stats, wall seconds, bit-exact)."""
    from sw.executor import Session
    hidden, n = cm.model.hidden_size, len(ids)
    outs, sts, wall = [], [], 0.0
    for ex in (runner, golden):
        s = Session(ex, cm.memory, cm.programs)
        s.write(f"x@{T}", cm.embed_slot(ids, T))
        t0 = time.perf_counter()
        st = s.run(f"prefill{T}")
        if ex is runner:
            wall = time.perf_counter() - t0
        if st["error"]:
            raise UserError(f"the block stopped with error {st['error']}")
        outs.append(s)
        sts.append(st)
    rtl, gold = outs
    kv = [f"L0.{t}{g}" for g in range(cm.model.num_key_value_heads) for t in "kv"]
    same = all((rtl.read(name) == gold.read(name)).all() for name in [f"x@{T}", *kv])
    return rtl.read(f"x@{T}")[:hidden, :n], sts[0], wall, bool(same)


#: the preset each engine's demo runs on unless --config names another
DEFAULT_CONFIG = {"lut": "lut", "bitserial": "bitserial"}
#: each engine's weight format unless --wformat (or --wbits) names another
DEFAULT_WFORMAT = {"systolic": "int8", "lut": "w2", "bitserial": "bitmod4"}


def _wformat(args):
    """The weight format of the demo's linear layers, which must run on ``--engine``."""
    from compiler.quantize import weight_format
    if args.wbits is not None:
        if args.engine != "lut" or args.wformat:
            raise UserError("--wbits selects low-bit weights for the LUT engine: use it "
                            "with --engine lut and without --wformat")
        return "ternary" if args.wbits == "ternary" else f"w{args.wbits}"
    if not args.wformat:
        return DEFAULT_WFORMAT[args.engine]
    try:
        fmt = weight_format(args.wformat)
    except ValueError as e:
        raise UserError(str(e)) from None
    if fmt.engine.name.lower() != args.engine:
        raise UserError(f"weight format {fmt.name!r} runs on the "
                        f"{fmt.engine.name.lower()} engine, not {args.engine!r}")
    return fmt.name


def cmd_demo(args):
    from sw.golden import Machine
    from .generate import UNITS

    cfg = load_config(args.config or DEFAULT_CONFIG.get(args.engine, "default"))
    wformat = _wformat(args)
    quiet = args.json
    log = (lambda m: None) if quiet else say
    shape, model, cm, ids, T = _compile(args, cfg, wformat, log)
    runner = executor("verilator", cfg, quiet=quiet, timeline=bool(args.timeline))
    log("[run] the block on the Verilated accelerator and on the golden model")
    out, st, wall, exact = _run(cm, ids, T, runner, Machine(cfg))
    if args.timeline:
        from pathlib import Path
        write_timeline(runner.timeline, Path(args.timeline) / "block.json")
    y = out.T.astype(float) * cm.quant.scales["0.xb"]
    ref = _float_block_out(model, ids)
    ref_q = _float_block_out(_with_weights(model, cm), ids)
    err, err_q = float(abs(y - ref).max()), float(abs(y - ref_q).max())
    cycles, macs = st["cycles"], st["macs"]
    peak = max(k.peak for k in cm.kernels.values())
    linears = [{"name": name.split(".", 1)[1], "m": len(ids), "k": k.k, "n": k.n,
                "engine": k.engine.name.lower(), "peak": k.peak, "macs": len(ids) * k.k * k.n}
               for name, k in cm.kernels.items()]
    result = {
        "config": cfg.name, "shape": shape,
        "tokens": len(ids), "weights": wformat, "engine": args.engine,
        "bit_exact": exact,
        "cycles": cycles,
        "macs": macs,
        "macs_per_cycle": macs / cycles,
        "peak_macs_per_cycle": peak,
        "utilization": macs / (cycles * peak),
        "sim_cycles_per_s": cycles / wall if wall else 0.0,
        "max_abs_err_vs_float": err,
        "max_abs_err_vs_float_quantized_weights": err_q,
        "max_abs_float": float(abs(ref).max()),
        "unit_busy_share": {u.removesuffix("_busy"): st.get(u, 0) / cycles for u in UNITS
                            if st.get(u)},
        "instructions": len(cm.programs[f"prefill{T}"]),
        "linears": linears,
    }
    if args.json:
        print(json.dumps(result))
    else:
        print(f"\n{'linear layer':<14}{'M x K x N':>22}{'engine':>11}")
        for k in linears:
            print(f"{k['name']:<14}{k['m']:>6} x{k['k']:>6} x{k['n']:>6}{k['engine']:>11}")
        print("\nunit busy share         : " + ", ".join(
            f"{u} {v:.0%}" for u, v in result["unit_busy_share"].items()))
        print(f"bit-exact RTL vs golden : {exact} (block output and KV cache)")
        print(f"cycles                  : {cycles}")
        print(f"MACs / cycle            : {result['macs_per_cycle']:.1f} of {peak:.0f} peak "
              f"({result['utilization']:.1%}, attention included)")
        print(f"simulation speed        : {result['sim_cycles_per_s'] / 1e3:.0f}k cycles/s")
        print(f"max |int8 - float torch|: {err:.4f} (outputs up to {result['max_abs_float']:.2f})")
        print(f"  same, float model with the kernels' quantized weights: {err_q:.4f}")
    return 0 if exact else EXIT_MISMATCH


def add_parsers(sub):
    d = sub.add_parser("demo", help="run a whole decoder block on Verilator, check it")
    d.add_argument("--config", help="configuration (default: 'default'; 'lut' or "
                   "'bitserial' with that --engine)")
    d.add_argument("--shape", help="block shape (smollm2-135m, qwen2.5-0.5b, toy, ...)")
    d.add_argument("--tokens", type=positive_int, default=16)
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--json", action="store_true")
    d.add_argument("--engine", choices=list(DEFAULT_WFORMAT), default="systolic",
                   help="engine for the linear layers (lut: low-bit weights by table "
                   "lookup; bitserial: 4-bit codes of several data types, BitMoD)")
    d.add_argument("--wformat", help="weight format on that engine (default int8, w2, "
                   "bitmod4; `llmaccel compile --help` lists them)")
    d.add_argument("--wbits", choices=["1", "2", "3", "4", "ternary"],
                   help="LUT engine weight width (the format w1..w4 or ternary)")
    d.add_argument("--group-size", type=positive_int, default=128,
                   help="low-bit weights: input features per group scale (default 128)")
    d.add_argument("--timeline", metavar="DIR", help="write the block's timeline here "
                   "(Perfetto JSON and a utilisation PNG)")
    d.set_defaults(fn=cmd_demo)
