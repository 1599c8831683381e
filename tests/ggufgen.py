"""Small GGUF files for the tests, written with the ``gguf`` package's writer.

Types ``gguf.quants`` can quantize are quantized from a seeded random float model; the
K-quants (dequantize-only there) get hand-built blocks of seeded random codes, scales and
mins, packed by the layouts of ggml-common.h. Q and K rows are permuted as
convert_hf_to_gguf.py does, so a reader that forgets to undo it fails.
"""

from __future__ import annotations

import numpy as np

QK_K = 256
LINEARS = {"attn_q": "q_proj", "attn_k": "k_proj", "attn_v": "v_proj",
           "attn_output": "o_proj", "ffn_gate": "gate_proj", "ffn_up": "up_proj",
           "ffn_down": "down_proj"}
NORMS = {"attn_norm": "input_layernorm", "ffn_norm": "post_attention_layernorm"}


def permute(w, heads):
    """convert_hf_to_gguf.py's LlamaModel.permute of the Q/K rows."""
    return w.reshape(heads, 2, w.shape[0] // heads // 2, *w.shape[1:]).swapaxes(1, 2) \
        .reshape(w.shape)


def _f16(x):
    return np.asarray(x, np.float16).view(np.uint8).reshape(*np.shape(x), 2)


def pack_scale_min(sc, mn):
    """Eight 6-bit scales and mins -> the 12 bytes get_scale_min unpacks."""
    out = np.zeros(sc.shape[:-1] + (12,), np.uint8)
    for j in range(4):
        out[..., j] = (sc[..., j] & 63) | ((sc[..., j + 4] >> 4) << 6)
        out[..., j + 4] = (mn[..., j] & 63) | ((mn[..., j + 4] >> 4) << 6)
        out[..., j + 8] = (sc[..., j + 4] & 15) | ((mn[..., j + 4] & 15) << 4)
    return out


def kquant_blocks(rng, kind, rows, cols, std=0.02):
    """Random ``kind`` blocks for a ``[rows, cols]`` tensor whose weights have about
    ``std``, and the codes packed (unsigned, as stored) for checks: (bytes, codes)."""
    nb = cols // QK_K
    lead = (rows, nb)
    if kind == "Q6_K":
        q = rng.integers(0, 64, lead + (QK_K,))
        sc = rng.integers(-128, 128, lead + (16,))
        d = np.full(lead, std / 32 / 80, np.float32) * rng.uniform(0.5, 2, lead)
        ql = np.zeros(lead + (128,), np.uint8)
        qh = np.zeros(lead + (64,), np.uint8)
        for h in range(2):
            for part in range(4):
                v = q[..., 128 * h + 32 * part:128 * h + 32 * part + 32]
                lo = slice(64 * h + 32 * (part % 2), 64 * h + 32 * (part % 2) + 32)
                ql[..., lo] |= ((v & 15) << (0 if part < 2 else 4)).astype(np.uint8)
                qh[..., 32 * h:32 * h + 32] |= (((v >> 4) & 3) << (2 * part)).astype(np.uint8)
        blocks = np.concatenate([ql, qh, sc.astype(np.int8).view(np.uint8), _f16(d)], -1)
        return blocks.reshape(rows, -1), q
    bits = 4 if kind == "Q4_K" else 5
    q = rng.integers(0, 1 << bits, lead + (QK_K,))
    sc = rng.integers(16, 64, lead + (8,))
    mn = rng.integers(0, 64, lead + (8,))
    d = (std / 40 / (1 << (bits - 2)) * rng.uniform(0.5, 2, lead)).astype(np.float32)
    # mins centre each sub-block near zero on average
    dmin = (d * 40 * (1 << (bits - 1)) / 32).astype(np.float32)
    runs = q.reshape(lead + (4, 2, 32)) & 15
    qs = (runs[..., 0, :] | (runs[..., 1, :] << 4)).astype(np.uint8).reshape(lead + (128,))
    parts = [_f16(d), _f16(dmin), pack_scale_min(sc, mn)]
    if bits == 5:
        hi = (q.reshape(lead + (8, 32)) >> 4) & 1
        parts.append((hi << np.arange(8)[:, None]).sum(-2).astype(np.uint8))
    parts.append(qs)
    return np.concatenate(parts, -1).reshape(rows, -1), q


def quantize(rng, w, kind):
    """``w [rows, cols]`` in type ``kind``: (raw array for the writer, raw dtype or None)."""
    import gguf
    from gguf import GGMLQuantizationType as T
    if kind == "F32":
        return w.astype(np.float32), None
    if kind == "F16":
        return w.astype(np.float16), None
    if kind in ("Q4_K", "Q5_K", "Q6_K"):
        return kquant_blocks(rng, kind, *w.shape, std=float(w.std()) or 0.02)[0], T[kind]
    return gguf.quants.quantize(w.astype(np.float32), T[kind]), T[kind]


def write(path, model, types, *, arch="llama", seed=0, skip=(), extra=None, meta=None):
    """Write the float LlamaModel ``model`` to ``path``; ``types``: tensor kind by GGUF
    name pattern (``"linear"``, ``"embd"``, ``"output"``, or an exact tensor name), F32
    for norms. ``skip``: tensor names to leave out; ``extra``: {name: (array, raw dtype)}
    to add; ``meta``: metadata key overrides (value None drops the key)."""
    import gguf
    c = model.config
    rng = np.random.default_rng(seed)
    wr = gguf.GGUFWriter(str(path), arch)
    kv = {"block_count": c.num_hidden_layers, "context_length": c.max_position_embeddings,
          "embedding_length": c.hidden_size, "feed_forward_length": c.intermediate_size,
          "attention.head_count": c.num_attention_heads,
          "attention.head_count_kv": c.num_key_value_heads,
          "rope.dimension_count": c.head_dim,
          "attention.layer_norm_rms_epsilon": float(c.rms_norm_eps),
          "rope.freq_base": float(c.rope_theta)}
    for k, v in (meta or {}).items():
        if v is None:
            kv.pop(k, None)
        else:
            kv[k] = v
    for k, v in kv.items():
        key = f"{arch}.{k}"
        if isinstance(v, float):
            wr.add_float32(key, v)
        elif isinstance(v, str):
            wr.add_string(key, v)
        else:
            wr.add_uint32(key, v)
    sd = {k: v.detach().numpy() for k, v in model.state_dict().items()}
    tensors = {"token_embd.weight": (sd["embed_tokens.weight"], types.get("embd", "F32")),
               "output_norm.weight": (sd["norm.weight"], "F32")}
    if not c.tie_word_embeddings:
        tensors["output.weight"] = (sd["lm_head.weight"], types.get("output", "F32"))
    for i in range(c.num_hidden_layers):
        for g, name in LINEARS.items():
            w = sd[f"layers.{i}.{name}.weight"]
            if g == "attn_q":
                w = permute(w, c.num_attention_heads)
            elif g == "attn_k":
                w = permute(w, c.num_key_value_heads)
            tensors[f"blk.{i}.{g}.weight"] = (w, types.get(f"blk.{i}.{g}.weight",
                                                            types.get("linear", "F32")))
        for g, name in NORMS.items():
            tensors[f"blk.{i}.{g}.weight"] = (sd[f"layers.{i}.{name}.weight"], "F32")
    for name, (w, kind) in tensors.items():
        if name in skip:
            continue
        raw, dt = quantize(rng, np.asarray(w, np.float32), kind)
        wr.add_tensor(name, raw, raw_dtype=dt)
    for name, (raw, dt) in (extra or {}).items():
        wr.add_tensor(name, raw, raw_dtype=dt)
    wr.write_header_to_file()
    wr.write_kv_data_to_file()
    wr.write_tensors_to_file()
    wr.close()
    return path
