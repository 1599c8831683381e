from fractions import Fraction

import numpy as np
import pytest

from sw.golden import requant, rne_shift


def _ref_rne(x, s):
    f = Fraction(int(x), 1 << s)
    fl = f.numerator // f.denominator
    rem = f - fl
    if rem > Fraction(1, 2) or (rem == Fraction(1, 2) and fl % 2 == 1):
        fl += 1
    return fl


@pytest.mark.parametrize("seed", range(5))
def test_rne_shift_matches_exact_rationals(seed):
    rng = np.random.default_rng(seed)
    x = rng.integers(-(1 << 46), 1 << 46, 400)
    x[:8] = [0, 1, -1, 2, -2, 3, -3, (1 << 20) + (1 << 9)]
    for s in [0, 1, 2, 5, 10, 17, 31, 46, 47, 63]:
        got = rne_shift(x, s)
        exp = [_ref_rne(v, s) for v in x]
        assert list(got) == exp, f"seed={seed} shift={s}"


def test_requant_ties_and_clamps():
    acc = np.array([[5, 7, -5, -7, 1000, -1000, 3, -3]], np.int32).T
    mult = np.ones(8, np.int16)
    out = requant(acc, mult, 1)
    assert out[:, 0].tolist() == [2, 4, -2, -4, 127, -128, 2, -2]
    out = requant(acc, mult, 1, relu=True)
    assert out[:, 0].tolist() == [2, 4, 0, 0, 127, 0, 2, 0]
    res = np.full((8, 1), 100, np.int8)
    assert requant(acc, mult, 1, residual=res)[:, 0].tolist() == [102, 104, 98, 96, 127, -128, 102, 98]
