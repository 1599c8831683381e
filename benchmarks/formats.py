"""Quantized model files on the accelerator: per format, the bytes per weight a decode step
streams, cycles per token on `lut` and `default`, and the group multipliers' weight error.

    python -m benchmarks.formats [--configs lut,default] [--formats Q4_0,GPTQ4,...]

Each format is a SmolLM2-135M-shaped model (random weights) written as that file: GGUF by
the `gguf` package's writer (tensors whose rows do not divide into 256-value blocks get
llama.cpp's own fallback type, as `llama-quantize` does: Q4_K -> Q5_0, Q5_K -> Q5_1,
Q6_K -> Q8_0, TQ1_0 / TQ2_0 -> Q4_0), GPTQ / AWQ / BitNet as safetensors checkpoints (groups
of 64: 576 features do not divide into 128). Models of 1 and 2 layers (without the LM
head, whose 28M weights would dominate the simulation) decode one token at KV length 128 on
the fast runner; the per-layer cost is the difference, and "30 layers" is 30 times it (the
head is left out). On `default` (no scaled drain) grouped formats run re-quantized to int8
per channel (`--requantize`); BitNet's one scale per tensor runs there as it is. Bytes per
weight: the layer's weight entries, group multipliers and REQUANT multipliers in the memory
image, over its weights; bus busy: bytes moved / (cycles x bytes per cycle).
"""

import argparse
import dataclasses
import sys
import tempfile
from pathlib import Path

import numpy as np

from compiler.llm import compile_llm
from compiler.llmquant import quantize_model
from compiler.modelload import load
from compiler.models import MODELS, make_model
from compiler.qweight import weight_error
from hw.config import load_config
from sw.executor import Session
from .common import ROOT, save, table

sys.path.insert(0, str(ROOT / "tests"))
import ggufgen  # noqa: E402  (the tests' file writers)
import hfqgen  # noqa: E402

FALLBACK = {"Q4_K": "Q5_0", "Q5_K": "Q5_1", "Q6_K": "Q8_0", "TQ1_0": "Q4_0", "TQ2_0": "Q4_0"}
GGUF = ["F16", "Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q4_K", "Q5_K", "Q6_K", "TQ2_0"]
CHECKPOINTS = {"GPTQ4": ("gptq", dict(bits=4, group=64)),
               "GPTQ4-act": ("gptq", dict(bits=4, group=64, act_order=True)),
               "AWQ4": ("awq", dict(group=64)), "BitNet": ("bitnet", {})}
FORMATS = GGUF + list(CHECKPOINTS)


def _types(model, kind):
    """GGUF type of every tensor: ``kind``, or llama.cpp's fallback where rows do not
    divide into its blocks."""
    from compiler.ggml_blocks import block_size
    if kind == "F16":
        return {"linear": "F16", "embd": "F16"}
    qk = block_size(kind)[0]
    out = {"embd": kind if 576 % qk == 0 else FALLBACK[kind]}
    for i in range(model.config.num_hidden_layers):
        for g, name in ggufgen.LINEARS.items():
            k = getattr(model.layers[i], name).weight.shape[1]
            out[f"blk.{i}.{g}.weight"] = kind if k % qk == 0 else FALLBACK[kind]
    return out


def _file(tmp, fmt, layers):
    shape = dataclasses.replace(MODELS["smollm2-135m"], num_hidden_layers=layers,
                                max_position_embeddings=128)
    model = make_model(shape, seed=0)
    if fmt in CHECKPOINTS:
        method, kw = CHECKPOINTS[fmt]
        path = tmp / f"{fmt}-{layers}"
        hfqgen.write(path, model, method, **kw)
        return path
    return ggufgen.write(tmp / f"{fmt}-{layers}.gguf", model, _types(model, fmt))


def _layer_bytes(cm, weights):
    syms = cm.memory.symbols
    n = sum(s.nbytes() for name, s in syms.items() if name.startswith("L0.")
            and name.split(".")[-1] in ("w", "gmult", "mult", "ones"))
    return n / weights


def measure(config, fmt, tmp, kv=128):
    from sim.fast import FastRunner
    cfg = load_config(config)
    runs = []
    for layers in (1, 2):
        model, _, _ = load(_file(tmp, fmt, layers))
        rng = np.random.default_rng(0)
        qm = quantize_model(model, [rng.integers(0, model.config.vocab_size, 64)
                                    for _ in range(2)])
        cm = compile_llm(cfg, qm, max_len=kv, prefill=[cfg.rows], decode=[kv],
                         requantize=True, head=False)
        s = Session(FastRunner(cfg, quiet=True), cm.memory, cm.programs)
        R = cfg.rows
        s.write(f"x@{R}", cm.embed_slot(np.array([1]), R, (kv - 1) % R))
        st = s.run(f"decode{kv}", kv - 1)
        assert st["error"] is None, st["error"]
        runs.append((st, cm, model))
    (a, cm, model), (b, _, _) = runs
    layer_c = b["cycles"] - a["cycles"]
    layer_b = sum(b[k] - a[k] for k in ("bytes_read", "bytes_written", "fetch_bytes"))
    full = 30 * layer_c
    c = model.config
    weights = sum(getattr(model.layers[0], n).weight.numel() for n in hfqgen.LINEARS)
    qws = [q for k, q in model.qweights.items() if k.startswith("0.")]
    errs = [weight_error(q) for q in qws]
    kinds = sorted({k.kind for n, k in cm.kernels.items() if n.startswith("L0.")},
                   key=str)
    engines = sorted({k.engine.name.lower() + (f" w{k.wbits}" if k.wbits < 8 else "")
                      for n, k in cm.kernels.items() if n.startswith("L0.")})
    return {"config": cfg.name, "format": fmt, "kinds": kinds, "engines": engines,
            "kv_len": kv, "cycles_per_layer": layer_c, "cycles_30layers": full,
            "layer_bus_busy": layer_b / (layer_c * cfg.mem_bytes_per_cycle),
            "tokens_per_s_30layers": cfg.clock_mhz * 1e6 / full,
            "layer_bytes_per_weight": _layer_bytes(cm, weights),
            "file_bits_per_weight": None if not qws else
            8 * sum(_file_bytes(q) for q in qws) / weights,
            "max_rel_weight_error": max((e / t for e, t in errs), default=0.0),
            "hidden": c.hidden_size}


def _file_bytes(qw):
    """Bytes the file format spends on ``qw`` (codes plus its 16-bit scales and offsets)."""
    from compiler.ggml_blocks import TYPES
    n, k = qw.shape
    if qw.kind in TYPES:
        qk, nb, _ = TYPES[qw.kind]
        return n * k // qk * nb
    extra = 16 * qw.scale.size * (1 + (qw.offset is not None)) / 8
    return n * k * qw.bits / 8 + (extra if qw.scale.shape[1] > 1 else 4)


#: on `default` most formats only re-quantize to int8: the float baseline, one re-quantized
#: GGUF type and the one format it holds exactly
DEFAULT_FORMATS = ("F16", "Q4_0", "BitNet")


def run(configs=("lut", "default"), formats=FORMATS):
    rows = []
    with tempfile.TemporaryDirectory() as d:
        for config in configs:
            for fmt in formats:
                if config == "default" and fmt not in DEFAULT_FORMATS:
                    continue
                print(f"{config} {fmt} ...", flush=True)
                rows.append(measure(config, fmt, Path(d)))
                save("formats", {"rows": rows})         # each row as soon as it is measured
    print(table(["config", "format", "types (layer)", "engine", "file bits/w",
                 "streamed bytes/w", "cycles/layer", "bus busy", "30 layers tok/s",
                 "max weight err"],
                [[r["config"], r["format"], "+".join(r["kinds"]), ", ".join(r["engines"]),
                  "" if r["file_bits_per_weight"] is None else
                  f"{r['file_bits_per_weight']:.2f}", f"{r['layer_bytes_per_weight']:.3f}",
                  r["cycles_per_layer"], f"{r['layer_bus_busy']:.1%}",
                  f"{r['tokens_per_s_30layers']:.1f}", f"{r['max_rel_weight_error']:.1e}"]
                 for r in rows]))
    return rows


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--configs", default="lut,default")
    ap.add_argument("--formats", default=",".join(FORMATS))
    a = ap.parse_args(argv)
    run(a.configs.split(","), a.formats.split(","))


if __name__ == "__main__":
    main()
