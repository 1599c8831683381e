import numpy as np
import pytest
import torch

from compiler.frontend import compile_model
from compiler.lower import CompileError, lower_linear
from compiler.models import make_block
from compiler.quantize import requant_params
from sw.golden import Machine, requant


def _linear_case(cfg, m, k, n, seed):
    rng = np.random.default_rng(seed)
    w = rng.integers(-127, 128, (n, k), dtype=np.int8)
    x = rng.integers(-127, 128, (m, k), dtype=np.int8)
    mult = rng.integers(1 << 12, 1 << 15, n).astype(np.int16)
    shift = int(rng.integers(8, 20))
    kern = lower_linear(cfg, "lin", m, w, mult, shift)
    mem = kern.memory.copy()
    kern.write_input(mem, x)
    acc = x.astype(np.int64) @ w.astype(np.int64).T             # [m, n], exact
    exp = requant(acc.T, mult, shift).T                          # [m, n]
    return kern, mem, exp


# (9, 300, 6) and (13, 250, 9): several row groups through one activation slot, the next
# group's X^T reloaded chunk by chunk during the last N tile
SHAPES = [(1, 1, 1), (1, 37, 5), (4, 4, 4), (5, 9, 7), (16, 100, 13), (3, 130, 9),
          (9, 600, 6), (2, 300, 40), (9, 300, 6), (13, 250, 9)]


@pytest.mark.parametrize("m,k,n", SHAPES)
def test_linear_golden_exact(tiny, m, k, n):
    kern, mem, exp = _linear_case(tiny, m, k, n, seed=m * 1000 + k + n)
    out, st = Machine(tiny).run(kern.program, mem)
    assert st["error"] is None
    np.testing.assert_array_equal(kern.read_output(out), exp, err_msg=f"{m}x{k}x{n}")


@pytest.mark.parametrize("m,k,n", [(5, 9, 7), (3, 130, 9), (9, 600, 6), (9, 300, 6)])
def test_linear_rtl_exact(tiny, tiny_rtl, m, k, n):
    kern, mem, exp = _linear_case(tiny, m, k, n, seed=7 + m)
    out, st = tiny_rtl.run(kern.program, mem)
    assert st["error"] is None
    np.testing.assert_array_equal(kern.read_output(out), exp, err_msg=f"{m}x{k}x{n}")


def test_linear_rtl_exact_rect(rect, rect_rtl):
    kern, mem, exp = _linear_case(rect, 11, 70, 10, seed=3)
    out, st = rect_rtl.run(kern.program, mem)
    np.testing.assert_array_equal(kern.read_output(out), exp)


def test_requant_params():
    mult, shift = requant_params(np.array([0.001, 0.0005, -0.0002]))
    assert mult.dtype == np.int16 and abs(int(mult[0])) <= 32767
    assert abs(mult[0] / 2 ** shift - 0.001) < 0.001 / 10000


def test_too_many_channels_is_a_clear_error(tiny):
    w = np.zeros((tiny.scale_depth * tiny.scale_lanes + 4, 8), np.int8)
    with pytest.raises(CompileError, match=r"lin: .* output channels need .* scale entries"):
        lower_linear(tiny, "lin", 1, w, np.ones(w.shape[0], np.int16), 0)


def test_decoder_block_rtl_bit_exact_and_close_to_float(tiny, tiny_rtl):
    blk = make_block("toy", seed=3)
    g = torch.Generator().manual_seed(4)
    calib = [(torch.randn(6, blk.s.hidden, generator=g),) for _ in range(3)]
    x = torch.randn(6, blk.s.hidden, generator=g)
    cm = compile_model(blk, calib, tiny)
    assert set(cm.kernels) == {f"{p}_proj.weight" for p in "q k v o gate up down".split()}
    out, rep = cm.run((x,), tiny_rtl, check=Machine(tiny))
    assert rep["mismatches"] == []
    assert all(k["bit_exact"] for k in rep["kernels"])
    ref = blk(x).detach()
    err = float((out - ref).abs().max())
    assert err < 0.05 * float(ref.abs().max()), err


def test_unsupported_model_is_a_clear_error(tiny):
    class NoLinear(torch.nn.Module):
        def forward(self, x):
            return x * 2
    with pytest.raises(CompileError, match=r"no linear layers"):
        compile_model(NoLinear(), [(torch.randn(2, 3),)], tiny)


def _lut_case(cfg, m, k, n, wbits, odd, group, seed):
    """A LUT-engine linear with integer weights on the grid and random group multipliers,
    and its exact result computed directly (sum of rounded, scaled group products)."""
    from compiler.lutpack import random_weights
    from compiler.quantize import WeightFormat, quantize_groups
    from hw.isa import Engine
    from sw.golden import rne_shift
    rng = np.random.default_rng(seed)
    w = random_weights(rng, (n, k), wbits, odd)
    x = rng.integers(-127, 128, (m, k), dtype=np.int8)
    mult = rng.integers(1 << 10, 1 << 14, n).astype(np.int16)
    shift = int(rng.integers(8, 16))
    kp = -(-k // 4) * 4
    groups = -(-kp // group) if group else 1
    gmult = rng.integers(1, 1 << 14, (n, groups)).astype(np.int16) if groups > 1 else None
    gshift = 6
    fmt = WeightFormat(f"w{wbits}{'odd' if odd else ''}", Engine.LUT, quantize_groups, wbits,
                       odd, grouped=True)
    kern = lower_linear(cfg, "lut", m, w, mult, shift, fmt=fmt,
                        group=group if groups > 1 else None, gmult=gmult, gshift=gshift)
    mem = kern.memory.copy()
    kern.write_input(mem, x)
    acc = np.zeros((m, n), np.int64)
    for gi in range(groups):
        sl = slice(gi * group, min(k, (gi + 1) * group)) if groups > 1 else slice(0, k)
        part = x[:, sl].astype(np.int64) @ w[:, sl].T
        acc += rne_shift(part * gmult[:, gi], gshift) if groups > 1 else part
    return kern, mem, requant(acc.T, mult, shift).T


def test_random_shapes_golden_exact(tiny):
    """Random shapes, both engines, golden model against the exact result: tiling, row
    groups, activation reloads, accumulator alternation and group scales."""
    for seed in range(40):
        rng = np.random.default_rng(seed)
        m, k, n = (int(rng.integers(1, 20)), int(rng.integers(1, 420)),
                   int(rng.integers(1, 30)))
        if seed % 2:
            kern, mem, exp = _linear_case(tiny, m, k, n, seed)
        else:
            wbits = int(rng.integers(1, 5))
            group = [None, 16, 64][seed % 3]
            kern, mem, exp = _lut_case(tiny, m, k, n, wbits, bool(rng.random() < 0.5),
                                       group, seed)
        out, st = Machine(tiny).run(kern.program, mem)
        assert st["error"] is None, f"seed={seed} {m}x{k}x{n}"
        np.testing.assert_array_equal(kern.read_output(out), exp,
                                      err_msg=f"seed={seed} {m}x{k}x{n}")
