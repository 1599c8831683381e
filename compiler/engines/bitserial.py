"""The bit-serial engine in the compiler: integer weights as 4-bit codes of the MATMUL's data
type (docs/bitserial.md). An FPX group's extra value is read off its weights: the one value
of +-10, +-16 the channel's group uses names its selector."""

from __future__ import annotations

import numpy as np

from hw.isa import BitSerialType
from sw.engines.bitserial import EXTRA_VALUES, FP_VALUES

__all__ = ["mode_of", "why_illegal", "pad_value", "pack", "random_mode", "random_weights",
           "describe", "group", "encode", "GRIDS"]

#: each data type's integer weights (FPX: the FP grid plus one extra value per group)
GRIDS = {BitSerialType.INT: np.arange(-8, 8), BitSerialType.INT8: np.arange(-128, 128),
         BitSerialType.FP: np.unique(FP_VALUES),
         BitSerialType.FPX: np.unique(np.concatenate([FP_VALUES, EXTRA_VALUES]))}
#: value + 16 -> FP code (every FPX extra value is the negative zero, code 8)
_FP_CODE = np.zeros(33, np.int64)
_FP_CODE[FP_VALUES[:8] + 16] = np.arange(8)
_FP_CODE[FP_VALUES[9:] + 16] = np.arange(9, 16)
_FP_CODE[EXTRA_VALUES + 16] = 8


class PackError(ValueError):
    """Weights that the MATMUL's data type cannot hold."""


def _dtype(mode):
    return BitSerialType(int(mode["dtype"]))


def mode_of(fmt):
    """The MATMUL mode for weight format ``fmt``: its codes' data type."""
    return {"dtype": BitSerialType[fmt.dtype.upper()].value}


def why_illegal(cfg, fmt):
    return (f"weight format {fmt.name!r} needs the bit-serial data type {fmt.dtype!r}; "
            f"config {cfg.name!r} enables bitserial_dtypes {list(cfg.bitserial_dtypes)}")


def pad_value(mode):
    return 0


def group(cfg, mode):
    """Features per MATMUL of ``mode`` at most (one selector entry each), or None."""
    return cfg.bitserial_group if _dtype(mode) == BitSerialType.FPX else None


def encode(w, dtype):
    """Integer weights -> 4-bit codes (INT8: ``[2, ...]``, low nibble then high)."""
    w = np.asarray(w, np.int64)
    bad = ~np.isin(w, GRIDS[dtype])
    if bad.any():
        raise PackError(f"weight {int(w[bad][0])} is not a {dtype.name} value "
                        f"({len(GRIDS[dtype])} values from {GRIDS[dtype].min()} "
                        f"to {GRIDS[dtype].max()})")
    if dtype == BitSerialType.INT:
        return w & 15
    if dtype == BitSerialType.INT8:
        return np.stack([w & 15, (w >> 4) & 15])
    return _FP_CODE[w + 16]


def _entries(nibbles):
    """Nibbles ``[steps, 2B]`` -> ``[steps, B]`` bytes, low nibble first."""
    return (nibbles[:, 0::2] | nibbles[:, 1::2] << 4).astype(np.uint8).view(np.int8)


def _selectors(w_g):
    """The selector of each channel of a group ``[G, ch]`` from the extra value it uses."""
    sel = np.zeros(w_g.shape[1], np.int64)
    for c in range(w_g.shape[1]):
        used = [i for i, v in enumerate(EXTRA_VALUES) if (w_g[:, c] == v).any()]
        if len(used) > 1:
            raise PackError(f"channel {c} uses extra values "
                            f"{[int(EXTRA_VALUES[i]) for i in used]} in one group; an FPX "
                            f"group has one")
        sel[c] = used[0] if used else 0
    return sel


def pack(w_kn, mode, cfg, *, ch=None):
    """Integer weights ``[K, N]`` (K a multiple of 4) -> weight entries ``[steps(K),
    N // ch * cols]`` bytes, the tiles of ``ch`` (``cfg.bitserial_cols``) channels side by
    side. FPX: a selector entry before each group of ``cfg.bitserial_group`` features."""
    dt = _dtype(mode)
    ch = ch or cfg.bitserial_cols
    w = np.asarray(w_kn, np.int64)
    k, n = w.shape
    assert k % 4 == 0 and n % ch == 0, (k, n, ch)
    codes = encode(w, dt)
    if dt == BitSerialType.INT8:        # [2, K, N] -> per group of 4: low plane, high
        codes = codes.reshape(2, k // 4, 4, n).transpose(1, 0, 2, 3).reshape(-1, 4, n)
    else:
        codes = codes.reshape(k // 4, 4, n)
    # tiles side by side: [steps, 4, tiles, ch] -> [steps, tiles, 4, ch]
    tiled = codes.reshape(len(codes), 4, n // ch, ch).transpose(0, 2, 1, 3)
    rows = _entries(tiled.reshape(len(codes), -1))
    if dt != BitSerialType.FPX:
        return rows
    G = cfg.bitserial_group
    out = []
    for g0 in range(0, k, G):
        sel = _selectors(w[g0:g0 + G])
        head = np.zeros(rows.shape[1], np.uint8)
        for t in range(n // ch):
            bits = np.zeros(8 * 2 * ch, np.uint8)
            s = sel[t * ch:(t + 1) * ch]
            bits[0:2 * ch:2], bits[1:2 * ch:2] = s & 1, s >> 1
            head[t * 2 * ch:(t + 1) * 2 * ch] = np.packbits(bits, bitorder="little")
        out += [head.view(np.int8)[None], rows[g0 // 4:(g0 + G) // 4]]
    return np.concatenate(out)


def random_mode(rng, cfg, *, wbits=None, ternary=False):
    return {"dtype": BitSerialType[str(rng.choice(cfg.bitserial_dtypes)).upper()].value}


def random_weights(rng, shape, mode, *, ternary=False, group=None):
    dt = _dtype(mode)
    if dt != BitSerialType.FPX:
        return rng.choice(GRIDS[dt], shape)
    k, n = shape
    w = rng.choice(np.unique(FP_VALUES), shape)
    g = group or k
    for g0 in range(0, k, g):           # each channel's group: one extra value, or none
        for c in range(n):
            x = rng.integers(-1, 4)
            if x >= 0:
                hit = rng.random(min(g, k - g0)) < 0.2
                w[g0:g0 + g][hit, c] = EXTRA_VALUES[x]
    return w


def describe(mode):
    return f"bitserial {_dtype(mode).name.lower()}"
