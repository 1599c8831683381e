"""The special-function unit's arithmetic: the definition the RTL equals bit for bit.

Every op works on ``count`` scratchpad entries (``n``) with all ``rows`` lanes (``l``) in
parallel; reductions (norms, softmax) run over the entries of each lane. Activations are
feature-major (an entry is one feature of ``rows`` tokens), so a norm reduces over a token's
features and a softmax over the keys of a query (scores ``acc[key][query]``). docs/sfu.md
writes each op out and gives its error against float.
"""

from __future__ import annotations

import math

import numpy as np

from hw.isa import SfuFunc
from hw.sfu import D_MAX, EXP2, EXP_FRAC_BITS, NORM_BITS, SHIFT_MAX, TABLE_SIZE

__all__ = ["rne", "rmsnorm", "layernorm", "softmax", "softmax_max", "softmax_sum",
           "softmax_out", "MAX_START", "lookup", "mul", "add", "rope", "merge",
           "transpose", "isqrt", "EXP2", "EXP_FRAC_BITS", "D_MAX", "NORM_BITS", "SHIFT_MAX",
           "TABLE_SIZE", "uses", "items"]

def rne(x, shift):
    """``x / 2**shift`` rounded half to even, element-wise; ``shift`` may be an array."""
    x = np.asarray(x, np.int64)
    shift = np.minimum(np.asarray(shift, np.int64), SHIFT_MAX)
    q = x >> shift
    r = x - (q << shift)
    half = np.where(shift > 0, np.int64(1) << np.maximum(shift - 1, 0), 0)
    up = (shift > 0) & ((r > half) | ((r == half) & ((q & 1) == 1)))
    return q + up


def _clamp8(x):
    return np.clip(x, -128, 127).astype(np.int8)


def isqrt(v):
    """Floor square root, element-wise (Newton's fixed point, as I-BERT's)."""
    return np.array([math.isqrt(int(x)) for x in np.asarray(v).reshape(-1)],
                    np.int64).reshape(np.shape(v))


def _norm_factor(v, shift):
    """The norms' per-lane reciprocal ``r = floor(2**(14 + b) / s)`` of ``s =
    max(isqrt(v), 1)`` (``b`` = bits of ``s``) and the total shift that undoes it."""
    s = np.maximum(isqrt(v), 1)
    b = np.array([int(x).bit_length() for x in s], np.int64)
    r = (np.int64(1) << (NORM_BITS + b)) // s
    return r, shift + NORM_BITS + b


def rmsnorm(x, gamma, eps, shift):
    """x int8 [n, R]; gamma int16 [n]. Per lane: v = sum(x^2) + eps, s = isqrt(v),
    out = clamp(rne(x * gamma * r, shift + 14 + b)) with r, b from ``_norm_factor``:
    x / sqrt(mean(x^2)) * gamma'' where gamma carries sqrt(n) and the output scale."""
    x = np.asarray(x, np.int64)
    v = (x * x).sum(axis=0) + int(eps)
    r, sh = _norm_factor(v, shift)
    return _clamp8(rne(x * np.asarray(gamma, np.int64)[:, None] * r[None, :], sh[None, :]))


def layernorm(x, gamma, eps, shift):
    """As rmsnorm with the mean taken out, in integers: with N = n, S = sum(x),
    Q = sum(x^2): c = N*x - S, v = N*Q - S^2 + eps, out = clamp(rne(c * gamma * r, ...));
    c / sqrt(v) = (x - mean) / std exactly. No bias (an ADD after it adds one)."""
    x = np.asarray(x, np.int64)
    n = x.shape[0]
    s1, s2 = x.sum(axis=0), (x * x).sum(axis=0)
    v = n * s2 - s1 * s1 + int(eps)
    r, sh = _norm_factor(v, shift)
    c = n * x - s1[None, :]
    return _clamp8(rne(c * np.asarray(gamma, np.int64)[:, None] * r[None, :], sh[None, :]))


def softmax_mask(n, rows, causal, q0, row=False):
    """valid[j, l]: key ``j`` is seen by the query in lane ``l``, at position q0 + l (``row``:
    at q0 in every lane, the query heads of one token)."""
    j = np.arange(n)[:, None]
    lanes = np.arange(rows)[None, :] * (not row)
    return np.ones((n, rows), bool) if not causal else (j <= q0 + lanes)


def _exp2_units(d):
    d = np.asarray(d, np.int64)
    frac = np.array(EXP2, np.int64)[d & ((1 << EXP_FRAC_BITS) - 1)]
    return frac >> (d >> EXP_FRAC_BITS)


def _exps(a, mx, mult, shift, valid):
    diff = np.where(valid, mx[None, :] - a, 0)
    d = np.minimum(D_MAX, rne(diff * int(mult), shift))
    return np.where(valid, _exp2_units(d), 0)


#: A lane's running maximum before it has seen a key (the accumulators' least value).
MAX_START = -(1 << 31)


def softmax_max(scores, mx, causal=False, q0=0, row=False):
    """SOFTMAX_MAX: each lane's running maximum ``mx`` (int64 [R]) taken over its valid
    scores [n, R]; returns the new maximum."""
    a = np.asarray(scores, np.int64)
    valid = softmax_mask(len(a), a.shape[1], causal, q0, row)
    return np.maximum(np.asarray(mx, np.int64),
                      np.where(valid, a, MAX_START).max(axis=0, initial=MAX_START))


def softmax_sum(scores, mx, total, mult, shift, causal=False, q0=0, row=False):
    """SOFTMAX_SUM: ``total`` plus the exponentials of the valid scores against ``mx``."""
    a = np.asarray(scores, np.int64)
    valid = softmax_mask(len(a), a.shape[1], causal, q0, row)
    return np.asarray(total, np.int64) + _exps(a, np.asarray(mx, np.int64), mult, shift,
                                               valid).sum(axis=0)


def softmax_out(scores, mx, total, mult, shift, causal=False, q0=0, row=False):
    """SOFTMAX_OUT: the probabilities of scores [n, R] given each lane's maximum and sum."""
    a = np.asarray(scores, np.int64)
    valid = softmax_mask(len(a), a.shape[1], causal, q0, row)
    e = _exps(a, np.asarray(mx, np.int64), mult, shift, valid)
    total = np.asarray(total, np.int64)
    recip = np.where(total > 0, (np.int64(1) << 31) // np.maximum(total, 1), 0)
    return np.minimum(127, rne(e * recip[None, :], 24)).astype(np.int8)


def softmax(scores, mult, shift, causal=False, q0=0, row=False):
    """scores int32 [n, R] (keys x queries). Per lane over its valid keys:
    d = min(D_MAX, rne((max - a) * mult, shift)) in 1/64ths of a power of two,
    e = EXP2[d % 64] >> (d // 64) (2**15 * 2**(-d/64), floored), sum = sum(e),
    R = floor(2**31 / sum), out = min(127, rne(e * R, 24)): probabilities in 1/128ths.
    Masked keys give 0; a lane with no valid key gives 0 everywhere.

    The three passes are SOFTMAX_MAX, SOFTMAX_SUM and SOFTMAX_OUT, which a longer row runs
    chunk by chunk (each chunk's ``q0`` less its first key) with the same result."""
    rows = np.asarray(scores).shape[1]
    mx = softmax_max(scores, np.full(rows, MAX_START), causal, q0, row)
    total = softmax_sum(scores, mx, np.zeros(rows, np.int64), mult, shift, causal, q0, row)
    return softmax_out(scores, mx, total, mult, shift, causal, q0, row)


def lookup(x, table):
    """table[x + 128] for int8 x (table: 256 int8, index 0 is x = -128)."""
    return np.asarray(table, np.int8)[np.asarray(x, np.int64) + 128]


def mul(a, b, m, shift):
    """clamp(rne(a * b * m, shift)), m a signed 16-bit multiplier."""
    p = np.asarray(a, np.int64) * np.asarray(b, np.int64) * int(m)
    return _clamp8(rne(p, shift))


def add(a, b, ma, mb, shift):
    """clamp(rne(a * ma + b * mb, shift)): a sum of two tensors at their own scales."""
    p = np.asarray(a, np.int64) * int(ma) + np.asarray(b, np.int64) * int(mb)
    return _clamp8(rne(p, shift))


def rope(x, cs, shift):
    """x int8 [2h, R] (a head's features, the halves rotated as Hugging Face's
    rotate_half), cs int8 [2h, R]: cos for i < h, then sin. For i < h:
    out[i] = clamp(rne(x[i] c[i] - x[i+h] s[i], shift)),
    out[i+h] = clamp(rne(x[i+h] c[i] + x[i] s[i], shift))."""
    x = np.asarray(x, np.int64)
    cs = np.asarray(cs, np.int64)
    h = x.shape[0] // 2
    lo, hi, c, s = x[:h], x[h:], cs[:h], cs[h:]
    return np.concatenate([_clamp8(rne(lo * c - hi * s, shift)),
                           _clamp8(rne(hi * c + lo * s, shift))])


def merge(a, b, lo, hi):
    """Lanes lo <= l < hi from a, the others from b."""
    lanes = np.arange(np.shape(a)[1])[None, :]
    return np.where((lanes >= lo) & (lanes < hi), a, b).astype(np.int8)


def broadcast(x, lane):
    """Lane ``lane`` (mod rows) of x in every lane."""
    x = np.asarray(x, np.int8)
    return np.repeat(x[:, lane % x.shape[1]][:, None], x.shape[1], axis=1)


def transpose(x):
    """Each block of R entries x R lanes transposed: out[bR + l][j] = x[bR + j][l]."""
    x = np.asarray(x, np.int8)
    n, rows = x.shape
    return x.reshape(n // rows, rows, rows).transpose(0, 2, 1).reshape(n, rows)


#: Per function: (source buffer, second source: "act" / "scale" / None, writes act)
_USES = {
    SfuFunc.RMSNORM: ("act", "scale", True), SfuFunc.LAYERNORM: ("act", "scale", True),
    SfuFunc.SOFTMAX: ("acc", None, True), SfuFunc.SOFTMAX_MAX: ("acc", None, False),
    SfuFunc.SOFTMAX_SUM: ("acc", None, False), SfuFunc.SOFTMAX_OUT: ("acc", None, True),
    SfuFunc.TABLE: ("act", None, False),
    SfuFunc.LOOKUP: ("act", None, True), SfuFunc.MUL: ("act", "act", True),
    SfuFunc.ADD: ("act", "act", True), SfuFunc.ROPE: ("act", "act", True),
    SfuFunc.MERGE: ("act", "act", True), SfuFunc.TRANSPOSE: ("act", None, True),
    SfuFunc.BROADCAST: ("act", None, True),
}


def uses(func):
    """(source buffer, second source or None, writes the activations) of ``func``."""
    return _USES[SfuFunc(func)]


def items(func, count, rows):
    """The op's work items over ``count`` entries, or None when the count is illegal for it:
    ROPE works on pairs (count even), TRANSPOSE on blocks (a multiple of ``rows``), TABLE
    reads exactly the table (256 / rows entries)."""
    func = SfuFunc(func)
    if count == 0:
        return None
    if func == SfuFunc.ROPE:
        return count // 2 if count % 2 == 0 else None
    if func == SfuFunc.TRANSPOSE:
        return count // rows if count % rows == 0 else None
    if func == SfuFunc.TABLE:
        return count if count * rows == TABLE_SIZE else None
    return count
