"""Whole models on the accelerator: accuracy of the trained model, decode and prefill cycles
of SmolLM2-135M-shaped layers, bandwidth and engine utilisation, instruction bytes.

    python -m benchmarks.llm [--lengths 128,512,2048]

Accuracy (models/charlm, trained by models/train_charlm.py): on held-out windows of its
text, the accelerator's next-token choice (golden model; the RTL equals it bit for bit, as
tests/test_llm.py checks) against the float model's and against the text.

Throughput (fast runner, `default` int8 and `lut` W4): SmolLM2-135M-shaped models of 1 and
2 layers with the LM head (random weights; the cycles do not depend on them). Decode runs
one token at the last position of each KV length; the per-layer cost is the difference
between the two, and the 30-layer figures are extrapolated from it (not run). Bus busy is
bytes moved (DMA reads and writes and instruction fetch) / (cycles x the memory's bytes per
cycle); prefill utilisation is MACs / (cycles x the array's MACs per cycle). Instruction
bytes: the decode programs of every bucket up to the longest length, against one program
per length.
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
from .common import RESULTS, ROOT, save, table

CHARLM = ROOT / "models" / "charlm"


def _chars():
    import json
    return json.loads((CHARLM / "tokenizer.json").read_text())["chars"]


def _charlm(cfg, wformat):
    """The trained model, its held-out text (ids), and its programs on ``cfg``."""
    model = load_model(CHARLM)
    chars = _chars()
    index = {c: i for i, c in enumerate(chars)}
    ids = np.array([index.get(c, index["?"]) for c in (CHARLM / "corpus.txt").read_text()])
    cut = int(len(ids) * 0.9)
    train, held = ids[:cut], ids[cut:]
    rng = np.random.default_rng(0)
    calib = [train[s:s + 64] for s in rng.integers(0, len(train) - 64, 8)]
    cm = compile_llm(cfg, quantize_model(model, calib), wformat=wformat)
    return model, chars, held, cm


def accuracy(config="tiny", wformat="int8", positions=256):
    """Top-1 agreement with float and next-character accuracy over ``positions`` held-out
    positions (teacher-forced: each window prefilled, every position's logits compared)."""
    cfg = load_config(config)
    model, chars, held, cm = _charlm(cfg, wformat)
    t = cm.prefill[-1]
    s = Session(Machine(cfg), cm.memory, cm.programs)
    agree = acc_q = acc_f = total = 0
    for w in range(-(-positions // t)):
        seq = held[w * (t + 1):(w + 1) * (t + 1)]
        x, truth = seq[:t], seq[1:]
        s.write(f"x@{t}", cm.embed_slot(x, t))
        assert s.run(f"prefill{t}")["error"] is None
        q = s.read(f"logits@{t}")[:len(chars), :t].argmax(0)
        f = float_forward(model, x).numpy().argmax(-1)
        n = min(t, positions - total)
        agree += int((q == f)[:n].sum())
        acc_q += int((q == truth)[:n].sum())
        acc_f += int((f == truth)[:n].sum())
        total += n
    return {"config": cfg.name, "wformat": wformat, "tokens": total,
            "top1_agreement": agree / total, "next_token_accuracy_accel": acc_q / total,
            "next_token_accuracy_float": acc_f / total}


def site_errors(config="tiny", wformat="int8", windows=2):
    """Each activation site of the whole model on chip against the float model on the same
    held-out tokens: the accelerator's int8 values (golden model, the program run up to
    where the site's slot is final) times the site's scale against float. Per site: the
    relative RMS error and the mean absolute error in steps of the site's scale."""
    from sw.program import Program
    from hw.isa import Opcode, encode
    cfg = load_config(config)
    model, _, held, cm = _charlm(cfg, wformat)
    t = cm.prefill[-1]
    prog, marks = cm.programs[f"prefill{t}"], cm.sites[f"prefill{t}"]
    err = {site: [0.0, 0.0, 0.0, 0] for _, _, site in marks}   # sum d^2, f^2, |d|/s, count
    for w in range(windows):
        x = held[w * t:(w + 1) * t]
        ref = {}

        def keep(name, v):      # RoPE'd q, k come as [heads, tokens, head_dim]
            v = v.transpose(0, 1) if v.dim() == 3 else v
            ref[name] = v.reshape(t, -1).numpy().astype(float)
        float_forward(model, x, keep)
        for n, slot, site in marks:
            part = Program(prog.words[:n] + [encode(Opcode.END)], prog.config_hash)
            s = Session(Machine(cfg), cm.memory, {"part": part})
            s.write(f"x@{t}", cm.embed_slot(x, t))
            st = s.run("part")
            assert st["error"] is None, st["error"]
            f = ref[site]
            sc = cm.quant.scales[site]
            q = s.read(f"{slot}@{t}")[:f.shape[1], :t].T.astype(float) * sc
            e = err[site]
            e[0] += float(((q - f) ** 2).sum())
            e[1] += float((f ** 2).sum())
            e[2] += float(np.abs(q - f).sum() / sc)
            e[3] += f.size
    return {"config": cfg.name, "wformat": wformat, "tokens": windows * t,
            "sites": {site: {"rel_rms": (e[0] / e[1]) ** 0.5, "mean_abs_steps": e[2] / e[3]}
                      for site, e in err.items()}}


def _smollm(cfg, layers, wformat, decode, prefill):
    shape = dataclasses.replace(MODELS["smollm2-135m"], num_hidden_layers=layers,
                                max_position_embeddings=max(decode))
    model = make_model(shape, seed=0)
    rng = np.random.default_rng(0)
    qm = quantize_model(model, [rng.integers(0, shape.vocab_size, 64) for _ in range(2)])
    return compile_llm(cfg, qm, max_len=max(decode), prefill=prefill, decode=decode,
                       wformat=wformat)


def decode_runs(config, wformat, layers, lengths, buckets=None):
    """Decode of one token at the last position of each cache length (its bucket's
    longest attention), on the fast runner."""
    from sim.fast import FastRunner
    cfg = load_config(config)
    cm = _smollm(cfg, layers, wformat, sorted(set(buckets or lengths)), [2 * cfg.rows])
    s = Session(FastRunner(cfg, quiet=True), cm.memory, cm.programs)
    R, out = cfg.rows, []
    for n in lengths:
        pos = n - 1
        s.write(f"x@{R}", cm.embed_slot(np.array([1]), R, pos % R))
        st = s.run(f"decode{cm.decode_bucket(pos)}", pos)
        assert st["error"] is None, st["error"]
        # every byte the bus moves: the DMA's reads and writes and the instruction fetch
        out.append({"kv_len": n, "cycles": st["cycles"],
                    "bytes": st["bytes_read"] + st["bytes_written"] + st["fetch_bytes"]})
    return out, {k: 16 * len(p) for k, p in cm.programs.items()}


def decode_table(config="default", wformat="int8", lengths=(128, 512, 2048), layers_to=30):
    """Cycles per token of 1 and 2 measured layers (+ LM head) at each cache length; the
    per-layer cost is the difference, extrapolated to ``layers_to`` layers."""
    cfg = load_config(config)
    bw = cfg.mem_bytes_per_cycle
    one, sizes = decode_runs(config, wformat, 1, lengths,
                                buckets=[16 << i for i in range(8)] if wformat == "int8"
                                and config == "default" else None)
    two, _ = decode_runs(config, wformat, 2, lengths)
    rows = []
    for a, b in zip(one, two):
        layer_c = b["cycles"] - a["cycles"]
        layer_b = b["bytes"] - a["bytes"]
        head_c = a["cycles"] - layer_c
        full_c = head_c + layers_to * layer_c
        full_b = a["bytes"] + (layers_to - 1) * layer_b
        rows.append({"config": cfg.name, "wformat": wformat, "kv_len": a["kv_len"],
                     "cycles_1layer": a["cycles"], "cycles_2layers": b["cycles"],
                     "cycles_per_layer": layer_c, "layer_bus_busy": layer_b / (layer_c * bw),
                     f"cycles_{layers_to}layers": full_c,
                     f"bus_busy_{layers_to}layers": full_b / (full_c * bw),
                     f"tokens_per_s_{layers_to}layers": cfg.clock_mhz * 1e6 / full_c,
                     "tokens_per_s_1layer": cfg.clock_mhz * 1e6 / a["cycles"]})
    return rows, sizes


def instruction_bytes(sizes, max_len=2048):
    """Decode programs stored per bucket (powers of two) against one program per length
    (each length's size interpolated linearly between the measured buckets)."""
    dec = sorted((int(k[6:]), v) for k, v in sizes.items() if k.startswith("decode"))
    ls, vs = [b for b, _ in dec], [v for _, v in dec]
    per_length = float(np.interp(np.arange(1, max_len + 1), ls, vs).sum())
    return {"buckets": {f"decode{b}": v for b, v in dec}, "bucketed_total": sum(vs),
            "one_per_length_total": per_length}


def prefill_run(config="default", tokens=128):
    from sim.fast import FastRunner
    cfg = load_config(config)
    cm = _smollm(cfg, 1, "int8", [tokens], [tokens])
    s = Session(FastRunner(cfg, quiet=True), cm.memory, cm.programs)
    rng = np.random.default_rng(1)
    s.write(f"x@{tokens}", cm.embed_slot(rng.integers(0, cm.model.vocab_size, tokens), tokens))
    st = s.run(f"prefill{tokens}")
    assert st["error"] is None, st["error"]
    return {"config": cfg.name, "tokens": tokens, "cycles": st["cycles"],
            "util": st["macs"] / (st["cycles"] * cfg.rows * cfg.cols)}


def _decode_rows(rows):
    return table(["config", "weights", "KV len", "cycles/layer", "layer bus busy",
                  "1 layer tok/s", "30-layer cycles", "30-layer bus busy", "30-layer tok/s"],
                 [[d["config"], d["wformat"], d["kv_len"], d["cycles_per_layer"],
                   f"{d['layer_bus_busy']:.3f}", f"{d['tokens_per_s_1layer']:.1f}",
                   d["cycles_30layers"], f"{d['bus_busy_30layers']:.3f}",
                   f"{d['tokens_per_s_30layers']:.2f}"] for d in rows])


def _site_table(res):
    sites = list(res[0]["sites"])
    return table(["site"] + [f"{r['config']} {r['wformat']}" for r in res],
                 [[site] + [f"{r['sites'][site]['rel_rms']:.3f} "
                            f"({r['sites'][site]['mean_abs_steps']:.2f})" for r in res]
                  for site in sites])


def run(lengths=(128, 512, 2048), configs=("default", "lut"), parts=("accuracy", "sites",
                                                                    "decode")):
    """Each table is printed (and the JSON saved) as soon as it is measured; the parts not
    measured keep their earlier results."""
    import json
    prev = RESULTS / "llm.json"
    out = {k: v for k, v in json.loads(prev.read_text()).items() if k != "machine"} \
        if prev.exists() else {}
    if "accuracy" in parts:
        accs = [accuracy("tiny"), accuracy("default"), accuracy("lut", "w4"),
                accuracy("lut", "w2")]
        out["accuracy"] = accs
        print(f"Trained character model (models/charlm), {accs[0]['tokens']} held-out "
              f"positions, teacher-forced")
        print(table(["config", "weights", "top-1 agreement with float", "next-token acc",
                     "(float)"],
                    [[a["config"], a["wformat"], f"{a['top1_agreement']:.3f}",
                      f"{a['next_token_accuracy_accel']:.3f}",
                      f"{a['next_token_accuracy_float']:.3f}"] for a in accs]), flush=True)
        save("llm", out)
    if "sites" in parts:
        res = out["site_errors"] = [site_errors("tiny"), site_errors("lut", "w4"),
                                    site_errors("lut", "w2")]
        print("\nThe trained model's activation sites on chip against float (layer.site, "
              "float_forward's names), one prefill window: relative RMS error (mean |error| "
              "in steps of the site's scale)")
        print(_site_table(res), flush=True)
        save("llm", out)
    if "decode" not in parts:
        print(f"-> {save('llm', out)}")
        return out
    out["decode"] = [r for r in out.get("decode", []) if r["config"] not in configs]
    for config in configs:
        rows, sizes = decode_table(config, "int8" if config == "default" else "w4", lengths)
        out["decode"] += rows
        print(f"\nDecode on {config}, SmolLM2-135M shapes: 1 and 2 layers + LM head measured "
              f"(fast runner); 30 layers extrapolated from the per-layer difference")
        print(_decode_rows(rows), flush=True)
        if config == "default":
            ib = out["instruction_bytes"] = instruction_bytes(sizes, max(lengths))
            print(f"\nDecode instruction bytes (1 layer + LM head) up to {max(lengths)} "
                  f"positions")
            ibrows = [[k, v] for k, v in ib["buckets"].items()]
            ibrows += [["all buckets", ib["bucketed_total"]],
                       ["one program per length (interpolated)",
                        int(ib["one_per_length_total"])]]
            print(table(["programs", "bytes"], ibrows), flush=True)
            pre = out["prefill"] = prefill_run()
            print(f"\nPrefill of {pre['tokens']} tokens, 1 layer + LM head on "
                  f"{pre['config']}: {pre['cycles']} cycles, {pre['util']:.3f} of peak MACs",
                  flush=True)
        save("llm", out)
    print(f"-> {save('llm', out)}")
    return out


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lengths", default="128,512,2048", help="KV-cache lengths for decode")
    ap.add_argument("--configs", default="default,lut", help="decode on these (lut: W4)")
    ap.add_argument("--parts", default="accuracy,sites,decode", help="what to measure")
    a = ap.parse_args()
    run(tuple(int(p) for p in a.lengths.split(",")), tuple(a.configs.split(",")),
        tuple(a.parts.split(",")))
