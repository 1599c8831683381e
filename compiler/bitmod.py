"""BitMoD's weight quantizers (HPCA 2025; yc2367/BitMoD-HPCA-25,
bitmod_quant/quant_utils/quant_weight.py), with the reference's arithmetic: fp16 weights,
per group ``scale = clamp(absmax / max|grid|, 1e-5, 1e4)`` in fp16, values snapped to the grid
by midpoints (``mid[i-1] < x <= mid[i]``: a tie goes to the lower value), and for a mixture
the variant of lowest fp16 mean squared error per group (the first listed on a tie).

Grids are integers (FP4 E2M1 times 2), so the codes are the bit-serial engine's integer
weights and the scales its group scales."""

from __future__ import annotations

import numpy as np

__all__ = ["GRIDS", "MIXTURES", "quantize_grid", "quantize_mixture", "quantize_int"]

_FP3 = [-4, -2, -1, 0, 1, 2, 4]
_FP4 = [-12, -8, -6, -4, -3, -2, -1, 0, 1, 2, 3, 4, 6, 8, 12]
GRIDS = {
    "int3": list(range(-3, 4)), "int4": list(range(-7, 8)),
    "fp3": _FP3, "fp4": _FP4,
    "fp3_er_pos": sorted(_FP3 + [3]), "fp3_er_neg": sorted(_FP3 + [-3]),
    "fp3_ea_pos": sorted(_FP3 + [6]), "fp3_ea_neg": sorted(_FP3 + [-6]),
    "fp4_er_pos": sorted(_FP4 + [10]), "fp4_er_neg": sorted(_FP4 + [-10]),
    "fp4_ea_pos": sorted(_FP4 + [16]), "fp4_ea_neg": sorted(_FP4 + [-16]),
}
#: BitMoD's mixtures (``mixed_bitmod``): the variants each group chooses from, in order
MIXTURES = {3: ["fp3_er_pos", "fp3_er_neg", "fp3_ea_pos", "fp3_ea_neg"],
            4: ["fp4_er_pos", "fp4_er_neg", "fp4_ea_pos", "fp4_ea_neg"]}

_LO, _HI = np.float16(1e-5), np.float16(1e4)


def _groups(w, group):
    """``w [N, K]`` -> fp16 ``[N, G, group]`` (K a multiple of ``group``)."""
    w = np.asarray(w)
    n, k = w.shape
    if k % group:
        raise ValueError(f"K={k} is not a multiple of the group size {group}")
    return w.astype(np.float16).reshape(n, k // group, group)


def _snap(x, grid):
    """The reference's snapping of fp16 ``x`` onto sorted ``grid`` (integer values)."""
    grid = np.asarray(grid, np.float64)
    mid = (grid[:-1] + grid[1:]) / 2                    # exact in fp16 for these grids
    idx = np.searchsorted(mid, x.astype(np.float64), side="left")   # x <= mid[i] -> i
    return grid[idx].astype(np.int64)


def quantize_grid(w, grid, group):
    """One data type: ``(codes [N, K] int, scales [N, G] fp16)`` with the dequantized
    weight ``codes * scales`` rounded to fp16 (the reference's ``q_tensor * scale_fp``)."""
    wg = _groups(w, group)
    qmax = np.float16(max(abs(v) for v in grid))
    rmax = np.abs(wg).max(-1, keepdims=True)
    scale = np.clip(rmax / qmax, _LO, _HI).astype(np.float16)
    q = _snap((wg / scale).astype(np.float16), grid)
    return q.reshape(w.shape[0], -1), scale[..., 0]


def _dequant(q, scale, group):
    n = q.shape[0]
    qs = q.reshape(n, -1, group).astype(np.float16) * scale[..., None]
    return qs.astype(np.float16)


def quantize_mixture(w, bits, group, types=None):
    """BitMoD's ``mixed_bitmod``: per group the variant (``MIXTURES[bits]`` or ``types``)
    of lowest error. Returns ``(codes [N, K], scales [N, G] fp16, choice [N, G])``, the
    choice an index into the variants."""
    types = types or MIXTURES[bits]
    wg = _groups(w, group)
    n, g, _ = wg.shape
    err = np.full((n, g), np.float16(1e3), np.float16)
    codes = np.zeros((n, g, group), np.int64)
    scales = np.zeros((n, g), np.float16)
    choice = np.full((n, g), -1, np.int64)
    for t, name in enumerate(types):
        q, s = quantize_grid(w, GRIDS[name], group)
        dq = _dequant(q, s, group)
        d = (dq - wg).astype(np.float16)
        e = (d * d).astype(np.float16).astype(np.float32).mean(-1).astype(np.float16)
        better = e < err
        err = np.where(better, e, err)
        codes[better] = q.reshape(n, g, group)[better]
        scales[better] = s[better]
        choice[better] = t
    if (choice < 0).any():      # the reference leaves such a group zero
        raise ValueError("a group's error is 1e3 or more under every variant "
                         "(weights too large for fp16 scales)")
    return codes.reshape(n, -1), scales, choice


def quantize_int(w, bits, group):
    """The reference's symmetric INT (``quant_int``): ``round(w / scale)`` (half to even)
    clamped to ``+-(2**(bits-1) - 1)``, ``scale = absmax / qmax``."""
    wg = _groups(w, group)
    qmax = (1 << (bits - 1)) - 1
    rmax = np.abs(wg).max(-1, keepdims=True)
    scale = np.clip(rmax / np.float16(qmax), _LO, _HI).astype(np.float16)
    q = np.clip(np.rint((wg / scale).astype(np.float16)), -qmax, qmax).astype(np.int64)
    return q.reshape(w.shape[0], -1), scale[..., 0]
