"""Whole models on the accelerator: accuracy of the trained model, decode and prefill cycles
of SmolLM2-135M-shaped layers, bandwidth and engine utilisation, instruction bytes.

    python -m benchmarks.llm [--layers 2] [--positions 100,400]

Accuracy (models/charlm, trained by models/train_charlm.py): on held-out windows of its
text, the accelerator's next-token choice (golden model; the RTL equals it bit for bit, as
tests/test_llm.py checks) against the float model's and against the text.

Throughput (fast runner, `default`): a SmolLM2-135M-shaped model with ``--layers`` layers
(random weights; the cycles do not depend on them) and its LM head. Decode runs one token
at each of ``--positions``; bandwidth utilisation is bytes read / (cycles x the memory's
bytes per cycle); prefill utilisation is MACs / (cycles x the array's MACs per cycle).
"""

import argparse
import dataclasses

import numpy as np

from compiler.llm import compile_llm
from compiler.llmquant import float_forward, quantize_model
from compiler.models import MODELS, load_model, make_model
from hw.config import load_config
from sw.executor import Session
from sw.golden import Machine
from .common import ROOT, save, table

CHARLM = ROOT / "models" / "charlm"


def _chars():
    import json
    return json.loads((CHARLM / "tokenizer.json").read_text())["chars"]


def accuracy(config="tiny", windows=8):
    """Top-1 agreement with float and next-character accuracy on held-out text."""
    cfg = load_config(config)
    model = load_model(CHARLM)
    chars = _chars()
    index = {c: i for i, c in enumerate(chars)}
    ids = np.array([index.get(c, index["?"]) for c in (CHARLM / "corpus.txt").read_text()])
    cut = int(len(ids) * 0.9)
    train, held = ids[:cut], ids[cut:]
    rng = np.random.default_rng(0)
    calib = [train[s:s + 64] for s in rng.integers(0, len(train) - 64, 8)]
    cm = compile_llm(cfg, quantize_model(model, calib))
    t = cm.prefill[-1]
    s = Session(Machine(cfg), cm.memory, cm.programs)
    agree = acc_q = acc_f = total = 0
    for w in range(windows):
        seq = held[w * (t + 1):(w + 1) * (t + 1)]
        x, truth = seq[:t], seq[1:]
        s.write(f"x@{t}", cm.embed_slot(x, t))
        assert s.run(f"prefill{t}")["error"] is None
        q = s.read(f"logits@{t}")[:len(chars), :t].argmax(0)
        f = float_forward(model, x).numpy().argmax(-1)
        agree += int((q == f).sum())
        acc_q += int((q == truth).sum())
        acc_f += int((f == truth).sum())
        total += t
    return {"config": cfg.name, "tokens": total, "top1_agreement": agree / total,
            "next_token_accuracy_accel": acc_q / total, "next_token_accuracy_float": acc_f / total}


def throughput(layers=2, positions=(100, 400), prefill=128, config="default"):
    from sim.fast import FastRunner
    cfg = load_config(config)
    shape = dataclasses.replace(MODELS["smollm2-135m"], num_hidden_layers=layers,
                                max_position_embeddings=512)
    model = make_model(shape, seed=0)
    rng = np.random.default_rng(0)
    qm = quantize_model(model, [rng.integers(0, shape.vocab_size, 64) for _ in range(2)])
    cm = compile_llm(cfg, qm, max_len=512, prefill=[prefill],
                     decode=[128, 512])
    s = Session(FastRunner(cfg, quiet=True), cm.memory, cm.programs)
    s.write(f"x@{prefill}", cm.embed_slot(rng.integers(0, shape.vocab_size, prefill), prefill))
    pre = s.run(f"prefill{prefill}")
    out = {"config": cfg.name, "layers": layers, "prefill_tokens": prefill,
           "prefill_cycles": pre["cycles"],
           "prefill_util": pre["macs"] / (pre["cycles"] * cfg.rows * cfg.cols),
           "decode": [], "weight_bytes": sum(k.n * k.k for k in cm.kernels.values()),
           "program_bytes": {k: 16 * len(p) for k, p in cm.programs.items()}}
    R = cfg.rows
    for pos in positions:
        s.write(f"x@{R}", cm.embed_slot(np.array([1]), R, pos % R))
        name = f"decode{cm.decode_bucket(pos)}"
        st = s.run(name, pos)
        assert st["error"] is None, st["error"]
        out["decode"].append({"pos": pos, "program": name, "cycles": st["cycles"],
                              "bytes_read": st["bytes_read"],
                              "bw_util": st["bytes_read"] / (st["cycles"]
                                                             * cfg.mem_bytes_per_cycle),
                              "tokens_per_s": cfg.clock_mhz * 1e6 / st["cycles"]})
    return out


def run(layers=2, positions=(100, 400)):
    acc = accuracy()
    print(f"Trained character model (models/charlm) on {acc['config']}, "
          f"{acc['tokens']} held-out tokens")
    print(table(["top-1 agreement with float", "next-token acc (accel)", "(float)"],
                [[f"{acc['top1_agreement']:.3f}", f"{acc['next_token_accuracy_accel']:.3f}",
                  f"{acc['next_token_accuracy_float']:.3f}"]]))
    tp = throughput(layers, positions)
    print(f"\nSmolLM2-135M shapes, {tp['layers']} layers + LM head, on {tp['config']}")
    rows = [[f"decode @ {d['pos']}", d["program"], d["cycles"], f"{d['bw_util']:.3f}",
             f"{d['tokens_per_s']:.1f}"] for d in tp["decode"]]
    rows.append([f"prefill {tp['prefill_tokens']}", f"prefill{tp['prefill_tokens']}",
                 tp["prefill_cycles"], f"util {tp['prefill_util']:.3f}", ""])
    print(table(["run", "program", "cycles", "bandwidth / util", "tokens/s"], rows))
    print(table(["program", "instruction bytes"], sorted(tp["program_bytes"].items())))
    path = save("llm", {"accuracy": acc, "throughput": tp})
    print(f"-> {path}")
    return acc, tp


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--positions", default="100,400")
    a = ap.parse_args()
    run(a.layers, tuple(int(p) for p in a.positions.split(",")))
