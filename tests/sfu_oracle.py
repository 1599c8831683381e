"""An independent scalar re-statement of docs/sfu.md's arithmetic: one Python integer at a
time, no numpy, Newton's square root, divmod rounding. tests/test_sfu.py holds sw/sfu.py
to it."""

import math


def rne(x, s):
    s = min(s, 62)
    if s == 0:
        return x
    q, r = divmod(x, 1 << s)            # floor quotient, r >= 0
    half = 1 << (s - 1)
    return q + (1 if r > half or (r == half and q % 2) else 0)


def clamp8(x):
    return max(-128, min(127, x))


def newton_isqrt(n):
    """I-BERT's iteration: x <- (x + n // x) // 2 from 2**ceil(bits/2) until it stops
    falling."""
    if n == 0:
        return 0
    x = 1 << ((n.bit_length() + 1) // 2)
    while True:
        y = (x + n // x) // 2
        if y >= x:
            return x
        x = y


def _norm(c_col, g, v, shift):
    s = max(newton_isqrt(v), 1)
    b = s.bit_length()
    r = (1 << (14 + b)) // s
    return [clamp8(rne(c * gi * r, shift + 14 + b)) for c, gi in zip(c_col, g)]


def rmsnorm(x, g, eps, shift):
    """x: list of lanes, each a list of n ints."""
    return [_norm(col, g, sum(v * v for v in col) + eps, shift) for col in x]


def layernorm(x, g, eps, shift):
    out = []
    for col in x:
        n, s1, s2 = len(col), sum(col), sum(v * v for v in col)
        out.append(_norm([n * v - s1 for v in col], g, n * s2 - s1 * s1 + eps, shift))
    return out


def exp_units(d):
    frac = math.floor(2 ** 15 * 2 ** (-(d % 64) / 64) + 0.5)
    return frac >> (d // 64)


def softmax(scores, mult, shift, causal, q0, row=False):
    out = []
    for lane, col in enumerate(scores):
        ok = [not causal or j <= q0 + (0 if row else lane) for j in range(len(col))]
        mx = max((a for a, v in zip(col, ok) if v), default=0)
        e = [exp_units(min(1023, rne((mx - a) * mult, shift))) if v else 0
             for a, v in zip(col, ok)]
        total = sum(e)
        r = (1 << 31) // total if total else 0
        out.append([min(127, rne(ei * r, 24)) for ei in e])
    return out


def rope(x, cs, shift):
    out = []
    for xc, cc in zip(x, cs):
        h = len(xc) // 2
        lo = [clamp8(rne(xc[i] * cc[i] - xc[i + h] * cc[h + i], shift)) for i in range(h)]
        hi = [clamp8(rne(xc[i + h] * cc[i] + xc[i] * cc[h + i], shift)) for i in range(h)]
        out.append(lo + hi)
    return out
