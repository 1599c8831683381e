"""The bit-serial engine (BitMoD): accuracy at equal bits, the trained model's top-1
agreement, cycles on decode and prefill shapes, and FPGA resources per weight-MAC/cycle.

    python -m benchmarks.bitserial [--parts accuracy,model,cycles,resources]

* accuracy: weights of LLaMA-2-7B and SmolLM2-135M layer shapes (256 output rows each, all
  input features), heavy-tailed (Student-t, 4 degrees of freedom, as LLM weights are), in
  groups of 128 (a short last group padded): the weight error and a layer's output error
  (16 tokens of normal activations) against float, for BitMoD's mixtures, symmetric INT
  (BitMoD's baseline), FP4 E2M1, and the LUT engine's formats, at 3 and 4 bits.
* model: the project's trained model (models/charlm) with every linear layer's weights
  quantized in each format, teacher-forced top-1 agreement with the float model over its
  corpus.
* cycles: one layer compiled for the ``bitserial`` preset and run on the fast runner, bit
  for bit against the golden model, at M = 1 and M = 128 (first 512 output channels).
* resources: the bit-serial array (4 x 16 elements: 128 weight-MACs/cycle at 4 bits) and
  an 8 x 16 int8 systolic array (128 MACs/cycle) synthesized alone by Yosys for ECP5 and
  Xilinx 7-series; fabric = LUT + FF, a DSP counted as the LUTs of an int8 multiplier.

Each part saves its rows into results/bitserial.json as soon as it is measured.
"""

import argparse
import json
import time
from concurrent.futures import ProcessPoolExecutor

import numpy as np

from .common import ROOT, run_checked, save, table

GROUP = 128
SHAPES = {"llama2-7b q_proj": (4096, 4096), "llama2-7b down_proj": (4096, 11008),
          "smollm2-135m q_proj": (576, 576), "smollm2-135m down_proj": (576, 1536)}
ROWS = 256
FORMATS = {3: ["bitmod3", "bs-int3", "w3"], 4: ["bitmod4", "bs-fp4", "bs-int4", "w4"]}
KIND = {"bitmod3": "BitMoD FP3 mixture", "bitmod4": "BitMoD FP4 mixture",
        "bs-int3": "INT3 (symmetric)", "bs-int4": "INT4 (symmetric)", "bs-fp4": "FP4 E2M1",
        "w3": "LUT W3 (two's compl.)", "w4": "LUT W4 (two's compl.)", "int8": "int8 / channel",
        "bs-int8": "INT8 g128"}
_RESULTS = {}


def _save(part, rows):
    _RESULTS[part] = rows
    return save("bitserial", _RESULTS)


def _fake_quant(w, fmt, group=GROUP):
    """The weights ``w [N, K]`` as format ``fmt`` stores them (codes times scales)."""
    from compiler.quantize import quantize_weight, weight_format
    if fmt == "int8":
        q, s = quantize_weight(w)
        return q * s[:, None]
    g = min(group, w.shape[1])
    q, s = weight_format(fmt).quantize(w, g)
    return q * np.repeat(s, g, 1)[:, :w.shape[1]]


def accuracy():
    rng = np.random.default_rng(0)
    rows = []
    for name, (n, k) in SHAPES.items():
        w = rng.standard_t(4, (ROWS, k)) * 0.02
        x = rng.normal(size=(16, k))
        y = x @ w.T
        for bits, fmts in FORMATS.items():
            for fmt in fmts:
                t0 = time.perf_counter()
                wq = _fake_quant(w, fmt)
                rows.append({"shape": name, "k": k, "bits": bits, "format": fmt,
                             "bits_per_weight": bits + 16 / GROUP,
                             "weight_nmse": float(((wq - w) ** 2).mean() / (w ** 2).mean()),
                             "output_rel_err": float(np.linalg.norm(x @ wq.T - y)
                                                     / np.linalg.norm(y)),
                             "seconds": time.perf_counter() - t0})
                r = rows[-1]
                print(f"  {name:24s} {fmt:8s} weight NMSE {r['weight_nmse']:.3e}  output "
                      f"{r['output_rel_err']:.3e}", flush=True)
    path = _save("accuracy", rows)
    print(f"\nAccuracy at equal bits (groups of {GROUP} with a 16-bit scale; Student-t weights,"
          f" {ROWS} rows of each shape)")
    print(table(["shape", "bits/w", "format", "weight NMSE", "output rel. err", "vs INT"],
                [[r["shape"], f"{r['bits_per_weight']:.3f}", KIND[r["format"]],
                  f"{r['weight_nmse']:.3e}", f"{r['output_rel_err']:.3e}",
                  f"{r['weight_nmse'] / _int_of(rows, r)['weight_nmse']:.2f}x"]
                 for r in rows]))
    met = all(r["weight_nmse"] < _int_of(rows, r)["weight_nmse"] and
              r["output_rel_err"] < _int_of(rows, r)["output_rel_err"]
              for r in rows if r["format"].startswith("bitmod"))
    print(f"target: the mixture's weight and output error below INT's at 3 and 4 bits on "
          f"every shape -> {'met' if met else 'NOT met'}  -> {path}")
    return rows


def _int_of(rows, r):
    return [x for x in rows if x["shape"] == r["shape"] and x["format"] == f"bs-int{r['bits']}"][0]


def model_agreement(windows=48):
    import torch
    from compiler.llmquant import float_forward
    from compiler.modelload import encode, load
    model, tok, corpus = load(str(ROOT / "models" / "charlm"))
    ids = encode(tok, corpus)
    T = model.config.max_position_embeddings
    seqs = [ids[i:i + T] for i in range(0, min(len(ids) - T, windows * T), T)]
    ref = [float_forward(model, s).argmax(-1).numpy() for s in seqs]
    linears = [(blk, name) for blk in model.layers for name in
               ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")]
    saved = [getattr(b, n).weight.detach().clone() for b, n in linears]
    rows = []
    for fmt in ["int8", "bs-int8"] + [f for b in (4, 3) for f in FORMATS[b]]:
        for (b, n), w in zip(linears, saved):
            wq = _fake_quant(w.double().numpy(), fmt)
            with torch.no_grad():
                getattr(b, n).weight.copy_(torch.from_numpy(wq).to(w.dtype))
        pred = [float_forward(model, s).argmax(-1).numpy() for s in seqs]
        agree = float(np.mean(np.concatenate([p == r for p, r in zip(pred, ref)])))
        truth = float(np.mean(np.concatenate([p[:-1] == np.asarray(s[1:])
                                              for p, s in zip(pred, seqs)])))
        rows.append({"format": fmt, "top1_agreement": agree, "next_char_accuracy": truth})
        print(f"  {fmt:8s} top-1 agreement {agree:.3f}  next-character accuracy {truth:.3f}",
              flush=True)
    for (b, n), w in zip(linears, saved):
        with torch.no_grad():
            getattr(b, n).weight.copy_(w)
    base = float(np.mean(np.concatenate([r[:-1] == np.asarray(s[1:])
                                         for r, s in zip(ref, seqs)])))
    path = _save("model", {"float_next_char_accuracy": base, "tokens": len(seqs) * T,
                           "rows": rows})
    print(f"\nmodels/charlm, {len(seqs) * T} characters teacher-forced (float model's "
          f"next-character accuracy {base:.3f}); groups of up to {GROUP}")
    print(table(["format", "top-1 agreement with float", "next-character accuracy"],
                [[KIND[r["format"]], f"{r['top1_agreement']:.3f}",
                  f"{r['next_char_accuracy']:.3f}"] for r in rows]))
    print(f"-> {path}")
    return rows


CYCLE_SHAPES = [("llama2-7b q_proj", 4096, 4096), ("smollm2-135m down_proj", 1536, 576)]
#: (format, group): groups of 128 (a scaled MATMUL each), and per channel (None)
CYCLE_FORMATS = [("int8", None), ("bs-int8", GROUP), ("bs-int4", GROUP), ("bitmod4", GROUP),
                 ("bitmod3", GROUP), ("bs-int8", None), ("bs-int4", None)]
N_SLICE = 512


def cycles(ms=(1, 128)):
    from compiler.frontend import lower_layer
    from hw.config import load_config
    from sim.fast import FastRunner
    from sw.golden import Machine
    cfg = load_config("bitserial")
    fast, gold = FastRunner(cfg), Machine(cfg)
    rng = np.random.default_rng(0)
    rows = []
    for name, k, n in CYCLE_SHAPES:
        n_sim = min(n, N_SLICE)
        w = rng.standard_t(4, (n_sim, k)) * 0.02
        for m in ms:
            x = rng.normal(size=(m, k))
            for fmt, group in CYCLE_FORMATS:
                kern = lower_layer(cfg, name, m, w, np.abs(x).max(),
                                   float(np.abs(x @ w.T).max()), fmt, group=group)
                st, wall, exact = run_checked(fast, gold, kern, x)
                c = st["cycles"]
                wbytes = sum(s.nbytes() for nm, s in kern.memory.symbols.items()
                             if nm in ("w", "gmult", "mult"))
                rows.append({"shape": name, "m": m, "k": k, "n_simulated": n_sim,
                             "format": fmt, "group": group, "engine": kern.engine.name.lower(), "cycles": c,
                             "macs_per_cycle": m * k * n_sim / c, "peak": kern.peak,
                             "util": m * k * n_sim / (c * kern.peak),
                             "weight_bits_per_weight": 8 * wbytes / (k * n_sim),
                             "bus_util": (st["bytes_read"] + st["bytes_written"]
                                          + st["fetch_bytes"]) / (c * fast.bytes_per_cycle),
                             "bit_exact": exact, "wall_s": wall})
                r = rows[-1]
                print(f"  {name:24s} M={m:<4d} {fmt:8s} g{group or 'K':<4} {c:>9d} cycles "
                      f"{r['macs_per_cycle']:7.1f} MAC/c util {r['util']:6.1%} "
                      f"bus {r['bus_util']:6.1%} exact {r['bit_exact']}", flush=True)
                _save("cycles", rows)
    # against INT8 on the same engine with the same scales (per channel for int8)
    base = {(r["shape"], r["m"], r["group"]): r["cycles"] for r in rows
            if r["format"] == "bs-int8"}
    for r in rows:
        r["speedup_vs_bs_int8"] = base[(r["shape"], r["m"], r["group"])] / r["cycles"]
    path = _save("cycles", rows)
    print(f"\nConfig 'bitserial' ({fast.bytes_per_cycle} B/cycle memory), first {N_SLICE} "
          f"output channels; group: features per scale (K: one per channel)")
    print(table(["shape", "M", "format", "group", "engine", "cycles", "MAC/cycle", "peak", "util",
                 "bus", "weight bits/w", "vs bs-int8", "exact"],
                [[r["shape"], r["m"], r["format"], r["group"] or "K", r["engine"], r["cycles"],
                  f"{r['macs_per_cycle']:.1f}", f"{r['peak']:.0f}", f"{r['util']:.1%}",
                  f"{r['bus_util']:.1%}", f"{r['weight_bits_per_weight']:.2f}",
                  f"{r['speedup_vs_bs_int8']:.2f}x", r["bit_exact"]] for r in rows]))
    for g in (GROUP, None):
        sp = [r["speedup_vs_bs_int8"] for r in rows
              if r["format"] == "bs-int4" and r["m"] > 1 and r["group"] == g]
        print(f"target: at 4 bits >= 2x fewer cycles than INT8 on the same engine (prefill, "
              f"scales per {'group of %d' % g if g else 'channel'}): "
              f"{min(sp):.2f}x -> {'met' if min(sp) >= 2 else 'NOT met'}")
    print(f"-> {path}")
    return rows


PEAK = 128


def _synth(spec):
    from hw.bitserial import BitSerialArray
    from hw.synth import SynthError, component_verilog, synthesize
    from hw.systolic import SystolicArray
    from .lut_resources import _Mul8
    kind, family = spec
    comp = {"systolic": lambda: SystolicArray(rows=8, cols=16),
            "mul8": _Mul8,
            "bitserial": lambda: BitSerialArray(rows=4, ch=16, tag_bits=20, plane_bits=1)}[kind]()
    t0 = time.perf_counter()
    try:
        r = synthesize(component_verilog(comp, kind, None), kind, family, dsp=kind != "mul8")
    except SynthError as e:
        return spec, {"error": str(e), "seconds": time.perf_counter() - t0}
    r.pop("cells")
    return spec, {**r, "seconds": time.perf_counter() - t0}


def resources():
    specs = [(k, f) for f in ("ecp5", "xc7") for k in ("systolic", "mul8", "bitserial")]
    res = {}
    with ProcessPoolExecutor(max_workers=2) as pool:
        for spec, r in pool.map(_synth, specs):
            res[spec] = r
            what = r.get("error") or f"{r['luts']} LUT, {r['ffs']} FF, {r['dsps']} DSP"
            print(f"  synthesized {spec[0]} {spec[1]} in {r['seconds']:.0f}s: {what}",
                  flush=True)
    rows = []
    for f in ("ecp5", "xc7"):
        sd, mul, bs = (res[(k, f)] for k in ("systolic", "mul8", "bitserial"))
        if any("error" in r for r in (sd, mul, bs)):
            rows.append({"family": f, "error": "; ".join(r["error"] for r in (sd, mul, bs)
                                                         if "error" in r)})
            continue
        eq = mul["luts"] + mul["ffs"]
        for name, r, peak in (("systolic 8x16 int8", sd, PEAK),
                              ("bit-serial 4x16, 4-bit codes", bs, PEAK),
                              ("bit-serial 4x16, int8", bs, PEAK // 2)):
            fab = (r["luts"] + r["ffs"] + r["dsps"] * eq) / peak
            rows.append({"family": f, "engine": name, "peak": peak, "luts": r["luts"],
                         "ffs": r["ffs"], "dsps": r["dsps"], "fabric_per_mac": fab,
                         "fabric_per_mac_dsp_free": (r["luts"] + r["ffs"]) / peak})
        s = rows[-3]
        for r in rows[-3:]:
            r["systolic_over_this"] = s["fabric_per_mac"] / r["fabric_per_mac"]
            r["same_dsp_free"] = s["fabric_per_mac_dsp_free"] / r["fabric_per_mac_dsp_free"]
    path = _save("resources", rows)
    print("\nResources per weight-MAC/cycle (Yosys; fabric = LUT + FF, a DSP counted as the "
          "LUTs of an int8 multiplier)")
    print(table(["family", "engine", "MAC/cycle", "LUT", "FF", "DSP", "fabric/MAC",
                 "systolic/this", "same, DSP free"],
                [[r["family"], r["engine"], r["peak"], r["luts"], r["ffs"], r["dsps"],
                  f"{r['fabric_per_mac']:.1f}", f"{r['systolic_over_this']:.2f}x",
                  f"{r['same_dsp_free']:.2f}x"] if "error" not in r else
                 [r["family"], "synthesis failed: " + r["error"][:60], "", "", "", "", "",
                  "", ""] for r in rows]))
    ok = all("error" not in r and r["systolic_over_this"] > 1 for r in rows
             if "4-bit" in r.get("engine", "4-bit"))
    print(f"target: less fabric per weight-MAC/cycle than the int8 systolic array at 4 bits "
          f"-> {'met' if ok else 'NOT met'}  -> {path}")
    return rows


PARTS = {"accuracy": accuracy, "model": model_agreement, "cycles": cycles,
         "resources": resources}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--parts", default=",".join(PARTS))
    a = ap.parse_args(argv)
    path = ROOT / "results" / "bitserial.json"
    if path.exists():               # parts not measured now keep their earlier results
        _RESULTS.update({k: v for k, v in json.loads(path.read_text()).items() if k in PARTS})
    for p in a.parts.split(","):
        PARTS[p]()


if __name__ == "__main__":
    main()
