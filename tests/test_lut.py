"""The LUT engine: RTL vs golden model vs the exact integer product, per weight width and
grid; compiled low-bit layers; the packing; the configuration checks."""

import numpy as np
import pytest

from compiler.frontend import lower_layer
from compiler.lower import CompileError, Target
from compiler.lutpack import pack_planes, random_weights, unpack_planes, weight_range
from compiler.quantize import quantize_act, quantize_groups, weight_format
from hw.config import AccelConfig, ConfigError
from hw.isa import Engine, Opcode, decode
from sw.engines.lut import lut_matmul, lut_tables
from sw.golden import Machine

from test_rtl_random import check_program

WIDTHS = [1, 2, 3, 4, "ternary"]


def test_tables_are_the_signed_sums():
    rng = np.random.default_rng(7)
    a = rng.integers(-128, 128, (50, 4))
    h = lut_tables(a)
    for idx in range(16):
        t = sum((a[:, j] if idx >> j & 1 else -a[:, j]) for j in range(4))
        stored = h[:, idx >> 1] if idx % 2 == 0 else -h[:, (15 - idx) >> 1]
        np.testing.assert_array_equal(stored, t, err_msg=f"idx={idx}")
    assert np.abs(h).max() <= 512      # fits the 11-bit table entries


@pytest.mark.parametrize("wbits", [1, 2, 3, 4])
@pytest.mark.parametrize("odd", [False, True])
def test_golden_lut_arithmetic_is_the_exact_product(wbits, odd):
    for seed in range(20):
        rng = np.random.default_rng(seed)
        k, n, rows = 4 * int(rng.integers(1, 40)), 2 * int(rng.integers(1, 20)), int(
            rng.integers(1, 9))
        w = random_weights(rng, (k, n), wbits, odd)
        a = rng.integers(-128, 128, (k, rows)).astype(np.int8)
        packed = pack_planes(w, wbits, odd)
        np.testing.assert_array_equal(unpack_planes(packed, wbits, odd), w)
        got = lut_matmul(a, packed.view(np.int8), wbits, odd)
        np.testing.assert_array_equal(got, w.T @ a.astype(np.int64),
                                      err_msg=f"seed={seed} wbits={wbits} odd={odd}")


def test_extreme_values_are_exact():
    """All activations -128 and the largest weights: the widest table and accumulator."""
    k = 4096
    a = np.full((k, 2), -128, np.int8)
    for wbits, odd in ((4, False), (4, True), (1, True)):
        lo, hi = weight_range(wbits, odd)
        for v in (lo, hi):
            w = np.full((k, 2), v)
            got = lut_matmul(a, pack_planes(w, wbits, odd).view(np.int8), wbits, odd)
            assert (got == v * -128 * k).all()


@pytest.mark.parametrize("width", WIDTHS)
def test_rtl_lut_programs(tiny, tiny_rtl, width):
    """RTL = golden = exact integer product, LUT-only random programs (K any multiple of
    4, partial output tiles, split K, group-scaled drains) for each weight width."""
    for seed in range(6):
        kw = {"ternary": True} if width == "ternary" else {"wbits": width}
        check_program(tiny, tiny_rtl, 3000 + seed, engines=[Engine.LUT], **kw)


def test_rtl_lut_long_k(tiny, tiny_rtl):
    """Long MATMULs (k up to 200) per width: the wide accumulators, many groups per drain."""
    for seed, wbits in enumerate((1, 2, 3, 4)):
        check_program(tiny, tiny_rtl, 4000 + seed, engines=[Engine.LUT], wbits=wbits,
                      max_k=200, max_jobs=2)


def test_rtl_rect_config_subset_of_widths(rect, rect_rtl):
    for seed in range(6):
        check_program(rect, rect_rtl, 5000 + seed, engines=[Engine.LUT])


@pytest.mark.parametrize("fmt,group,shape", [
    ("w1", 8, (3, 64, 9)), ("w2", 16, (5, 40, 11)), ("w3", 32, (2, 100, 17)),
    ("w4", None, (4, 30, 8)), ("ternary", 12, (6, 50, 13)), ("w2", 64, (9, 300, 11)),
])
def test_compiled_lowbit_layer(tiny, tiny_rtl, fmt, group, shape):
    """A quantized layer compiled for the LUT engine (shapes off the tile, a short last
    group, K padded to 4): RTL = golden, and both equal the dequantized float product
    rounded once (the group scales are exact to 2**-14 of the largest)."""
    m, k, n = shape
    rng = np.random.default_rng(hash((fmt, m, k, n)) % 2**32)
    w, x = rng.normal(size=(n, k)), rng.normal(size=(m, k))
    y = x @ w.T
    kern = lower_layer(tiny, "l", m, w, np.abs(x).max(), np.abs(y).max(), fmt, group=group)
    engines = {d["engine"] for d in map(decode, kern.program.words) if d["opcode"] == Opcode.MATMUL}
    assert engines == {Engine.LUT}
    xq = quantize_act(x, kern.x_scale)
    mem = kern.memory.copy()
    kern.write_input(mem, xq)
    gm, gs = Machine(tiny).run(kern.program, mem)
    vm, vs = tiny_rtl.run(kern.program, mem)
    assert gs["error"] is None and vs["error"] is None
    assert gm.data == vm.data, f"{fmt}: RTL and golden differ"
    g = group or (k + 3) // 4 * 4
    q, s = quantize_groups(w, weight_format(fmt), g)
    wdq = q * np.repeat(s, g, 1)[:, :k]
    ref = np.clip(np.rint((xq * kern.x_scale) @ wdq.T / kern.y_scale[0]), -128, 127)
    assert np.abs(kern.read_output(vm) - ref).max() <= 1, fmt


def test_weight_width_not_enabled(rect):
    with pytest.raises(CompileError, match="lut_wbits"):
        Target(rect).engine_for("w3")
    w = np.ones((4, 8))
    with pytest.raises(CompileError, match="lut_wbits"):
        lower_layer(rect, "l", 1, w, 1.0, 1.0, "w3")


def test_lut_format_on_a_systolic_only_config():
    cfg = AccelConfig(name="sys", rows=4, cols=4, bus_bytes=4, act_depth=64, wgt_depth=64,
                      acc_depth=16, scale_depth=16, mem_bytes_per_cycle=4)
    with pytest.raises(CompileError, match="needs the lut engine"):
        lower_layer(cfg, "l", 1, np.ones((4, 8)), 1.0, 1.0, "w2")


def test_group_size_errors(tiny):
    w = np.ones((8, 40))
    with pytest.raises(CompileError, match="multiple of 4"):
        lower_layer(tiny, "l", 1, w, 1.0, 1.0, "w2", group=6)
    with pytest.raises(CompileError, match="does not divide K=40"):
        lower_layer(tiny, "l", 1, w, 1.0, 1.0, "w2", group=16, pad_groups=False)
    lower_layer(tiny, "l", 1, w, 1.0, 1.0, "w2", group=16)      # padded: fine


def test_config_checks():
    with pytest.raises(ConfigError, match="lut_wbits"):
        AccelConfig(lut_wbits=(2, 5))
    with pytest.raises(ConfigError, match="lut_wbits"):
        AccelConfig(lut_wbits=())
    with pytest.raises(ConfigError, match="engines"):
        AccelConfig(engines=("lut", "sparse"))
    with pytest.raises(ConfigError, match="act_depth"):
        AccelConfig(act_depth=18)


def test_rtl_rejects_a_width_the_config_does_not_enable(rect, rect_rtl):
    """rect enables W1 and W2 only: a W3 or W4 MATMUL is ILLEGAL_FIELD, never run."""
    from hw.isa import encode, ErrorCode
    from sw.program import MemoryImage, Program
    for wbits in (3, 4):
        p = Program([encode(Opcode.MATMUL, engine=Engine.LUT, mode=dict(wbits=wbits), k=4),
                     encode(Opcode.END)], rect.hash)
        mem = MemoryImage(bytearray(256))
        _, gs = Machine(rect).run(p, mem)
        _, vs = rect_rtl.run(p, mem, max_cycles=10_000)
        assert gs["error"] == vs["error"] == ErrorCode.ILLEGAL_FIELD.name


@pytest.mark.slow
def test_lut_only_configuration(tiny):
    """A configuration with the LUT engine alone (W2 only): LUT programs run bit-exact, a
    systolic MATMUL is ILLEGAL_FIELD."""
    from hw.isa import encode, ErrorCode
    from sim.fast import FastRunner
    from sw.program import MemoryImage, Program
    cfg = tiny.replace(name="tiny-lut-only", engines=("lut",), lut_wbits=(2,))
    rtl = FastRunner(cfg, quiet=True)
    for seed in range(6):
        check_program(cfg, rtl, 7000 + seed, engines=[Engine.LUT])
    p = Program([encode(Opcode.MATMUL, k=4), encode(Opcode.END)], cfg.hash)
    _, gs = Machine(cfg).run(p, MemoryImage(bytearray(256)))
    _, vs = rtl.run(p, MemoryImage(bytearray(256)), max_cycles=10_000)
    assert gs["error"] == vs["error"] == ErrorCode.ILLEGAL_FIELD.name
