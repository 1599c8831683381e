"""From float scales to the special-function unit's integer fields (docs/sfu.md).

Each function takes the real scales of its int8 / int32 operands (value = integer * scale)
and returns what the instruction and its parameter tables hold, so that the op computes the
float function to within its stated error.
"""

from __future__ import annotations

import math

import numpy as np

from sw.sfu import EXP_FRAC_BITS, TABLE_SIZE

__all__ = ["multiplier", "norm_params", "softmax_params", "function_table", "rope_table",
           "mul_params", "add_params", "SILU", "GELU", "RELU2", "FUNCTIONS"]

INT16_MAX = (1 << 15) - 1
SHIFT_LIMIT = 63


def _shift_for(largest):
    """The largest shift (<= 63) that keeps ``largest * 2**shift`` within int16."""
    if largest <= 0:
        return SHIFT_LIMIT
    return max(0, min(SHIFT_LIMIT, math.floor(math.log2(INT16_MAX / largest))))


def multiplier(real, shift=None):
    """(m, shift): int16 ``m`` with m / 2**shift closest to ``real`` (shift chosen for
    the most bits when not given)."""
    if shift is None:
        shift = _shift_for(abs(real))
    return int(np.clip(round(real * 2 ** shift), -INT16_MAX - 1, INT16_MAX)), shift


def norm_params(gamma, s_in, s_out, eps, *, layer=False):
    """RMSNORM (or LAYERNORM with ``layer``) over ``len(gamma)`` features of scale
    ``s_in``, output scale ``s_out``: (int16 gamma multipliers, eps field, shift).

    RMSNorm's x / sqrt(mean(x^2) + eps) is the integer x / sqrt(sum(x^2) + n*eps/s_in^2)
    times sqrt(n); LayerNorm's (x - mean) / sqrt(var + eps) is c / sqrt(n*Q - S^2 +
    n^2*eps/s_in^2) with c = n*x - S (sw/sfu.py)."""
    g = np.asarray(gamma, np.float64)
    n = len(g)
    real = g / s_out * (1.0 if layer else math.sqrt(n))
    shift = _shift_for(float(np.abs(real).max()))
    g_int = np.clip(np.round(real * 2 ** shift), -INT16_MAX - 1, INT16_MAX).astype(np.int16)
    eps_units = (n * n if layer else n) * eps / (s_in * s_in)
    return g_int, int(min(round(eps_units), 0xFFFF)), shift


def softmax_params(s_scores):
    """SOFTMAX over int32 scores of scale ``s_scores`` (nats): (multiplier, shift) turning
    a score difference into 1/64ths of a power of two. The output's scale is 1/128."""
    real = s_scores * math.log2(math.e) * (1 << EXP_FRAC_BITS)
    shift = max(0, min(SHIFT_LIMIT, math.floor(math.log2(0xFFFF / real))))
    return int(min(0xFFFF, round(real * 2 ** shift))), shift


def silu(x):
    return x / (1.0 + np.exp(-x))


def gelu(x):
    from math import erf
    return np.array([0.5 * v * (1 + erf(v / math.sqrt(2))) for v in np.ravel(x)]).reshape(
        np.shape(x))


def relu2(x):
    return np.maximum(x, 0) ** 2


SILU, GELU, RELU2 = "silu", "gelu", "relu2"
FUNCTIONS = {SILU: silu, GELU: gelu, RELU2: relu2}


def function_table(fn, s_in, s_out):
    """The 256-entry int8 table of ``fn`` (a name from FUNCTIONS or a callable) from scale
    ``s_in`` to ``s_out``: entry i is the int8 nearest fn((i - 128) * s_in) / s_out."""
    fn = FUNCTIONS.get(fn, fn)
    x = (np.arange(TABLE_SIZE) - 128) * s_in
    return np.clip(np.round(fn(x) / s_out), -128, 127).astype(np.int8)


#: cos and sin are int8 in 1/128ths (1.0 saturates to 127/128), so ROPE shifts by 7
ROPE_SHIFT = 7


def rope_table(positions, head_dim, theta):
    """int8 [head_dim, len(positions)]: for i < head_dim / 2 the cos of position p at
    frequency theta**(-2i / head_dim), then the sin (Hugging Face's rotate_half layout)."""
    h = head_dim // 2
    inv = theta ** (-np.arange(h) * 2.0 / head_dim)
    ang = inv[:, None] * np.asarray(positions, np.float64)[None, :]
    cs = np.concatenate([np.cos(ang), np.sin(ang)]) * (1 << ROPE_SHIFT)
    return np.clip(np.round(cs), -128, 127).astype(np.int8)


def mul_params(s_a, s_b, s_out):
    """MUL: (multiplier, shift) for a * b at scales s_a, s_b into s_out."""
    return multiplier(s_a * s_b / s_out)


def add_params(s_a, s_b, s_out):
    """ADD: (ma, mb, shift) for a + b at scales s_a, s_b into s_out (one shift)."""
    shift = _shift_for(max(s_a, s_b) / s_out)
    return multiplier(s_a / s_out, shift)[0], multiplier(s_b / s_out, shift)[0], shift
