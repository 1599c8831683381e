"""Int8 quantization: per-output-channel weights, static per-tensor activations, requant
multipliers."""

from __future__ import annotations

import numpy as np

__all__ = ["quantize_weight", "act_scale", "quantize_act", "requant_params"]


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
