"""GPTQ, AWQ and BitNet checkpoints for the tests, written from known integer weights with
packers that follow the producers' own loops (AutoGPTQ's ``pack``, AutoAWQ's order map,
transformers' ``pack_weights``), not the reader's unpacking."""

from __future__ import annotations

import json

import numpy as np

from compiler import safetensors
from compiler.models import hf_name

AWQ_ORDER = [0, 2, 4, 6, 1, 3, 5, 7]
LINEARS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def pack_gptq(intweight, bits):
    """AutoGPTQ's packing of ``intweight [K, N]`` (unsigned) along K into int32 rows."""
    iw = np.asarray(intweight, np.uint32)
    k = iw.shape[0]
    out = np.zeros((k * bits // 32, iw.shape[1]), np.uint32)
    i = row = 0
    while row < out.shape[0]:
        if bits in (2, 4, 8):
            for j in range(i, i + 32 // bits):
                out[row] |= iw[j] << np.uint32(bits * (j - i))
            i += 32 // bits
            row += 1
            continue
        for j in range(i, i + 10):
            out[row] |= iw[j] << np.uint32(3 * (j - i))
        i += 10
        out[row] |= iw[i] << np.uint32(30)
        row += 1
        out[row] |= (iw[i] >> np.uint32(2)) & np.uint32(1)
        i += 1
        for j in range(i, i + 10):
            out[row] |= iw[j] << np.uint32(3 * (j - i) + 1)
        i += 10
        out[row] |= iw[i] << np.uint32(31)
        row += 1
        out[row] |= (iw[i] >> np.uint32(1)) & np.uint32(3)
        i += 1
        for j in range(i, i + 10):
            out[row] |= iw[j] << np.uint32(3 * (j - i) + 2)
        i += 10
        row += 1
    return out.view(np.int32)


def gptq_layer(rng, n, k, bits, group, act_order, sym):
    """Random codes, zeros, scales and g_idx; the tensors a v1 checkpoint stores; and the
    weights by the format's own rule ``W = scale[g] * (q - zero[g])``."""
    ng = k // group
    q = rng.integers(0, 1 << bits, (k, n))
    zero = np.full((ng, n), 1 << (bits - 1)) if sym else rng.integers(1, 1 << bits, (ng, n))
    scale = (rng.uniform(0.5, 2, (ng, n)) * 0.02 / (1 << (bits - 1))).astype(np.float16)
    if act_order:
        perm = rng.permutation(k)
        g_idx = np.empty(k, np.int64)
        g_idx[perm] = np.arange(k) // group
    else:
        g_idx = np.arange(k) // group
    w = (scale[g_idx].astype(np.float64) * (q - zero[g_idx])).T         # [N, K]
    tensors = {"qweight": pack_gptq(q, bits),
               "qzeros": pack_gptq((zero - 1).T, bits).T.copy(),
               "scales": scale, "g_idx": g_idx.astype(np.int32)}
    return tensors, w, q.T


def awq_layer(rng, n, k, group):
    ng = k // group
    q = rng.integers(0, 16, (k, n))
    zero = rng.integers(0, 16, (ng, n))
    scale = (rng.uniform(0.5, 2, (ng, n)) * 0.0025).astype(np.float16)
    g = np.arange(k) // group
    w = ((q - zero[g]) * scale[g].astype(np.float64)).T

    def pack(v):                     # AutoAWQ: nibble i holds channel 8 j + order[i]
        out = np.zeros((v.shape[0], v.shape[1] // 8), np.uint32)
        for j in range(v.shape[1] // 8):
            for i in range(8):
                out[:, j] |= v[:, 8 * j + AWQ_ORDER[i]].astype(np.uint32) << np.uint32(4 * i)
        return out.view(np.int32)
    return {"qweight": pack(q), "qzeros": pack(zero), "scales": scale}, w, q.T


def bitnet_layer(rng, n, k, linear_class):
    t = rng.integers(-1, 2, (n, k))
    ws = np.array([rng.uniform(20, 60)], np.float32)
    rd = n // 4
    packed = np.zeros((rd, k), np.uint8)
    for i in range(4):                   # transformers' pack_weights
        packed |= ((t[i * rd:(i + 1) * rd] + 1).astype(np.uint8) << (2 * i)).astype(np.uint8)
    s = 1.0 / np.float64(ws[0]) if linear_class == "bitlinear" else np.float64(ws[0])
    return {"weight": packed, "weight_scale": ws}, t * np.float64(s), t


def write(path, model, method, *, seed=0, bits=4, group=32, act_order=False, sym=False,
          linear_class="bitlinear", checkpoint_format=None):
    """A checkpoint directory of the float ``model`` with its linear layers quantized by
    ``method`` from random codes. Returns {HF weight name: (reference W, codes [N, K])}."""
    rng = np.random.default_rng(seed)
    c = model.config
    path.mkdir(parents=True, exist_ok=True)
    tensors, ref = {}, {}
    for name, p in model.state_dict().items():
        key = hf_name(name)
        lin = name.split(".")[-2] in LINEARS
        if name == "lm_head.weight" and c.tie_word_embeddings:
            continue
        if not lin:
            tensors[key] = p.detach().numpy().astype(np.float32)
            continue
        n, k = p.shape
        prefix = key.removesuffix(".weight")
        if method == "gptq":
            t, w, q = gptq_layer(rng, n, k, bits, group, act_order, sym)
        elif method == "awq":
            t, w, q = awq_layer(rng, n, k, group)
        else:
            t, w, q = bitnet_layer(rng, n, k, linear_class)
        tensors.update({f"{prefix}.{s}": v for s, v in t.items()})
        ref[key] = (w, q)
    qc = {"quant_method": method}
    if method == "gptq":
        qc.update(bits=bits, group_size=group, desc_act=act_order, sym=sym)
        if checkpoint_format:
            qc["checkpoint_format"] = checkpoint_format
    elif method == "awq":
        qc.update(bits=4, group_size=group, version="gemm", zero_point=True)
    else:
        qc.update(linear_class=linear_class, quantization_mode="offline")
    cfg = c.to_dict()
    cfg["quantization_config"] = qc
    (path / "config.json").write_text(json.dumps(cfg))
    safetensors.save(path / "model.safetensors", tensors)
    return ref
