"""Each special-function op's error against float, on inputs shaped like an LLM's.

The float reference is computed from the *dequantized* integer inputs, so the figures are
the op's own error (its integer arithmetic, its parameters' rounding and the output's
rounding), in output steps (LSBs) -- 0.5 is the best an int8 output can do. Softmax's error
is also given in probability. The golden model is bit-exact with the RTL, so these hold for
the hardware.
"""

from __future__ import annotations

import numpy as np

from sw import sfu
from .sfuops import (FUNCTIONS, add_params, function_table, mul_params, norm_params,
                     rope_table, softmax_params, ROPE_SHIFT)

__all__ = ["measure", "OPS"]


def _q(x, scale):
    return np.clip(np.round(x / scale), -128, 127).astype(np.int8)


def _heavy(rng, shape, df=4.0):
    """Student-t values: the heavy-tailed activations of an LLM's residual stream."""
    return rng.standard_t(df, shape)


def _lsb(out, ref, s_out, keep=None):
    """Errors in output steps, leaving out references the int8 range cannot hold."""
    err = np.abs(out.astype(np.float64) * s_out - ref) / s_out
    inside = np.abs(ref) <= 127 * s_out
    if keep is not None:
        inside &= keep
    return err[inside]


def _norm(rng, n, rows, layer):
    x = _heavy(rng, (n, rows)) * rng.uniform(0.2, 3.0)
    s_in = np.abs(x).max() / 127
    xi = _q(x, s_in)
    xd = xi.astype(np.float64) * s_in
    g = rng.uniform(0.3, 1.5, n)
    eps = 1e-6
    if layer:
        mu = xd.mean(0)
        ref = (xd - mu) / np.sqrt(xd.var(0) + eps) * g[:, None]
    else:
        ref = xd / np.sqrt((xd * xd).mean(0) + eps) * g[:, None]
    s_out = np.abs(ref).max() / 127
    gi, e, sh = norm_params(g, s_in, s_out, eps, layer=layer)
    out = (sfu.layernorm if layer else sfu.rmsnorm)(xi, gi, e, sh)
    return _lsb(out, ref, s_out)


def _softmax(rng, n, rows):
    scores = rng.normal(0, rng.uniform(1, 4), (n, rows))        # logits after 1/sqrt(d)
    s_q = np.abs(scores).max() / (1 << 20)       # int32 scores from an int8 QK^T
    a = np.round(scores / s_q).astype(np.int64)
    mult, sh = softmax_params(s_q)
    causal = bool(rng.integers(2))
    out = sfu.softmax(a, mult, sh, causal, 0)
    z = a * s_q
    valid = sfu.softmax_mask(n, rows, causal, 0)
    z = np.where(valid, z, -np.inf)
    p = np.exp(z - z.max(0))
    ref = p / p.sum(0)
    return _lsb(out, ref, 1 / 128)


def _table(name):
    def run(rng, n, rows):
        x = _heavy(rng, (n, rows)) * 2
        s_in = np.abs(x).max() / 127
        xi = _q(x, s_in)
        fn = FUNCTIONS[name]
        ref = fn(xi.astype(np.float64) * s_in)
        s_out = np.abs(ref).max() / 127
        out = sfu.lookup(xi, function_table(name, s_in, s_out))
        return _lsb(out, ref, s_out)
    return run


def _rope(rng, n, rows):
    n = 2 * max(1, n // 2)
    x = _heavy(rng, (n, rows))
    s = np.abs(x).max() / 127
    xi = _q(x, s).astype(np.float64)
    pos = rng.integers(0, 4096, rows)
    cs = rope_table(pos, n, 10000.0)
    h = n // 2
    inv = 10000.0 ** (-np.arange(h) * 2.0 / n)
    ang = inv[:, None] * pos[None, :]
    c, si = np.cos(ang), np.sin(ang)
    ref = np.concatenate([xi[:h] * c - xi[h:] * si, xi[h:] * c + xi[:h] * si])
    out = sfu.rope(xi.astype(np.int8), cs, ROPE_SHIFT)
    return _lsb(out, ref, 1.0)


def _mul(rng, n, rows):
    a, b = _heavy(rng, (n, rows)), _heavy(rng, (n, rows))
    sa, sb = np.abs(a).max() / 127, np.abs(b).max() / 127
    ai, bi = _q(a, sa), _q(b, sb)
    ref = ai.astype(np.float64) * sa * bi * sb
    s_out = np.abs(ref).max() / 127
    m, sh = mul_params(sa, sb, s_out)
    return _lsb(sfu.mul(ai, bi, m, sh), ref, s_out)


def _add(rng, n, rows):
    a, b = _heavy(rng, (n, rows)), _heavy(rng, (n, rows)) * rng.uniform(0.1, 10)
    sa, sb = np.abs(a).max() / 127, np.abs(b).max() / 127
    ai, bi = _q(a, sa), _q(b, sb)
    ref = ai.astype(np.float64) * sa + bi.astype(np.float64) * sb
    s_out = np.abs(ref).max() / 127
    ma, mb, sh = add_params(sa, sb, s_out)
    return _lsb(sfu.add(ai, bi, ma, mb, sh), ref, s_out)


#: op -> (what it is measured on, the measurement)
OPS = {
    "rmsnorm": ("Student-t(4) hidden states, gamma in [0.3, 1.5]",
                lambda rng, n, r: _norm(rng, n, r, False)),
    "layernorm": ("Student-t(4) hidden states, gamma in [0.3, 1.5]",
                  lambda rng, n, r: _norm(rng, n, r, True)),
    "softmax": ("normal logits, std 1-4, causal or not", _softmax),
    "silu": ("Student-t(4) x 2 gate values", _table("silu")),
    "gelu": ("Student-t(4) x 2", _table("gelu")),
    "relu2": ("Student-t(4) x 2", _table("relu2")),
    "rope": ("Student-t(4) q/k, positions < 4096, theta 10000", _rope),
    "mul": ("Student-t(4) gate x up", _mul),
    "add": ("Student-t(4) residual + update at scales 0.1-10x apart", _add),
}


def measure(seed=0, trials=20, n=576, rows=16):
    """Per op: the largest and the mean error in output steps over ``trials`` random rows
    of ``n`` features (or keys) and ``rows`` tokens."""
    out = {}
    for name, (what, fn) in OPS.items():
        rng = np.random.default_rng([seed, sum(map(ord, name))])
        errs = np.concatenate([fn(rng, n, rows) for _ in range(trials)])
        out[name] = dict(inputs=what, max_lsb=float(errs.max()), mean_lsb=float(errs.mean()),
                         samples=int(errs.size))
    return out


if __name__ == "__main__":
    for k, v in measure().items():
        print(f"{k:10s} max {v['max_lsb']:.3f}  mean {v['mean_lsb']:.3f}  ({v['inputs']})")
