"""Train the small character-level LLaMA model that ships in models/charlm/.

    python models/train_charlm.py [--seconds 45] [--out models/charlm]

The text is models/charlm/corpus.txt (a fixed snapshot of the project's user guide and
architecture notes, printable ASCII). The model is a 2-layer LLaMA (GQA, RoPE, SwiGLU,
RMSNorm, tied embeddings) small enough for the `tiny` configuration; training stops after
``--seconds`` of wall time (2 CPU cores) or ``--steps`` steps, and the last 10% of the text
is held out. It writes config.json, model.safetensors and tokenizer.json (the characters).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from compiler.models import LlamaModel, ModelConfig, save_model  # noqa: E402

CHARS = "\n" + "".join(chr(c) for c in range(32, 127))
CONFIG = ModelConfig(hidden_size=64, intermediate_size=128, num_attention_heads=4,
                     num_key_value_heads=2, num_hidden_layers=2, vocab_size=len(CHARS),
                     head_dim=16, rope_theta=10000.0, rms_norm_eps=1e-5,
                     tie_word_embeddings=True, max_position_embeddings=64)


def encode(text):
    index = {c: i for i, c in enumerate(CHARS)}
    return np.array([index.get(c, index["?"]) for c in text], np.int64)


def split(ids):
    cut = int(len(ids) * 0.9)
    return ids[:cut], ids[cut:]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=45.0)
    ap.add_argument("--steps", type=int, default=4000)
    ap.add_argument("--out", default=str(ROOT / "models" / "charlm"))
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    torch.manual_seed(args.seed)
    torch.set_num_threads(2)
    text = (ROOT / "models" / "charlm" / "corpus.txt").read_text()
    train, held = split(encode(text))
    model = LlamaModel(CONFIG)
    with torch.no_grad():
        model.embed_tokens.weight.normal_(0, 0.5)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.01)
    seq, batch = CONFIG.max_position_embeddings, 16
    rng = np.random.default_rng(args.seed)
    t0, step = time.time(), 0
    while step < args.steps and time.time() - t0 < args.seconds:
        starts = rng.integers(0, len(train) - seq - 1, batch)
        x = torch.from_numpy(np.stack([train[s:s + seq] for s in starts]))
        y = torch.from_numpy(np.stack([train[s + 1:s + seq + 1] for s in starts]))
        emb = model.embed_tokens(x)
        for blk in model.layers:
            emb = blk(emb)
        logits = model.lm_head(model.norm(emb))
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, CONFIG.vocab_size),
                                                 y.reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
        step += 1
        if step % 200 == 0:
            print(f"step {step}: loss {loss.item():.3f} ({time.time() - t0:.0f} s)",
                  flush=True)
    model.eval()
    with torch.no_grad():
        xs = torch.from_numpy(held[:len(held) // seq * seq].reshape(-1, seq))
        emb = model.embed_tokens(xs[:, :-1])
        for blk in model.layers:
            emb = blk(emb)
        logits = model.lm_head(model.norm(emb))
        acc = (logits.argmax(-1) == xs[:, 1:]).float().mean().item()
    print(f"{step} steps in {time.time() - t0:.0f} s; held-out next-character accuracy "
          f"{acc:.3f}")
    save_model(model, args.out, tokenizer={"type": "chars", "chars": CHARS})
    return 0


if __name__ == "__main__":
    sys.exit(main())
