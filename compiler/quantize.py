"""Quantization: int8 per-output-channel weights, low-bit group-quantized weights (W1-W4,
ternary) for the LUT engine, static per-tensor int8 activations, requant multipliers."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from hw.isa import Engine

from .bitmod import GRIDS, quantize_grid, quantize_int, quantize_mixture

__all__ = ["quantize_weight", "act_scale", "quantize_act", "requant_params", "WeightFormat",
           "FORMATS", "weight_format", "quantize_groups"]


def quantize_weight(w):
    """Symmetric per-output-channel int8: ``w [N, K] ~= q * scale[:, None]``."""
    w = np.asarray(w, np.float64)
    amax = np.abs(w).max(axis=1)
    scale = np.where(amax > 0, amax / 127.0, 1.0)
    q = np.clip(np.rint(w / scale[:, None]), -127, 127).astype(np.int8)
    return q, scale


def act_scale(absmax):
    """Static symmetric scale from a calibration absmax."""
    return float(absmax) / 127.0 if absmax > 0 else 1.0


def quantize_act(x, scale):
    return np.clip(np.rint(np.asarray(x, np.float64) / scale), -127, 127).astype(np.int8)


def requant_params(real_mult):
    """Per-channel int16 multipliers and one shift with ``mult / 2**shift ~= real_mult``.

    The shift is the largest (<= 63) that keeps every multiplier within int16, so the
    largest channel keeps 15 significant bits.
    """
    real_mult = np.asarray(real_mult, np.float64)
    top = float(np.abs(real_mult).max())
    if top == 0:
        return np.zeros(real_mult.shape, np.int16), 0
    shift = int(np.floor(np.log2(32767.0 / top)))
    shift = max(0, min(63, shift))
    mult = np.clip(np.rint(real_mult * 2.0 ** shift), -32768, 32767).astype(np.int16)
    return mult, shift


# --- low-bit weights for the LUT engine -----------------------------------------------------

@dataclass(frozen=True)
class WeightFormat:
    """How a layer's weights are stored and which engine multiplies by them.

    ``quantizer(w [N, K], fmt, group) -> (q [N, K] int8, scales [N, G])``, ``w ~= q *
    scales[:, k // group]`` (G = 1: one scale per output channel); the engine's compiler
    module (compiler/engines) packs ``q`` and names its MATMUL mode."""
    name: str
    engine: Engine
    quantizer: Callable
    wbits: int = 8
    odd: bool = False       # symmetric odd grid {+-1, +-3, ...} (no zero level)
    grouped: bool = False   # scales per group of input features (else per output channel)
    dtype: str = ""         # the bit-serial engine's data type (hw.config.BITSERIAL_DTYPES)

    @property
    def qmax(self):
        """The largest weight magnitude on the grid."""
        if self.wbits >= 8:
            return 127
        return (1 << self.wbits) - 1 if self.odd else 1 << (self.wbits - 1)

    def quantize(self, w, group):
        return self.quantizer(w, self, group)


def _per_channel(w, fmt, group):
    q, scale = quantize_weight(w)
    return q, scale[:, None]


def _grouped(w, fmt, group):
    return quantize_groups(w, fmt, group)


def _bitmod(w, fmt, group):
    """BitMoD's quantizers (compiler/bitmod.py) on ``w`` padded with zeros to whole groups."""
    w = np.asarray(w, np.float64)
    n, k = w.shape
    pad = np.zeros((n, -(-k // group) * group))
    pad[:, :k] = w
    kind = fmt.name.split("-")[-1]
    if kind.startswith("bitmod"):
        q, s, _ = quantize_mixture(pad, fmt.wbits, group)
    elif kind.startswith("int"):
        q, s = quantize_int(pad, fmt.wbits, group)
    else:
        q, s = quantize_grid(pad, GRIDS[kind], group)
    return q[:, :k], s.astype(np.float64)


#: int8: per output channel, on the systolic array; int8g: in groups along K (as llama.cpp's
#: Q8_0), on the systolic array with the scaled drain. On the LUT engine: w1: binary +-1 (odd
#: grid, absmean scale); w2..w4: two's-complement grid with a signed-absmax scale (llama.cpp
#: Q4_0 style); ternary: {-1, 0, 1} with an absmean scale (BitNet b1.58), run as 2 bit planes.
#: On the bit-serial engine (docs/bitserial.md), with BitMoD's quantizers: bitmod3 / bitmod4,
#: per group the FP3 / FP4 variant of lowest error (an extra value of +-3, +-6 / +-10, +-16);
#: bs-fp4: FP4 E2M1; bs-int3, bs-int4, bs-int8: symmetric INT.
FORMATS = {f.name: f for f in (
    WeightFormat("int8", Engine.SYSTOLIC, _per_channel),
    WeightFormat("int8g", Engine.SYSTOLIC, _grouped, 8, grouped=True),
    WeightFormat("w1", Engine.LUT, _grouped, 1, odd=True, grouped=True),
    WeightFormat("w2", Engine.LUT, _grouped, 2, grouped=True),
    WeightFormat("w3", Engine.LUT, _grouped, 3, grouped=True),
    WeightFormat("w4", Engine.LUT, _grouped, 4, grouped=True),
    WeightFormat("ternary", Engine.LUT, _grouped, 2, grouped=True),
    WeightFormat("bitmod3", Engine.BITSERIAL, _bitmod, 3, grouped=True, dtype="fp"),
    WeightFormat("bitmod4", Engine.BITSERIAL, _bitmod, 4, grouped=True, dtype="fpx"),
    WeightFormat("bs-fp4", Engine.BITSERIAL, _bitmod, 4, grouped=True, dtype="fp"),
    WeightFormat("bs-int3", Engine.BITSERIAL, _bitmod, 3, grouped=True, dtype="int"),
    WeightFormat("bs-int4", Engine.BITSERIAL, _bitmod, 4, grouped=True, dtype="int"),
    WeightFormat("bs-int8", Engine.BITSERIAL, _bitmod, 8, grouped=True, dtype="int8"),
)}


def weight_format(name):
    try:
        return FORMATS[str(name)]
    except KeyError:
        raise ValueError(f"unknown weight format {name!r}; choose from "
                         f"{', '.join(FORMATS)}") from None


def quantize_groups(w, fmt: WeightFormat, group):
    """Group-quantize ``w [N, K]`` along K in groups of ``group`` (the last may be short).

    Returns ``(q [N, K] int8, scales [N, G] float64)`` with ``w ~= q * scales[:, k // group]``.
    """
    w = np.asarray(w, np.float64)
    n, k = w.shape
    ng = -(-k // group)
    pad = np.zeros((n, ng * group))
    pad[:, :k] = w
    wg = pad.reshape(n, ng, group)
    valid = (np.arange(ng * group) < k).reshape(ng, group)[None]
    cnt = valid.sum(-1)
    if fmt.name == "w1" or fmt.name == "ternary":
        s = np.abs(wg).sum(-1) / cnt                      # absmean
        s = np.where(s > 0, s, 1.0)
        r = wg / s[..., None]
        q = np.where(r >= 0, 1, -1) if fmt.name == "w1" else np.clip(np.rint(r), -1, 1)
    else:
        lo = -(1 << (fmt.wbits - 1))
        idx = np.abs(wg).argmax(-1)
        big = np.take_along_axis(wg, idx[..., None], -1)[..., 0]    # signed absmax
        s = np.where(big != 0, big / lo, 1.0)
        q = np.clip(np.rint(wg / s[..., None]), lo, -lo - 1)
    q = np.where(valid, q, 0 if not fmt.odd else 1).reshape(n, ng * group)[:, :k]
    return q.astype(np.int8), s
