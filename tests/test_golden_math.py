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


@pytest.mark.parametrize("seed", [3])
@pytest.mark.parametrize("kind", ["sat", "wrap"])
def test_requant_shifter_matches_golden(seed, kind):
    """The staged shifters (Amaranth simulation) against ``sw.golden.rne_shift`` for 48-bit
    products and every shift, bit for bit: ``hw.requant.rne_sat_parts`` (the requant unit's:
    the floor quotient saturated to 9 bits) and ``rne_wrap_parts`` (the group scales': the
    floor quotient's low 32 bits), each with the round-half-to-even increment."""
    from amaranth import Module, Signal, signed
    from amaranth.sim import Simulator
    from hw.requant import Q_BITS, rne_sat_parts, rne_wrap_parts
    rng = np.random.default_rng(seed)
    vals = [0, 1, -1, 2, -2, (1 << 47) - 1, -(1 << 47), 255 << 20, -257 << 20]
    vals += [int(v) for w in (12, 30, 47) for v in rng.integers(-(1 << w), 1 << w, 60)]
    m = Module()
    p, s = Signal(signed(48)), Signal(6)
    q, up = rne_sat_parts(m, p, s, "t") if kind == "sat" else rne_wrap_parts(m, p, s, 32, "t")
    lo, hi = -(1 << (Q_BITS - 1)), (1 << (Q_BITS - 1)) - 1
    bad = []

    async def bench(ctx):
        for v in vals:
            ctx.set(p, v)
            for sh in range(64):
                ctx.set(s, sh)
                floor = v >> sh
                up_want = int(rne_shift(np.array([v]), sh)[0]) - floor
                want = ((min(max(floor, lo), hi), up_want) if kind == "sat"
                        else (floor & 0xFFFFFFFF, up_want))
                got = (ctx.get(q), ctx.get(up))
                if got != want:
                    bad.append((v, sh, got, want))
    sim = Simulator(m)
    sim.add_testbench(bench)
    sim.run()
    assert not bad, f"seed={seed} {kind}: {len(bad)} mismatches, first (p, shift, got, want): {bad[0]}"
