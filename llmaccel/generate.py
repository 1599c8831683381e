"""``llmaccel generate``: a whole decoder-only model on the accelerator, token by token."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from hw.config import load_config
from sw.errors import EXIT_MISMATCH, UserError, positive_int, say
from .run import executor

__all__ = ["add_parsers", "load", "calibration"]


def load(spec, seed=0):
    """(model, tokenizer or None, calibration text or None) for ``spec``: a directory
    (config.json + model.safetensors, optionally tokenizer.json and corpus.txt) or the
    name of a built-in random model."""
    from compiler.models import MODELS, load_model, make_model
    path = Path(spec)
    if path.is_dir():
        model = load_model(path)
        tok = None
        if (path / "tokenizer.json").is_file():
            tok = json.loads((path / "tokenizer.json").read_text())
            if tok.get("type") != "chars":
                tok = None
        corpus = (path / "corpus.txt").read_text() if (path / "corpus.txt").is_file() else None
        return model, tok, corpus
    if spec in MODELS:
        return make_model(spec, seed), None, None
    raise UserError(f"--model {spec}: neither a model directory nor a built-in model "
                    f"({', '.join(MODELS)})")


def encode(tok, text):
    index = {c: i for i, c in enumerate(tok["chars"])}
    bad = sorted({c for c in text if c not in index})
    if bad:
        raise UserError(f"the prompt has characters the model does not know: {bad[:5]}")
    return [index[c] for c in text]


def calibration(model, tok, corpus, length, n=4, seed=0):
    """``n`` calibration sequences of ``length`` tokens: from the model's corpus when it
    has one, else seeded random tokens."""
    rng = np.random.default_rng(seed)
    if tok and corpus:
        ids = encode(tok, "".join(c for c in corpus if c in tok["chars"]))
        starts = rng.integers(0, len(ids) - length, n)
        return [np.array(ids[s:s + length]) for s in starts]
    return [rng.integers(0, model.config.vocab_size, length) for _ in range(n)]


def cmd_generate(args):
    from compiler.generate import Generator
    from compiler.llm import compile_llm
    from compiler.llmquant import quantize_model
    cfg = load_config(args.config)
    model, tok, corpus = load(args.model, args.seed)
    if args.prompt is not None and args.prompt_ids is not None:
        raise UserError("give --prompt or --prompt-ids, not both")
    if args.prompt_ids is not None:
        prompt = [int(t) for t in args.prompt_ids.split(",") if t.strip()]
    elif args.prompt is not None:
        if tok is None:
            raise UserError("this model has no character tokenizer: give --prompt-ids")
        prompt = encode(tok, args.prompt)
    else:
        prompt = [1, 2, 3]
    say(f"calibrating {args.model} ({model.config.num_hidden_layers} layers)")
    qm = quantize_model(model, calibration(model, tok, corpus,
                                           min(64, model.config.max_position_embeddings)))
    cm = compile_llm(cfg, qm, max_len=args.max_len, progress=lambda m: say(f"compiling {m}"))
    ex = executor(args.executor, cfg, quiet=args.json)
    gens = [(args.executor, Generator(cm, ex))]
    if args.check and args.executor != "golden":
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
              "prompt": prompt, "tokens": out.tokens, "text": show(out.tokens),
              "programs": {k: len(p) for k, p in cm.programs.items()},
              "prefill_cycles": cycles[0], "decode_cycles": decode}
    if decode:
        per = float(np.median(decode))
        report["decode_cycles_median"] = per
        report["tokens_per_s"] = cfg.clock_mhz * 1e6 / per
    if len(results) > 1:
        same = results[1][1].tokens == out.tokens and all(
            np.array_equal(a, b) for a, b in zip(results[1][1].logits, out.logits))
        report["bit_exact"] = same
    if args.json:
        print(json.dumps(report))
    else:
        print(show(prompt) + show(out.tokens) if tok else report["text"])
        if decode:
            say(f"decode: median {report['decode_cycles_median']:.0f} cycles per token, "
                f"{report['tokens_per_s']:.1f} tokens/s at {cfg.clock_mhz} MHz; prefill "
                f"{cycles[0]} cycles")
        if "bit_exact" in report:
            say("bit-exact with the golden model" if report["bit_exact"]
                else "MISMATCH with the golden model")
    return EXIT_MISMATCH if report.get("bit_exact") is False else 0


def add_parsers(sub):
    g = sub.add_parser("generate", help="run a whole model on the accelerator, token by token")
    g.add_argument("--model", default="toy",
                   help="a model directory (config.json + model.safetensors) or a built-in "
                        "random model (toy, smollm2-135m)")
    g.add_argument("--config", default="tiny")
    g.add_argument("--prompt", help="prompt text (models with a character tokenizer)")
    g.add_argument("--prompt-ids", help="prompt token ids, comma-separated")
    g.add_argument("-n", "--tokens", type=positive_int, default=16, help="new tokens")
    g.add_argument("--max-len", type=positive_int, help="KV-cache positions")
    g.add_argument("--executor", default="verilator", choices=["golden", "verilator"])
    g.add_argument("--check", action="store_true",
                   help="also run the golden model and compare every logit")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--json", action="store_true")
    g.set_defaults(fn=cmd_generate)
