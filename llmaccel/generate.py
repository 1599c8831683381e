"""``llmaccel generate``: a whole decoder-only model on the accelerator, token by token."""

from __future__ import annotations

import json

import numpy as np

from hw.config import load_config
from sw.errors import EXIT_MISMATCH, UserError, positive_int, say
from compiler.modelload import calibration, encode, load
from compiler.quantize import FORMATS
from .run import executor

__all__ = ["add_parsers"]


UNITS = ("load_busy", "compute_busy", "array_busy", "lut_busy", "bitserial_busy", "sfu_busy",
         "requant_busy", "store_busy")


def _prompt(args, model, tok):
    given = [a is not None for a in (args.prompt, args.prompt_ids, args.prompt_tokens)]
    if sum(given) > 1:
        raise UserError("give one of --prompt, --prompt-ids and --prompt-tokens")
    if args.prompt_ids is not None:
        try:
            return [int(t) for t in args.prompt_ids.split(",") if t.strip()]
        except ValueError:
            raise UserError(f"--prompt-ids {args.prompt_ids!r}: not comma-separated integers") \
                from None
    if args.prompt is not None:
        if tok is None:
            raise UserError("this model has no character tokenizer: give --prompt-ids or "
                            "--prompt-tokens")
        return encode(tok, args.prompt)
    n = args.prompt_tokens or 4
    return [int(t) for t in np.random.default_rng(args.seed).integers(
        0, model.config.vocab_size, n)]


def _layers(model, n):
    """The model cut to its first ``n`` layers (the final norm and head kept)."""
    import dataclasses
    if n is None:
        return model
    if n > model.config.num_hidden_layers:
        raise UserError(f"--layers {n}: the model has {model.config.num_hidden_layers}")
    model.layers = model.layers[:n]
    object.__setattr__(model, "config", dataclasses.replace(model.config, num_hidden_layers=n))
    return model


def _float_agreement(model, prompt, tokens):
    """Top-1 agreement with float torch, teacher-forced: at each new token, whether the float
    model's choice after the same prefix is that token."""
    from compiler.llmquant import float_forward
    seq = list(prompt) + list(tokens)
    pred = float_forward(model, seq[:-1]).argmax(-1).numpy()
    return float(np.mean(pred[len(prompt) - 1:] == np.array(tokens)))


def cmd_generate(args):
    from compiler.generate import Generator
    from compiler.llm import compile_llm
    from compiler.llmquant import quantize_model
    cfg = load_config(args.config)
    model, tok, corpus = load(args.model, args.seed)
    model = _layers(model, args.layers)
    prompt = _prompt(args, model, tok)
    say(f"calibrating {args.model} ({model.config.num_hidden_layers} layers)")
    qm = quantize_model(model, calibration(model, tok, corpus,
                                           min(64, model.config.max_position_embeddings)))
    cm = compile_llm(cfg, qm, max_len=args.max_len, wformat=args.wformat,
                     requantize=args.requantize, progress=lambda m: say(f"compiling {m}"))
    ex = executor(args.executor, cfg, quiet=args.json)
    gens = [(args.executor, Generator(cm, ex))]
    if args.executor != "golden":
        gens.append(("golden", Generator(cm, executor("golden", cfg))))
    show = (lambda ids: "".join(tok["chars"][i] for i in ids)) if tok else \
        (lambda ids: " ".join(map(str, ids)))

    def on_token(i, t, st):
        say(f"token {i + 1}/{args.tokens}: {show([t])!r}"
            + (f" ({st['cycles']} cycles)" if st.get("cycles") else ""))
    results = [(name, g.generate(prompt, args.tokens, on_token=on_token if k == 0 else None))
               for k, (name, g) in enumerate(gens)]
    out = results[0][1]
    cycles = [st.get("cycles") for _, _, st in out.runs]
    decode = [c for c in cycles[1:] if c]
    report = {"model": args.model, "config": cfg.name, "executor": args.executor,
              "layers": model.config.num_hidden_layers, "wformat": args.wformat,
              "prompt": prompt, "tokens": out.tokens, "text": show(out.tokens),
              "program_bytes": {k: 16 * len(p) for k, p in cm.programs.items()},
              "prefill_cycles": cycles[0], "decode_cycles": decode,
              "top1_agreement_vs_float": _float_agreement(model, prompt, out.tokens)}
    if decode:
        per = float(np.median(decode))
        report["decode_cycles_median"] = per
        report["tokens_per_s"] = cfg.clock_mhz * 1e6 / per
        runs = [st for _, _, st in out.runs[1:]]
        total = sum(st["cycles"] for st in runs)
        report["decode_unit_share"] = {u.removesuffix("_busy"): sum(st.get(u, 0) for st in runs)
                                       / total for u in UNITS}
    if len(results) > 1:
        same = results[1][1].tokens == out.tokens and all(
            np.array_equal(a, b) for a, b in zip(results[1][1].logits, out.logits))
        report["bit_exact"] = same
    if args.json:
        print(json.dumps(report))
    else:
        print(show(prompt) + show(out.tokens) if tok else report["text"])
        say(f"top-1 agreement with float (teacher-forced): "
            f"{report['top1_agreement_vs_float']:.3f}")
        if decode:
            say(f"decode: median {report['decode_cycles_median']:.0f} cycles per token, "
                f"{report['tokens_per_s']:.1f} tokens/s at {cfg.clock_mhz} MHz; prefill "
                f"{cycles[0]} cycles")
            say("decode cycles busy per unit: " + ", ".join(
                f"{u} {v:.0%}" for u, v in report["decode_unit_share"].items() if v))
        if "bit_exact" in report:
            say("bit-exact with the golden model" if report["bit_exact"]
                else "MISMATCH with the golden model")
    return EXIT_MISMATCH if report.get("bit_exact") is False else 0


def add_parsers(sub):
    g = sub.add_parser("generate", help="run a whole model on the accelerator, token by token")
    g.add_argument("--model", default="toy",
                   help="a GGUF file, a model directory (config.json + model.safetensors) or "
                        "a built-in random model (toy, smollm2-135m)")
    g.add_argument("--config", default="tiny")
    g.add_argument("--prompt", help="prompt text (models with a character tokenizer)")
    g.add_argument("--prompt-ids", help="prompt token ids, comma-separated")
    g.add_argument("--prompt-tokens", type=positive_int,
                   help="a seeded random prompt of this many tokens")
    g.add_argument("-n", "--new-tokens", dest="tokens", type=positive_int, default=16,
                   help="new tokens")
    g.add_argument("--layers", type=positive_int, help="use only the first L layers")
    g.add_argument("--wformat", default="int8", choices=list(FORMATS),
                   help="weight format of float linear layers: int8 (systolic engine), "
                        "low-bit (w1-w4, ternary: LUT engine; bitmod3, bitmod4, bs-*: "
                        "bit-serial engine; configurations that build it); a quantized "
                        "file's layers keep their own format")
    g.add_argument("--requantize", action="store_true",
                   help="re-quantize a file's tensors whose format no engine of the "
                        "configuration holds (else that is an error)")
    g.add_argument("--max-len", type=positive_int, help="KV-cache positions")
    g.add_argument("--executor", default="verilator", choices=["golden", "verilator"],
                   help="verilator also runs the golden model and compares every logit")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--json", action="store_true")
    g.set_defaults(fn=cmd_generate)
