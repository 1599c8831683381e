"""Models as users name them: a model directory or a built-in name, a character tokenizer,
and calibration sequences."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from sw.errors import UserError

__all__ = ["load", "encode", "calibration"]


def load(spec, seed=0):
    """(model, tokenizer or None, calibration text or None) for ``spec``: a GGUF file, a
    directory (config.json + model.safetensors, optionally tokenizer.json and corpus.txt)
    or the name of a built-in random model. A quantized file's model carries its integer
    weights as ``model.qweights`` (compiler.llmquant.quantize_model keeps them)."""
    from .models import MODELS, load_model, make_model
    path = Path(spec)
    if path.is_file():
        from .ggufload import is_gguf, load_gguf
        if not is_gguf(path):
            raise UserError(f"--model {spec}: not a GGUF file (a model is a GGUF file, a "
                            f"directory with config.json, or a built-in name)")
        return load_gguf(path)[0], None, None
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
    raise UserError(f"--model {spec}: neither a model file or directory nor a built-in "
                    f"model ({', '.join(MODELS)})")


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
