"""llama.cpp's tensor types decoded into integer codes, group scales and offsets.

Written from the block layouts of ggml-common.h (../shared/reference/llm_inputs.md), not from
``gguf.quants``: the tests check these decoders against ``gguf.quants.dequantize``, which is
bit-exact with libggml. Every decoder takes the raw bytes ``[rows, blocks * block_bytes]``
and returns a :class:`compiler.qweight.QWeight` (codes centred on zero, so a 4-bit type's
codes are the W4 grid [-8, 7]) whose exact dequantization is the file's weight.
"""

from __future__ import annotations

import numpy as np

from .qweight import QWeight

__all__ = ["TYPES", "FLOAT_TYPES", "decode", "block_size", "UnsupportedType"]

QK_K = 256


class UnsupportedType(ValueError):
    pass


def _f16(raw):
    return np.ascontiguousarray(raw).view(np.float16).astype(np.float64)[..., 0]


def _blocks(raw, nbytes):
    rows = raw.shape[0]
    return raw.reshape(rows, -1, nbytes)        # [rows, blocks, bytes]


def _out(codes, scale, offset, group, bits, kind, ternary=False):
    rows = codes.shape[0]
    return QWeight(codes.reshape(rows, -1).astype(np.int8), scale.reshape(rows, -1),
                   None if offset is None else offset.reshape(rows, -1), group, bits, kind,
                   ternary)


def _nibbles16(qs):
    """qs [..., 16] -> 32 values: low nibbles are values 0-15, high nibbles 16-31."""
    return np.concatenate([qs & 15, qs >> 4], -1).astype(np.int64)


def _q8_0(b):
    d = _f16(b[..., 0:2])
    return _out(b[..., 2:34].view(np.int8), d, None, 32, 8, "Q8_0")


def _q4_0(b):
    d = _f16(b[..., 0:2])
    return _out(_nibbles16(b[..., 2:18]) - 8, d, None, 32, 4, "Q4_0")


def _q4_1(b):
    d, m = _f16(b[..., 0:2]), _f16(b[..., 2:4])
    return _out(_nibbles16(b[..., 4:20]) - 8, d, m + 8 * d, 32, 4, "Q4_1")


def _fifth_bits(qh4):
    """qh [..., 4] bytes (a little-endian uint32) -> the 5th bit of each of 32 values."""
    h = np.ascontiguousarray(qh4).view("<u4").astype(np.int64)        # [..., 1]
    return (h >> np.arange(32)) & 1


def _q5_0(b):
    d = _f16(b[..., 0:2])
    q = _nibbles16(b[..., 6:22]) | (_fifth_bits(b[..., 2:6]) << 4)
    return _out(q - 16, d, None, 32, 5, "Q5_0")


def _q5_1(b):
    d, m = _f16(b[..., 0:2]), _f16(b[..., 2:4])
    q = _nibbles16(b[..., 8:24]) | (_fifth_bits(b[..., 4:8]) << 4)
    return _out(q - 16, d, m + 16 * d, 32, 5, "Q5_1")


def _scale_min_k4(s):
    """The eight 6-bit scales and mins of a K-quant super-block from its 12 bytes."""
    s = s.astype(np.int64)
    sc = np.empty(s.shape[:-1] + (8,), np.int64)
    mn = np.empty_like(sc)
    for j in range(8):
        if j < 4:
            sc[..., j], mn[..., j] = s[..., j] & 63, s[..., j + 4] & 63
        else:
            sc[..., j] = (s[..., j + 4] & 15) | ((s[..., j - 4] >> 6) << 4)
            mn[..., j] = (s[..., j + 4] >> 4) | ((s[..., j] >> 6) << 4)
    return sc, mn


def _low_high_runs(qs):
    """qs [..., 128]: four 32-byte runs, each 64 values (low nibbles, then high) -> 256."""
    r = qs.reshape(qs.shape[:-1] + (4, 32)).astype(np.int64)
    return np.stack([r & 15, r >> 4], -2).reshape(qs.shape[:-1] + (QK_K,))


def _kquant(b, bits, kind):
    d, dmin = _f16(b[..., 0:2])[..., None], _f16(b[..., 2:4])[..., None]
    sc, mn = _scale_min_k4(b[..., 4:16])
    if bits == 4:
        q = _low_high_runs(b[..., 16:144])
    else:
        qh = b[..., 16:48].astype(np.int64)                            # [..., 32]
        high = (qh[..., None, :] >> np.arange(8)[:, None]) & 1          # [..., 8, 32]
        q = _low_high_runs(b[..., 48:176]) | (high.reshape(q_shape(b)) << 4)
    half = 1 << (bits - 1)
    scale = d * sc
    return _out(q - half, scale, -dmin * mn + half * scale, 32, bits, kind)


def q_shape(b):
    return b.shape[:-1] + (QK_K,)


def _q6_k(b):
    ql = b[..., 0:128].astype(np.int64)
    qh = b[..., 128:192].astype(np.int64)
    scales = b[..., 192:208].view(np.int8).astype(np.float64)
    d = _f16(b[..., 208:210])[..., None]
    q = np.empty(q_shape(b), np.int64)
    for h in range(2):                          # two halves of 128 values
        lo, hi = ql[..., 64 * h:64 * h + 64], qh[..., 32 * h:32 * h + 32]
        for part in range(4):                   # values 32 part + l of the half
            nib = lo[..., 32 * (part % 2):32 * (part % 2) + 32]
            nib = nib & 15 if part < 2 else nib >> 4
            q[..., 128 * h + 32 * part:128 * h + 32 * part + 32] = \
                nib | (((hi >> (2 * part)) & 3) << 4)
    return _out(q - 32, d * scales, None, 16, 6, "Q6_K")


def _tq2_0(b):
    qs = b[..., 0:64].reshape(b.shape[:-1] + (2, 32)).astype(np.int64)
    q = (qs[..., None, :] >> (2 * np.arange(4))[:, None]) & 3        # [..., 2, 4, 32]
    d = _f16(b[..., 64:66])
    return _out(q.reshape(q_shape(b)) - 1, d, None, QK_K, 2, "TQ2_0", ternary=True)


def _trits(byte, count):
    """The ``count`` base-3 digits stored in a byte as ceil(x * 3**count / 256), most
    significant first: digit n is ((byte * 3**n mod 256) * 3) >> 8."""
    byte = byte.astype(np.int64)
    return np.stack([(((byte * 3 ** n) & 255) * 3) >> 8 for n in range(count)], -2)


def _tq1_0(b):
    qs, qh = b[..., 0:48], b[..., 48:52]
    d = _f16(b[..., 52:54])
    lead = b.shape[:-1]
    q = np.concatenate([_trits(qs[..., :32], 5).reshape(lead + (160,)),
                        _trits(qs[..., 32:48], 5).reshape(lead + (80,)),
                        _trits(qh, 4).reshape(lead + (16,))], -1)
    return _out(q - 1, d, None, QK_K, 2, "TQ1_0", ternary=True)


#: type name -> (values per block, bytes per block, decoder of [rows, blocks, bytes])
TYPES = {
    "Q8_0": (32, 34, _q8_0),
    "Q4_0": (32, 18, _q4_0),
    "Q4_1": (32, 20, _q4_1),
    "Q5_0": (32, 22, _q5_0),
    "Q5_1": (32, 24, _q5_1),
    "Q4_K": (QK_K, 144, lambda b: _kquant(b, 4, "Q4_K")),
    "Q5_K": (QK_K, 176, lambda b: _kquant(b, 5, "Q5_K")),
    "Q6_K": (QK_K, 210, _q6_k),
    "TQ1_0": (QK_K, 54, _tq1_0),
    "TQ2_0": (QK_K, 66, _tq2_0),
}

#: float types: name -> bytes per value
FLOAT_TYPES = {"F32": 4, "F16": 2, "BF16": 2}


def block_size(kind):
    """(values, bytes) of one block of type ``kind``."""
    if kind in FLOAT_TYPES:
        return 1, FLOAT_TYPES[kind]
    if kind not in TYPES:
        raise UnsupportedType(kind)
    return TYPES[kind][:2]


def decode_float(raw, kind, shape):
    """Raw little-endian bytes of a float tensor -> float32 ``shape``."""
    raw = np.ascontiguousarray(raw).reshape(-1).view(np.uint8)
    if kind == "F32":
        v = raw.view("<f4")
    elif kind == "F16":
        v = raw.view("<f2").astype(np.float32)
    else:
        v = (raw.view("<u2").astype(np.uint32) << 16).view(np.float32)
    return v.reshape(shape).astype(np.float32)


def decode(raw, kind, rows, cols) -> QWeight:
    """Raw bytes of a quantized ``[rows, cols]`` tensor of type ``kind`` -> QWeight."""
    if kind not in TYPES:
        raise UnsupportedType(kind)
    qk, nbytes, fn = TYPES[kind]
    raw = np.ascontiguousarray(raw).view(np.uint8).reshape(rows, cols // qk * nbytes)
    return fn(_blocks(raw, nbytes))
