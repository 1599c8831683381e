"""Quantized Hugging Face checkpoints: config.json's ``quantization_config`` and the
safetensors tensors of GPTQ, AWQ (GEMM) and BitNet b1.58, read into integer codes with
group scales and offsets (compiler.qweight.QWeight), every tensor checked.

Layouts (../shared/reference/llm_inputs.md):

- GPTQ: ``qweight`` int32 ``[K * bits / 32, N]``, the values of each column a little-endian
  bit stream along K (3-bit values straddle words); ``qzeros`` int32 ``[G, N * bits / 32]``
  packed the same way along N; ``scales`` fp16 ``[G, N]``; ``g_idx`` int32 ``[K]`` (the
  group of each input feature; not ``k // group`` with act-order). Version-1 checkpoints
  (``checkpoint_format`` "gptq", the default) store ``zero - 1``.
  ``W[n, k] = scales[g, n] * (q[k, n] - zero[g, n])``, ``g = g_idx[k]``.
- AWQ GEMM: ``qweight`` int32 ``[K, N / 8]`` packed along N, nibble ``i`` of a word holding
  channel ``8 j + [0, 2, 4, 6, 1, 3, 5, 7][i]``; ``qzeros`` ``[G, N / 8]`` likewise;
  ``scales`` ``[G, N]``; ``W = (q - zero) * scale`` with ``g = k // group``.
- BitNet b1.58 (transformers' integrations/bitnet.py): ``weight`` uint8 ``[N / 4, K]``, the
  2-bit field ``i`` of packed row ``r`` is row ``i * N / 4 + r``, stored as ``w + 1``;
  ``weight_scale`` ``[1]``. ``BitLinear`` (``linear_class`` "bitlinear", the default)
  divides the product by the scale; ``AutoBitLinear`` offline multiplies by it.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from sw.errors import UserError
from . import safetensors
from .qweight import QWeight

__all__ = ["QuantFileError", "read_tensors", "quantized_linears", "METHODS", "unpack_bits",
           "AWQ_ORDER"]

METHODS = ("gptq", "awq", "bitnet")
AWQ_ORDER = [0, 2, 4, 6, 1, 3, 5, 7]


class QuantFileError(UserError):
    """A quantized checkpoint that cannot be read (says which tensor and why)."""


def read_tensors(d: Path) -> dict:
    """All tensors of a model directory: ``model.safetensors``, or the shards listed in
    ``model.safetensors.index.json``."""
    index = d / "model.safetensors.index.json"
    if not index.is_file():
        return safetensors.load(d / "model.safetensors")[0]
    try:
        shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
    except (ValueError, KeyError, TypeError, AttributeError):
        raise QuantFileError(f"{index}: not a safetensors index (no weight_map)") from None
    out = {}
    for s in shards:
        if not (d / s).is_file():
            raise QuantFileError(f"{index}: shard {s} is missing")
        out.update(safetensors.load(d / s)[0])
    return out


def unpack_bits(words, bits, count):
    """int32 ``words [..., W]`` read as one little-endian bit stream per row -> the first
    ``count`` unsigned ``bits``-bit values ``[..., count]``."""
    w = np.ascontiguousarray(np.asarray(words).astype("<u4", copy=False))
    stream = np.unpackbits(w.view(np.uint8), axis=-1, bitorder="little")
    if stream.shape[-1] < count * bits:
        raise ValueError(f"{stream.shape[-1]} bits hold fewer than {count} {bits}-bit values")
    v = stream[..., :count * bits].reshape(*w.shape[:-1], count, bits).astype(np.int64)
    return (v << np.arange(bits)).sum(-1)


def _need(t, name, dtype, shape, where):
    if name not in t:
        raise QuantFileError(f"{where}: tensor {name} is missing")
    a = t[name]
    if dtype is not None and a.dtype != dtype:
        raise QuantFileError(f"{where}: {name} is {a.dtype}, not {np.dtype(dtype)}")
    if shape is not None and tuple(a.shape) != tuple(shape):
        raise QuantFileError(f"{where}: {name} has shape {list(a.shape)}; the configuration "
                             f"says {list(shape)}")
    return a


def _grouped(q, zero, scale, g_idx, bits, kind, where, name):
    """QWeight from unsigned codes ``q [N, K]``, zeros and scales ``[G, N]`` and each input
    feature's group; an act-order ``g_idx`` becomes a column permutation."""
    n, k = q.shape
    ng = scale.shape[0]
    if g_idx.min(initial=0) < 0 or g_idx.max(initial=0) >= ng:
        raise QuantFileError(f"{where}: {name}.g_idx names groups outside 0..{ng - 1}")
    counts = np.bincount(g_idx, minlength=ng)
    if np.any(counts != counts[0]):
        raise QuantFileError(f"{where}: {name}.g_idx gives groups of unequal sizes "
                             f"({counts.min()}..{counts.max()} features)")
    group = int(counts[0])
    perm = np.argsort(g_idx, kind="stable")
    ordered = np.array_equal(perm, np.arange(k))
    half = 1 << (bits - 1)
    s = scale.T.astype(np.float64)
    z = zero.T.astype(np.int64)
    offset = None if np.all(z == half) else s * (half - z)
    return QWeight((q[:, perm] - half).astype(np.int8), s, offset, group, bits, kind,
                   perm=None if ordered else perm)


def _gptq(t, p, n, k, qc, where):
    bits = int(qc.get("bits", 4))
    if bits not in (2, 3, 4, 8):
        raise QuantFileError(f"{where}: GPTQ bits {bits} (it reads 2, 3, 4, 8)")
    gs = int(qc.get("group_size", 128))
    gs = k if gs in (-1, 0) else gs
    if k % gs:
        raise QuantFileError(f"{where}: GPTQ group_size {gs} does not divide {k} features")
    ng = k // gs
    qweight = _need(t, f"{p}.qweight", np.int32, (k * bits // 32, n), where)
    qzeros = _need(t, f"{p}.qzeros", np.int32, (ng, -(-n * bits // 32)), where)
    scales = _need(t, f"{p}.scales", None, (ng, n), where).astype(np.float64)
    g_idx = t.get(f"{p}.g_idx")
    g_idx = np.arange(k) // gs if g_idx is None else \
        _need(t, f"{p}.g_idx", np.int32, (k,), where).astype(np.int64)
    _no_bias(t, p, where)
    q = unpack_bits(qweight.T, bits, k)                           # [N, K]
    zero = unpack_bits(qzeros, bits, n)                           # [G, N]
    if qc.get("checkpoint_format", "gptq") != "gptq_v2":
        zero = zero + 1                                           # v1 stores zero - 1
    return _grouped(q, zero, scales, g_idx, bits, f"GPTQ {bits}-bit", where, p)


def _awq(t, p, n, k, qc, where):
    bits = int(qc.get("bits", qc.get("w_bit", 4)))
    if bits != 4 or str(qc.get("version", "gemm")).lower() != "gemm":
        raise QuantFileError(f"{where}: AWQ {bits}-bit {qc.get('version')!r}: llmaccel reads "
                             f"the 4-bit GEMM layout")
    gs = int(qc.get("group_size", qc.get("q_group_size", 128)))
    gs = k if gs in (-1, 0) else gs
    if k % gs or n % 8:
        raise QuantFileError(f"{where}: AWQ group {gs} / {n} channels do not divide "
                             f"{k} features / 8")
    ng = k // gs
    qweight = _need(t, f"{p}.qweight", np.int32, (k, n // 8), where)
    qzeros = _need(t, f"{p}.qzeros", np.int32, (ng, n // 8), where)
    scales = _need(t, f"{p}.scales", None, (ng, n), where).astype(np.float64)
    _no_bias(t, p, where)

    def nibbles(words):             # [R, N / 8] -> [R, N] in channel order
        v = unpack_bits(words[..., None], 4, 8)                   # [R, N/8, 8]
        out = np.empty_like(v)
        out[..., AWQ_ORDER] = v
        return out.reshape(words.shape[0], n)
    q = nibbles(qweight).T                                        # [N, K]
    return _grouped(q, nibbles(qzeros), scales, np.arange(k) // gs, 4, "AWQ 4-bit", where, p)


def _bitnet(t, p, n, k, qc, where):
    w = _need(t, f"{p}.weight", np.uint8, (n // 4, k), where)
    ws = _need(t, f"{p}.weight_scale", None, None, where).astype(np.float64).reshape(-1)
    if n % 4 or ws.size != 1 or not np.isfinite(ws[0]) or ws[0] == 0:
        raise QuantFileError(f"{where}: {p}.weight_scale must be one non-zero number (and "
                             f"{n} rows a multiple of 4)")
    _no_bias(t, p, where)
    fields = (w[None].astype(np.int64) >> (2 * np.arange(4))[:, None, None]) & 3
    if np.any(fields == 3):
        raise QuantFileError(f"{where}: {p}.weight holds the 2-bit field 3, which is no "
                             f"ternary value")
    codes = (fields.reshape(n, k) - 1).astype(np.int8)            # row i * N / 4 + r
    cls = str(qc.get("linear_class", "bitlinear")).lower()
    if cls not in ("bitlinear", "autobitlinear"):
        raise QuantFileError(f"{where}: BitNet linear_class {cls!r} (it reads bitlinear, "
                             f"autobitlinear)")
    s = 1.0 / ws[0] if cls == "bitlinear" else ws[0]
    return QWeight(codes, np.full((n, 1), s), None, k, 2, "BitNet b1.58", ternary=True)


def _no_bias(t, p, where):
    b = t.get(f"{p}.bias")
    if b is not None and np.any(np.asarray(b, np.float64) != 0):
        raise QuantFileError(f"{where}: {p}.bias is not zero; the model has no biases")


def quantized_linears(cfg, tensors: dict, qc: dict, where) -> tuple[dict, dict]:
    """(HF-named float tensors with each quantized linear dequantized, QWeights by
    ``"{layer}.{name}"``) for a checkpoint with ``quantization_config`` ``qc``."""
    method = str(qc.get("quant_method", "")).lower()
    if method not in METHODS:
        raise QuantFileError(f"{where}: quant_method {method!r} is not supported (llmaccel "
                             f"reads {', '.join(METHODS)})")
    read = {"gptq": _gptq, "awq": _awq, "bitnet": _bitnet}[method]
    out, qweights = dict(tensors), {}
    skip = set(qc.get("modules_to_not_convert") or [])
    for i in range(cfg.num_hidden_layers):
        for name, (weight, shape) in cfg.linears(i).items():
            p = weight.removesuffix(".weight")
            if any(s and s in p for s in skip) or weight in tensors and \
                    tensors[weight].dtype != np.uint8:
                continue                            # left in float
            qw = read(tensors, p, *shape, qc, where)
            qweights[f"{i}.{name}"] = qw
            out[weight] = qw.dequant().astype(np.float32)
    return out, qweights
