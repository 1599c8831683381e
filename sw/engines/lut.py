"""The LUT tensor core's arithmetic, as the hardware does it (docs/lut.md)."""

import numpy as np

__all__ = ["lut_tables", "lut_matmul", "matmul"]


def lut_tables(a):
    """The LUT engine's stored tables: ``a [..., 4]`` int -> ``h [..., 8]`` with
    ``h[u] = -a0 + sum_{t=1..3} (bit t-1 of u ? +a_t : -a_t)`` (the other 8 of the 16 signed
    sums are their negations: ``T[15 - idx] = -T[idx]``)."""
    a = np.asarray(a, np.int64)
    u = np.arange(8)
    sign = np.stack([-np.ones(8, np.int64)] + [2 * ((u >> t) & 1) - 1 for t in range(3)], -1)
    return a @ sign.T


def lut_matmul(act, entries, wbits, odd):
    """The LUT engine's arithmetic, as the hardware does it: ``act [k, rows]`` int8,
    ``entries [k//4 * wbits, cols]`` int8 weight-plane entries -> int64 ``[2*cols, rows]``.

    For group g and plane p each channel's 4-bit index n selects ``h[n >> 1]``, negated when
    ``n & 1``; planes are weighted by 2**p; the {0,1} -> {-1,+1} reinterpretation leaves
    ``S = sum_k (2u - (2**wbits - 1)) a_k``, which is the result on the odd grid and
    ``(S - sum_k a_k) / 2`` on the two's-complement offset grid.
    """
    k, rows = act.shape
    groups = k // 4
    h = lut_tables(np.asarray(act, np.int64).reshape(groups, 4, rows).transpose(0, 2, 1))
    raw = np.asarray(entries).view(np.uint8).reshape(groups, wbits, -1)
    nib = np.stack([raw & 15, raw >> 4], -1).reshape(groups, wbits, -1).astype(np.int64)
    sel, neg = nib >> 1, nib & 1                                     # [g, p, ch]
    gi = np.arange(groups)[:, None, None, None]
    ri = np.arange(rows)[None, None, None, :]
    v = h[gi, ri, sel[..., None]]                                    # [g, p, ch, rows]
    v = np.where(neg[..., None] == 1, -v, v)
    s = (v * (1 << np.arange(wbits))[None, :, None, None]).sum((0, 1))   # [ch, rows]
    if odd:
        return s
    bias = np.asarray(act, np.int64).sum(0)                          # sum_k a_k per token
    return (s - bias[None, :]) >> 1


def matmul(act, entries, mode):
    """The engine's result from its MATMUL mode (``wbits`` planes, ``odd`` grid)."""
    return lut_matmul(act, entries, mode.wbits, mode.odd)
