"""Offline packing of low-bit integer weights into the LUT engine's bit-plane entries.

A weight entry holds, for ``2 * cols`` output channels, one 4-bit table index each: plane
``p`` of the unsigned weight codes of 4 consecutive input features (bit t = feature t).
Where bit 0 of an index is 1 the table symmetry ``T[15 - idx] = -T[idx]`` is applied
offline: ``16 - idx`` is stored instead, so the hardware only ever looks up the 8 stored
entries (``n >> 1``) and negates on ``n & 1``.
"""

from __future__ import annotations

import numpy as np

__all__ = ["weight_range", "random_weights", "to_codes", "pack_planes", "unpack_planes"]


def weight_range(wbits, odd):
    """(lowest, highest) integer weight of a grid; the odd grid holds only odd values."""
    if odd:
        top = (1 << wbits) - 1
        return -top, top
    return -(1 << (wbits - 1)), (1 << (wbits - 1)) - 1


def random_weights(rng, shape, wbits, odd):
    """Uniform random integer weights on a grid (on the odd grid, even draws move up by 1)."""
    lo, hi = weight_range(wbits, odd)
    w = rng.integers(lo, hi + 1, shape)
    return np.where(w % 2 == 0, w + 1, w) if odd else w


def to_codes(w_int, wbits, odd):
    """Integer weights -> unsigned codes ``u`` in [0, 2**wbits) (raises on a value off-grid)."""
    w = np.asarray(w_int, np.int64)
    lo, hi = weight_range(wbits, odd)
    if w.size and (w.min() < lo or w.max() > hi or (odd and np.any(w % 2 == 0))):
        raise ValueError(f"weights outside the {'odd ' if odd else ''}{wbits}-bit grid "
                         f"[{lo}, {hi}]")
    return (w + (1 << wbits) - 1) // 2 if odd else w + (1 << (wbits - 1))


def pack_planes(w_int, wbits, odd=False):
    """``w_int [K, N]`` (K a multiple of 4, N even) -> uint8 ``[K // 4 * wbits, N // 2]``:
    row ``g * wbits + p`` is plane p of features 4g..4g+3, channel j in nibble j (low nibble
    first)."""
    w = np.asarray(w_int)
    k, n = w.shape
    if k % 4 or n % 2:
        raise ValueError(f"pack_planes needs K % 4 == 0 and an even N, not {w.shape}")
    u = to_codes(w, wbits, odd).reshape(k // 4, 4, n)
    out = np.zeros((k // 4, wbits, n), np.uint8)
    for p in range(wbits):
        idx = sum((((u[:, t, :] >> p) & 1) << t) for t in range(4)).astype(np.uint8)
        out[:, p, :] = np.where(idx & 1, 16 - idx, idx)
    out = out.reshape(k // 4 * wbits, n)
    return (out[:, 0::2] | (out[:, 1::2] << 4)).astype(np.uint8)


def unpack_planes(packed, wbits, odd=False):
    """Inverse of :func:`pack_planes` (for checks and disassembly)."""
    raw = np.asarray(packed, np.uint8)
    rows, half = raw.shape
    nib = np.stack([raw & 15, raw >> 4], -1).reshape(rows // wbits, wbits, 2 * half)
    idx = np.where(nib & 1, 16 - nib.astype(np.int64), nib).astype(np.int64)
    u = np.zeros((rows // wbits, 4, 2 * half), np.int64)
    for p in range(wbits):
        for t in range(4):
            u[:, t, :] |= ((idx[:, p, :] >> t) & 1) << p
    u = u.reshape(-1, 2 * half)
    return 2 * u - ((1 << wbits) - 1) if odd else u - (1 << (wbits - 1))
