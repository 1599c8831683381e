"""The bit-serial engine (docs/bitserial.md): its term decoder in gates against the golden
decoding, packing, the BitMoD quantizers against the reference's rules, compiled layers
RTL = golden = integer oracle, and clear errors."""

import itertools

import numpy as np
import pytest

from compiler.bitmod import GRIDS, MIXTURES, quantize_grid, quantize_int, quantize_mixture
from compiler.engines import bitserial as plug
from compiler.frontend import lower_layer
from compiler.lower import CompileError, Target
from compiler.quantize import quantize_act, weight_format
from hw.config import AccelConfig, ConfigError, load_config
from hw.isa import BitSerialType, Engine, Opcode, decode
from sw.engines.bitserial import EXTRA_VALUES, FP_VALUES
from sw.engines.bitserial import decode as golden_decode
from sw.golden import Machine


def _value(code, dtype, sel, cin):
    """What a code means, from the golden decoding's tables (INT8: one plane's nibble,
    signed, plus the carried bit)."""
    if dtype in (BitSerialType.INT, BitSerialType.INT8):
        return code - 16 * (code >> 3) + cin
    if dtype == BitSerialType.FPX and code == 8:
        return int(EXTRA_VALUES[sel])
    return int(FP_VALUES[code])


def test_term_decoder_in_gates_sums_to_every_code_value():
    """Every code, data type, selector and carry: the decoder's two terms (simulated gates)
    add up to the code's value."""
    from amaranth import Module, Signal
    from amaranth.sim import Simulator
    from hw.bitserial import BitSerialArray
    m = Module()
    code, dt, sel, cin, term = Signal(4), Signal(BitSerialType), Signal(2), Signal(), Signal()
    nz, neg, sh = BitSerialArray._decode(m, code, dt, cin, sel, term, "t")
    bad = []

    async def bench(ctx):
        for c, d, s, ci in itertools.product(range(16), BitSerialType, range(4), (0, 1)):
            if ci and d != BitSerialType.INT8:
                continue
            total = 0
            for t in (0, 1):
                for sig, v in ((code, c), (dt, d), (sel, s), (cin, ci), (term, t)):
                    ctx.set(sig, v)
                if ctx.get(nz):
                    total += (-1 if ctx.get(neg) else 1) << ctx.get(sh)
            if total != _value(c, d, s, ci):
                bad.append((c, d.name, s, ci, total))
    sim = Simulator(m)
    sim.add_testbench(bench)
    sim.run()
    assert not bad, f"{len(bad)} codes decode wrongly, first (code, type, sel, cin, got) {bad[0]}"


@pytest.mark.parametrize("dtype", list(BitSerialType), ids=lambda t: t.name.lower())
def test_pack_then_decode_is_the_identity(dtype):
    seed = 17 + dtype.value
    rng = np.random.default_rng(seed)
    cfg = load_config("tiny").replace(engines=("systolic", "bitserial"), bitserial_group=16)
    mode = {"dtype": dtype.value}
    w = plug.random_weights(rng, (48, 6), mode, group=16)
    rows = plug.pack(w, mode, cfg)
    ch, eb = cfg.bitserial_cols, cfg.cols
    for t in range(6 // ch):
        ent = rows[:, t * eb:(t + 1) * eb]
        if dtype == BitSerialType.FPX:      # a selector entry and 4 code entries per group
            got = np.concatenate([golden_decode(ent[i:i + 5], dtype, ch)
                                  for i in range(0, len(ent), 5)])
        else:
            got = golden_decode(ent, dtype, ch)
        np.testing.assert_array_equal(got, w[:, t * ch:(t + 1) * ch], err_msg=f"seed={seed}")


def test_pack_refuses_weights_the_type_cannot_hold():
    cfg = load_config("tiny").replace(engines=("systolic", "bitserial"), bitserial_group=16)
    fp = {"dtype": BitSerialType.FP.value}
    with pytest.raises(plug.PackError, match="not a FP value"):
        plug.pack(np.full((4, 2), 5), fp, cfg)
    fpx = {"dtype": BitSerialType.FPX.value}
    w = np.zeros((16, 2), np.int64)
    w[0, 1], w[3, 1] = 10, -16
    with pytest.raises(plug.PackError, match="channel 1 uses extra values"):
        plug.pack(w, fpx, cfg)
    with pytest.raises(plug.PackError, match="not a INT value"):
        plug.pack(np.full((4, 2), 8), {"dtype": BitSerialType.INT.value}, cfg)


# --- BitMoD's quantizers against the reference's rules, written again in torch ----------

def _reference(w16, grid):
    """quant_datatype of yc2367/BitMoD-HPCA-25 (bitmod_quant/quant_utils/quant_weight.py),
    on fp16 groups ``[N, G, g]``: the dequantized weights."""
    import torch
    allow = [float(v) for v in grid]
    mid = [(allow[i] + allow[i + 1]) / 2 for i in range(len(allow) - 1)]
    rmax = torch.amax(w16.abs(), dim=-1, keepdim=True)
    qmax = max(abs(x) for x in allow)
    scale = (rmax / qmax).clamp(min=1e-5, max=1e4)
    x = w16 / scale
    q = torch.zeros_like(x)
    for i, v in enumerate(allow):
        if i == 0:
            q += torch.where(x <= mid[i], v, 0)
        elif i == len(allow) - 1:
            q += torch.where(x > mid[i - 1], v, 0)
        else:
            q += torch.where((mid[i - 1] < x) & (x <= mid[i]), v, 0)
    return q * scale


def _reference_mixture(w16, types):
    import torch
    err = torch.full(w16.shape[:2], 1e3, dtype=w16.dtype)
    out = torch.zeros_like(w16)
    for t in types:
        dq = _reference(w16, GRIDS[t])
        e = (dq - w16).pow(2).mean(-1)
        upd = torch.lt(e, err)
        err[upd] = e[upd]
        out[upd] = dq[upd]
    return out


def _weights(kind, seed, shape=(64, 512)):
    rng = np.random.default_rng(seed)
    if kind == "normal":
        return rng.normal(0, 0.02, shape)
    return rng.standard_t(3, shape) * 0.02         # heavy-tailed, LLM-like


@pytest.mark.parametrize("kind", ["normal", "student_t"])
@pytest.mark.parametrize("bits", [3, 4])
def test_mixture_equals_the_reference(kind, bits):
    import torch
    seed = 1000 * bits + (kind == "normal")
    w = _weights(kind, seed)
    q, s, choice = quantize_mixture(w, bits, 128)
    ours = (q.reshape(64, 4, 128).astype(np.float16) * s[..., None]).astype(np.float16)
    w16 = torch.tensor(w.astype(np.float16)).reshape(64, 4, 128)
    ref = _reference_mixture(w16, MIXTURES[bits]).numpy()
    same = (ours == ref).all(-1)
    assert same.all(), (f"seed={seed}: {int((~same).sum())} of {same.size} groups differ "
                        f"from the reference")
    assert len(set(choice.ravel())) > 1, "every group chose the same variant"


@pytest.mark.parametrize("name", ["int3", "int4", "fp4", "fp3_ea_neg"])
def test_single_types_equal_the_reference(name):
    import torch
    seed = hash(name) % 1000
    w = _weights("student_t", seed, (32, 256))
    w16 = torch.tensor(w.astype(np.float16)).reshape(32, 2, 128)
    if name.startswith("int"):
        q, s = quantize_int(w, int(name[-1]), 128)
        bits = int(name[-1])
        qmax = 2 ** (bits - 1) - 1
        scale = (torch.amax(w16.abs(), -1, keepdim=True) / qmax).clamp(1e-5, 1e4)
        ref = (torch.clamp(torch.round(w16 / scale), -qmax, qmax) * scale).numpy()
    else:
        q, s = quantize_grid(w, GRIDS[name], 128)
        ref = _reference(w16, GRIDS[name]).numpy()
    ours = (q.reshape(32, 2, 128).astype(np.float16) * s[..., None]).astype(np.float16)
    np.testing.assert_array_equal(ours, ref, err_msg=f"{name} seed={seed}")


@pytest.mark.parametrize("bits", [3, 4])
def test_mixture_beats_int_on_heavy_tails(bits):
    """BitMoD's claim at equal bits: the mixture's weight error is below INT's."""
    w = _weights("student_t", 7 + bits)
    q, s, _ = quantize_mixture(w, bits, 128)
    qi, si = quantize_int(w, bits, 128)

    def mse(q, s):
        return float(((q.reshape(64, 4, 128) * s[..., None].astype(np.float64)
                       - w.reshape(64, 4, 128)) ** 2).mean())
    assert mse(q, s) < mse(qi, si)


# --- compiled layers on the accelerator -----------------------------------------------

@pytest.mark.parametrize("fmt,shape", [
    ("bitmod4", (3, 40, 9)), ("bitmod3", (5, 36, 7)), ("bs-fp4", (2, 20, 4)),
    ("bs-int4", (4, 28, 5)), ("bs-int3", (1, 12, 6)), ("bs-int8", (3, 24, 6)),
])
def test_compiled_layer_rtl_golden_oracle(tinybs, tinybs_rtl, fmt, shape):
    """A layer quantized by BitMoD's rules (groups of 16, the last short, K padded to 4):
    RTL = golden, and both equal the integer oracle's product of the codes, scaled."""
    m, k, n = shape
    seed = sum(map(ord, fmt)) + k
    rng = np.random.default_rng(seed)
    w, x = _weights("student_t", seed, (n, k)), rng.normal(size=(m, k))
    y = x @ w.T
    kern = lower_layer(tinybs, "l", m, w, np.abs(x).max(), np.abs(y).max(), fmt, group=16)
    mms = [d for d in map(decode, kern.program.words) if d["opcode"] == Opcode.MATMUL]
    assert {d["engine"] for d in mms} == {Engine.BITSERIAL}
    xq = quantize_act(x, kern.x_scale)
    mem = kern.memory.copy()
    kern.write_input(mem, xq)
    gm, gs = Machine(tinybs).run(kern.program, mem)
    vm, vs = tinybs_rtl.run(kern.program, mem)
    assert gs["error"] is None and vs["error"] is None, (gs["error"], vs["error"])
    assert gm.data == vm.data, f"{fmt} seed={seed}: RTL and golden differ"
    q, s = weight_format(fmt).quantize(w, 16)
    wdq = q * np.repeat(s, 16, 1)[:, :k]
    ref = np.clip(np.rint((xq * kern.x_scale) @ wdq.T / kern.y_scale[0]), -128, 127)
    assert np.abs(kern.read_output(vm) - ref).max() <= 1, f"{fmt} seed={seed}"


def test_clear_errors(tinybs):
    no_fp = tinybs.replace(bitserial_dtypes=("int", "int8"))
    with pytest.raises(CompileError, match="bitserial_dtypes"):
        Target(no_fp).engine_for("bitmod4")
    with pytest.raises(CompileError, match="groups of 16"):
        lower_layer(tinybs, "l", 1, np.ones((4, 64)), 1.0, 1.0, "bitmod4", group=32)
    with pytest.raises(CompileError, match="bitserial"):
        Target(load_config("tiny")).engine_for("bitmod3")
    with pytest.raises(ConfigError, match="bitserial_dtypes"):
        AccelConfig(engines=("systolic", "bitserial"), bitserial_dtypes=("int5",))
    with pytest.raises(ConfigError, match="bitserial_group"):
        AccelConfig(engines=("bitserial",), bitserial_group=100)


def test_illegal_matmuls_are_refused(tinybs, tinybs_rtl):
    """A data type the configuration does not enable, an FPX MATMUL longer than a group, a
    K off the 4-feature step: ILLEGAL_FIELD in the golden model and the RTL alike."""
    from compiler.asm import Assembler
    from sw.program import MemoryImage
    no_int8 = tinybs.replace(bitserial_dtypes=("int", "fp", "fpx"))
    cases = [(no_int8, 8, BitSerialType.INT8), (tinybs, 20, BitSerialType.FPX),
             (tinybs, 6, BitSerialType.INT)]
    for cfg, k, dt in cases:
        asm = Assembler(cfg)
        asm.matmul(0, 0, 0, k, engine=Engine.BITSERIAL, mode={"dtype": dt.value})
        prog = asm.program()
        _, gs = Machine(cfg).run(prog, MemoryImage(bytearray(64)))
        assert gs["error"] is not None and gs["error"] == "ILLEGAL_FIELD", (dt, k)
        if cfg is tinybs:
            _, vs = tinybs_rtl.run(prog, MemoryImage(bytearray(64)))
            assert vs["error"] is not None and vs["error"] == "ILLEGAL_FIELD", (dt, k)
