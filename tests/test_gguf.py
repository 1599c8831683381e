"""GGUF files: every tensor type decoded exactly (against gguf.quants.dequantize, which is
bit-exact with libggml), the codes kept on the engines, the weights the kernels really
multiply by within the reported bound, whole models RTL = golden, and bad files refused
with one line."""

import numpy as np
import pytest

import ggufgen
from compiler.ggml_blocks import TYPES, decode
from compiler.ggufload import GGUFError, read_gguf
from compiler.generate import Generator
from compiler.llm import compile_llm
from compiler.llmquant import float_forward, quantize_model
from compiler.lower import CompileError
from compiler.modelload import calibration, load
from compiler.models import ModelConfig, make_model
from compiler.qweight import placement, weight_error
from sw.golden import Machine

gguf = pytest.importorskip("gguf")
T = gguf.GGMLQuantizationType

QUANT = list(TYPES)
FLOATS = ["F32", "F16", "BF16"]
#: the smallest LLaMA-family model every type's block fits (K-quants: rows of 256)
SMALL = ModelConfig(256, 256, 4, 2, 1, 256, 64, max_position_embeddings=64)


@pytest.fixture(scope="module")
def tinyq(tiny):
    """tiny with room for rows of 256 features (a K-quant block) and their group scales."""
    return tiny.replace(name="tinyq", act_depth=2048, wgt_depth=512, scale_depth=256,
                        dram_bytes=1 << 21)


@pytest.fixture(scope="module")
def tinyq_rtl(tinyq):
    from sim.fast import FastRunner
    return FastRunner(tinyq, quiet=True)


@pytest.fixture(scope="module")
def float_model():
    return make_model(SMALL, seed=3)


def _raw(rng, kind, rows, cols):
    if kind in ("Q4_K", "Q5_K", "Q6_K"):
        return ggufgen.kquant_blocks(rng, kind, rows, cols)
    w = (rng.standard_t(4, (rows, cols)) * 0.02).astype(np.float32)
    return gguf.quants.quantize(w, T[kind]), None


@pytest.mark.parametrize("kind", QUANT)
def test_decoder_equals_libggml(kind):
    """The decoder's exact weights, rounded to float32, are gguf.quants.dequantize's bit for
    bit; codes lie on their grid; hand-packed K-quant codes come back unchanged."""
    seed = QUANT.index(kind)
    rng = np.random.default_rng(seed)
    rows, cols = 5, 512
    raw, codes = _raw(rng, kind, rows, cols)
    qw = decode(raw, kind, rows, cols)
    ref = gguf.quants.dequantize(raw, T[kind])
    assert np.array_equal(qw.dequant().astype(np.float32), ref), f"seed {seed}"
    lo = -1 if qw.ternary else -(1 << (qw.bits - 1))
    assert lo <= qw.codes.min() and qw.codes.max() <= -lo - (not qw.ternary)
    if codes is not None:
        centre = 32 if kind == "Q6_K" else 1 << (qw.bits - 1)
        assert np.array_equal(qw.codes, codes.reshape(rows, cols) - centre), f"seed {seed}"


#: one model holding every type: each linear tensor of two layers, the head and embedding
MIXED = {"blk.0.attn_q.weight": "Q4_0", "blk.0.attn_k.weight": "Q4_1",
         "blk.0.attn_v.weight": "Q5_0", "blk.0.attn_output.weight": "Q5_1",
         "blk.0.ffn_gate.weight": "Q8_0", "blk.0.ffn_up.weight": "Q4_K",
         "blk.0.ffn_down.weight": "Q5_K", "blk.1.attn_q.weight": "Q6_K",
         "blk.1.attn_k.weight": "TQ1_0", "blk.1.attn_v.weight": "TQ2_0",
         "blk.1.attn_output.weight": "F16", "blk.1.ffn_gate.weight": "BF16",
         "blk.1.ffn_up.weight": "F32", "blk.1.ffn_down.weight": "Q4_K",
         "output": "Q6_K", "embd": "Q8_0"}


@pytest.fixture(scope="module")
def mixed(tmp_path_factory, tinyq):
    import dataclasses
    fm = make_model(dataclasses.replace(SMALL, num_hidden_layers=2), seed=5)
    path = ggufgen.write(tmp_path_factory.mktemp("gguf") / "mixed.gguf", fm, MIXED, seed=5)
    model, _, _ = load(path)
    qm = quantize_model(model, calibration(model, None, None, 24))
    return path, model, compile_llm(tinyq, qm, max_len=32, prefill=[8], decode=[32])


def test_mixed_file_rtl_equals_golden(mixed, tinyq, tinyq_rtl):
    """Every type in one model: the tokens and every logit of the fast runner equal the
    golden model's."""
    _, _, cm = mixed
    assert {getattr(k, "kind", None) for k in cm.kernels.values()} >= set(QUANT)
    prompt = [7, 100, 33, 250, 1]
    g = Generator(cm, Machine(tinyq)).generate(prompt, 3)
    r = Generator(cm, tinyq_rtl).generate(prompt, 3)
    assert r.tokens == g.tokens
    assert all(np.array_equal(a, b) for a, b in zip(r.logits, g.logits))


def _file_weights(path, name, cfg):
    """gguf's own dequantization of tensor ``name``, its Q/K rows back in HF order."""
    t = next(t for t in gguf.GGUFReader(path).tensors if t.name == name)
    w = gguf.quants.dequantize(t.data, t.tensor_type).astype(np.float64)
    heads = {"attn_q": cfg.num_attention_heads, "attn_k": cfg.num_key_value_heads}
    h = heads.get(name.split(".")[2]) if name.startswith("blk.") else None
    if h:
        order = ggufgen.permute(np.arange(w.shape[0]), h)
        w = w[np.argsort(order)]
    return w


def test_kernel_weights_equal_the_files(mixed, tinyq):
    """The weights each compiled kernel multiplies by (its codes through its own int16
    multipliers) against gguf.quants.dequantize: equal where the mapping is exact, else
    within the error compiler.qweight reports; the codes themselves are the file's."""
    path, model, cm = mixed
    c = model.config
    names = {f"L{i}.{n}": f"blk.{i}.{g}.weight" for i in range(2)
             for g, n in ggufgen.LINEARS.items()}
    names["lm_head"] = "output.weight"
    for kname, gname in names.items():
        kind = MIXED.get(gname, MIXED.get("output"))
        kern = cm.kernels[kname]
        ref = _file_weights(path, gname, c)
        if kind in FLOATS:
            continue
        key = "lm_head" if kname == "lm_head" else kname[1:].replace("L", "")
        qw = model.qweights[key]
        err, top = weight_error(qw, ref.astype(np.float32))
        got = np.abs(kern.w_dequant - ref).max()
        assert got <= err + 1e-6 * top, (gname, kind, got, err)
        assert placement(tinyq, qw).exact
        if weight_error(qw)[0] == 0:
            assert np.array_equal(kern.w_dequant.astype(np.float32),
                                  ref.astype(np.float32)), gname
        assert err / top < 1e-3, (gname, err / top)


@pytest.mark.parametrize("kind", QUANT + FLOATS)
def test_each_type_runs_close_to_float(kind, tmp_path, float_model, tinyq):
    """A model all in one type: compiled, run on the golden model, its logits close to the
    float model built from the file's dequantized weights."""
    path = ggufgen.write(tmp_path / f"{kind}.gguf", float_model,
                         {"linear": kind, "output": kind, "embd": kind}, seed=1)
    model, _, _ = load(path)
    if kind in QUANT:
        assert {q.kind for q in model.qweights.values()} == {kind}
    qm = quantize_model(model, calibration(model, None, None, 24))
    cm = compile_llm(tinyq, qm, max_len=32, prefill=[8], decode=[32])
    prompt = [5, 17, 200, 3]
    g = Generator(cm, Machine(tinyq)).generate(prompt, 4)
    seq = prompt + g.tokens[:-1]
    ref = float_forward(model, seq).numpy()[len(prompt) - 1:]
    got = np.array(g.logits, np.float64) * qm.scales["logits"]
    rel = np.linalg.norm(got - ref) / np.linalg.norm(ref)
    assert rel < 0.15, (kind, rel)
    assert np.mean(ref.argmax(-1) == np.array(g.tokens)) >= 0.5, kind


def test_qk_rows_are_unpermuted(tmp_path, float_model):
    """Q8_0 keeps the float weights to 1/254 of a block's range: the Q and K projections
    read back must be the float model's, row for row."""
    path = ggufgen.write(tmp_path / "q8.gguf", float_model, {"linear": "Q8_0"})
    model, _, _ = load(path)
    for name in ("q_proj", "k_proj", "o_proj"):
        want = getattr(float_model.layers[0], name).weight.detach().numpy()
        got = getattr(model.layers[0], name).weight.detach().numpy()
        assert np.abs(got - want).max() <= np.abs(want).max() / 200, name
    g = read_gguf(path)
    assert g.config == SMALL


def test_no_group_scales_needs_requantize(tmp_path, float_model, tiny):
    """On a configuration without the scaled drain a Q4_0 file is refused, naming the
    tensor, the reason and the flag; with --requantize it compiles as int8."""
    import dataclasses
    sysonly = tiny.replace(name="tiny-systolic", engines=("systolic",), act_depth=2048,
                           scale_depth=256)
    path = ggufgen.write(tmp_path / "q4.gguf", float_model, {"linear": "Q4_0"})
    model, _, _ = load(path)
    qm = quantize_model(model, calibration(model, None, None, 24))
    with pytest.raises(CompileError, match=r"q_proj.*Q4_0.*scaled drain.*--requantize"):
        compile_llm(sysonly, qm, max_len=32, prefill=[8], decode=[32])
    cm = compile_llm(sysonly, qm, max_len=32, prefill=[8], decode=[32], requantize=True)
    assert {k.engine.name for k in cm.kernels.values()} == {"SYSTOLIC"}
    assert dataclasses.is_dataclass(cm)


# --- bad files: one clear line each --------------------------------------------------------

def _write_ok(tmp_path, float_model, **kw):
    return ggufgen.write(tmp_path / "m.gguf", float_model, {"linear": "Q4_0"}, **kw)


def _bad(path, match):
    with pytest.raises(GGUFError, match=match) as e:
        read_gguf(path)
    assert "\n" not in str(e.value)


def test_truncated_file(tmp_path, float_model):
    path = _write_ok(tmp_path, float_model)
    data = path.read_bytes()
    path.write_bytes(data[:len(data) - 1000])
    _bad(path, "truncated")
    path.write_bytes(data[:100])
    _bad(path, "not a GGUF file llmaccel can read")


def test_byte_count_wrong(tmp_path, float_model):
    """A tensor whose data run past its neighbour's (offset table edited)."""
    path = _write_ok(tmp_path, float_model)
    r = gguf.GGUFReader(path)
    t = r.tensors[3]
    off_part = t.field.parts[-1]                     # the tensor's data offset
    data = bytearray(path.read_bytes())
    at = t.field.offset + sum(int(p.nbytes) for p in t.field.parts[:-1])
    assert int(np.frombuffer(data[at:at + 8], "<u8")[0]) == int(off_part[0])
    data[at:at + 8] = np.array([int(off_part[0]) + 64], "<u8").tobytes()
    path.write_bytes(bytes(data))
    _bad(path, "overlap|truncated")


def test_unknown_tensor_type(tmp_path, float_model):
    path = _write_ok(tmp_path, float_model)
    r = gguf.GGUFReader(path)
    t = r.tensors[2]
    at = t.field.offset + sum(int(p.nbytes) for p in t.field.parts[:-2])
    data = bytearray(path.read_bytes())
    data[at:at + 4] = np.array([250], "<u4").tobytes()
    path.write_bytes(bytes(data))
    _bad(path, "unknown type")


def test_unsupported_tensor_type(tmp_path, float_model):
    path = ggufgen.write(tmp_path / "m.gguf", float_model, {"linear": "Q4_0"},
                         skip={"blk.0.ffn_up.weight"},
                         extra={"blk.0.ffn_up.weight": (
                             np.zeros((256, 256 // 256 * 84), np.uint8), T.Q2_K)})
    _bad(path, "blk.0.ffn_up.weight has type Q2_K, which llmaccel does not read")


def test_missing_tensor(tmp_path, float_model):
    path = ggufgen.write(tmp_path / "m.gguf", float_model, {"linear": "Q4_0"},
                         skip={"blk.0.attn_v.weight"})
    _bad(path, "blk.0.attn_v.weight is missing")


def test_wrong_architecture(tmp_path, float_model):
    path = ggufgen.write(tmp_path / "m.gguf", float_model, {"linear": "Q4_0"}, arch="qwen2")
    _bad(path, "architecture 'qwen2' is not supported.*biases")


def test_shapes_disagree_with_metadata(tmp_path, float_model):
    path = _write_ok(tmp_path, float_model, meta={"feed_forward_length": 512})
    _bad(path, "ffn_gate.weight has shape \\[256, 256\\]; the metadata say \\[512, 256\\]")
    path = _write_ok(tmp_path, float_model, meta={"attention.head_count": None})
    _bad(path, "attention.head_count is missing")


def test_cli_errors_and_inspect(tmp_path, float_model, capsys):
    from llmaccel.cli import main
    path = ggufgen.write(tmp_path / "m.gguf", float_model, {"linear": "Q4_K", "output": "Q8_0"})
    assert main(["inspect", str(path), "--config", "tiny", "--json"]) == 0
    import json
    rep = json.loads(capsys.readouterr().out)
    rows = {r["tensor"]: r for r in rep["tensors"]}
    assert rows["blk.0.attn_q.weight"]["runs_on"] == "lut w4"
    assert rows["blk.0.attn_q.weight"]["codes_kept"]
    assert rows["output.weight"]["runs_on"] == "systolic int8g"
    assert rows["output.weight"]["file_bits_per_weight"] == 8.5
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(path.read_bytes()[:5000])
    for argv in (["inspect", str(bad)], ["generate", "--model", str(bad), "--executor",
                                         "golden"]):
        assert main(argv) != 0
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and ("truncated" in err[0] or "can read" in err[0]), err
