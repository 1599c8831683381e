"""``llmaccel inspect``: what a model file holds and where each tensor would run."""

from __future__ import annotations

import numpy as np

from hw.engines import spec
from .lower import Target
from .quantize import weight_format
from .qweight import placement, weight_error

__all__ = ["inspect_file", "inspect_gguf", "inspect_checkpoint", "format_report"]


def engine_bits(cfg, qw, fmt):
    """Bits per weight the kernels stream: the engine's weight entries plus the int16 group
    multipliers (scale, and offset where there is one)."""
    f = weight_format(fmt)
    es = spec(Target(cfg).engine_for(f))
    wbits = 8 if es.name == "systolic" else f.wbits
    per_group = (qw.scale.shape[1] > 1 or qw.offset is not None) * \
        (1 + (qw.offset is not None)) * 16 / qw.group
    return wbits + per_group, es.name


def tensor_row(cfg, info, qw, *, wformat="int8"):
    """One tensor's line of the report (a dict)."""
    rows = {"tensor": info.name, "type": info.kind, "shape": list(info.shape),
            "file_bytes": info.nbytes,
            "file_bits_per_weight": 8 * info.nbytes / int(np.prod(info.shape))}
    if info.key is None:
        what = "host: embedding lookup" if info.name == "token_embd.weight" else \
            "SFU: int16 norm weights" if len(info.shape) == 1 else "host"
        return dict(rows, runs_on=what, exact=None)
    if qw is None:                                  # a float linear layer
        f = weight_format(wformat)
        return dict(rows, runs_on=f"{Target(cfg).engine_for(f).name.lower()} {f.name} "
                    f"(from float)", codes_kept=False, exact=False)
    place = placement(cfg, qw)
    if not place.exact:
        return dict(rows, runs_on=f"--requantize: {place.fmt}", codes_kept=False,
                    exact=False, why=place.why)
    bits, eng = engine_bits(cfg, qw, place.fmt)
    err, top = weight_error(qw)
    return dict(rows, runs_on=f"{eng} {place.fmt}", codes_kept=True, exact=err == 0,
                engine_bits_per_weight=bits, max_weight_error=err,
                relative_weight_error=err / top if top else 0.0)


def inspect_gguf(path, cfg, *, wformat="int8"):
    """The report for a GGUF file on configuration ``cfg`` (a dict)."""
    from .ggufload import read_gguf
    g = read_gguf(path)
    model = _model(g.config)
    rows = [tensor_row(cfg, i, g.qweights.get(i.key), wformat=wformat) for i in g.info]
    return {"file": str(path), "format": "gguf", "architecture": g.arch,
            "config": cfg.name, "model": model, "tensors": rows}


def _model(c):
    return {k: getattr(c, k) for k in (
        "hidden_size", "intermediate_size", "num_attention_heads", "num_key_value_heads",
        "num_hidden_layers", "vocab_size", "head_dim", "rope_theta", "rms_norm_eps",
        "tie_word_embeddings", "max_position_embeddings")}


def inspect_checkpoint(path, cfg, *, wformat="int8"):
    """The report for a Hugging Face model directory (float, GPTQ, AWQ or BitNet)."""
    import json
    from pathlib import Path
    from .ggufload import TensorInfo
    from .hfquant import read_tensors
    from .models import hf_name, load_model
    d = Path(path)
    tensors = read_tensors(d)           # read once: the model and the byte counts share them
    model = load_model(d, tensors)
    qc = json.loads((d / "config.json").read_text()).get("quantization_config") or {}
    qws = getattr(model, "qweights", {})
    rows = []
    for name, p in model.state_dict().items():
        if name == "lm_head.weight" and model.config.tie_word_embeddings:
            continue
        hf = hf_name(name)
        prefix = hf.removesuffix(".weight")
        parts = name.split(".")
        key = f"{parts[1]}.{parts[2]}" if len(parts) == 4 and parts[2].endswith("proj") \
            else "lm_head" if name == "lm_head.weight" else None
        qw = qws.get(key)
        stored = [v for k, v in tensors.items() if k == hf or
                  (qw is not None and k.startswith(prefix + "."))]
        kind = qw.kind if qw is not None else str(stored[0].dtype) if stored else "?"
        info = TensorInfo(hf, kind, tuple(p.shape), sum(int(v.nbytes) for v in stored),
                          key if len(p.shape) == 2 and name != "embed_tokens.weight" else None)
        if info.name == "model.embed_tokens.weight":
            info.name = "token_embd.weight"
        rows.append(tensor_row(cfg, info, qw, wformat=wformat))
    return {"file": str(path), "format": "safetensors" + (f" ({qc.get('quant_method')})"
                                                          if qc else ""),
            "architecture": "llama", "config": cfg.name, "model": _model(model.config),
            "tensors": rows}


def inspect_file(path, cfg, *, wformat="int8"):
    """The report for a GGUF file or a model directory."""
    from pathlib import Path
    from sw.errors import UserError
    from .ggufload import is_gguf
    path = Path(path)
    if path.is_dir():
        return inspect_checkpoint(path, cfg, wformat=wformat)
    if not path.exists():
        raise UserError(f"{path}: no such file or directory")
    if not is_gguf(path):
        raise UserError(f"{path}: not a GGUF file or a model directory")
    return inspect_gguf(path, cfg, wformat=wformat)


def format_report(rep):
    """The report as text lines."""
    items = [f"{k} {v}" for k, v in rep["model"].items()]
    out = [f"{rep['file']}: {rep['format'].upper()}, architecture {rep['architecture']}",
           "  " + ", ".join(items[:6]), "  " + ", ".join(items[6:]),
           f"mapped onto config {rep['config']!r}:"]
    tw = max(len(r["tensor"]) for r in rep["tensors"])
    kw = max(len(r["type"]) for r in rep["tensors"])
    out.append(f"  {'tensor':{tw}} {'type':{kw}} {'shape':>11} {'bytes':>9} {'bits/w':>6}  "
               f"{'runs on':26} {'codes':5} {'weight err':>10}")
    for r in rep["tensors"]:
        shape = "x".join(map(str, r["shape"]))
        kept = {None: "", True: "kept", False: "new"}[r.get("codes_kept")]
        err = "" if "relative_weight_error" not in r else "exact" if r["exact"] else \
            f"{r['relative_weight_error']:.1e}"
        out.append(f"  {r['tensor']:{tw}} {r['type']:{kw}} {shape:>11} {r['file_bytes']:>9} "
                   f"{r['file_bits_per_weight']:>6.2f}  {r['runs_on']:26} {kept:5} "
                   f"{err:>10}")
    out += [f"note: {w}" for w in sorted({r["why"] for r in rep["tensors"] if "why" in r})]
    out.append("codes: the file's integer codes kept, or new ones (quantized from float or "
               "re-quantized); weight err: max |engine weight - file weight| / max |file "
               "weight|, from the int16 group multipliers")
    return out
