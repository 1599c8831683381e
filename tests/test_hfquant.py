"""GPTQ (2/3/4/8 bit, act-order, both zero conventions), AWQ and BitNet checkpoints written
from known integer weights: the codes survive exactly, the weights equal the format's own
dequantization, and whole models run RTL = golden."""

import json

import numpy as np
import pytest

import hfqgen
from compiler.generate import Generator
from compiler.hfquant import QuantFileError, unpack_bits
from compiler.llm import compile_llm
from compiler.llmquant import quantize_model
from compiler.modelload import calibration, load
from compiler.models import ModelConfig, ModelFileError, hf_name, make_model
from compiler.qweight import weight_error
from sw.golden import Machine

SMALL = ModelConfig(128, 256, 4, 2, 1, 128, 32, max_position_embeddings=64)
CASES = [("gptq", dict(bits=4)), ("gptq", dict(bits=4, act_order=True)),
         ("gptq", dict(bits=3, act_order=True)), ("gptq", dict(bits=2)),
         ("gptq", dict(bits=8, sym=True)), ("gptq", dict(bits=4, checkpoint_format="gptq_v2")),
         ("awq", {}), ("bitnet", {}), ("bitnet", dict(linear_class="autobitlinear"))]


@pytest.fixture(scope="module")
def tinyq(tiny):
    return tiny.replace(name="tinyq", act_depth=2048, wgt_depth=512, scale_depth=256,
                        dram_bytes=1 << 21)


@pytest.fixture(scope="module")
def float_model():
    return make_model(SMALL, seed=2)


def _key(hf):
    parts = hf.split(".")
    return f"{parts[2]}.{parts[4]}"


@pytest.mark.parametrize("method,kw", CASES, ids=lambda v: str(v))
def test_codes_survive(method, kw, tmp_path, float_model):
    """Each linear's codes come back unchanged (in the order the kernel reads them) and the
    weights equal the format's own dequantization exactly."""
    seed = CASES.index((method, kw))
    ref = hfqgen.write(tmp_path / "m", float_model, method, seed=seed, **kw)
    v2 = kw.get("checkpoint_format") == "gptq_v2"
    if v2:          # the file stores zeros as they are: read back with the v1 rule it is off
        cfg = json.loads((tmp_path / "m" / "config.json").read_text())
        assert cfg["quantization_config"]["checkpoint_format"] == "gptq_v2"
    model, _, _ = load(tmp_path / "m")
    for hf, (w, q) in ref.items():
        qw = model.qweights[_key(hf)]
        codes = qw.codes.astype(np.int64)
        if qw.perm is not None:
            full = np.empty_like(codes)
            full[:, qw.perm] = codes
            codes = full
        centre = 0 if method == "bitnet" else 1 << (qw.bits - 1)
        assert np.array_equal(codes, q - centre), f"seed {seed} {hf}"
        got = qw.dequant()
        if v2:
            assert not np.allclose(got, w), hf      # zeros taken as stored, not plus one
        else:
            assert np.array_equal(got, w), f"seed {seed} {hf}"
            assert weight_error(qw, w)[0] <= weight_error(qw)[0] + 1e-12
    assert (qw.perm is not None) == bool(kw.get("act_order"))


@pytest.mark.parametrize("method,kw", [("gptq", dict(bits=4, act_order=True)),
                                        ("awq", {}), ("bitnet", {})], ids=str)
def test_models_run_exactly(method, kw, tmp_path, float_model, tinyq):
    """The whole model compiles with its file's codes; golden tokens and logits; the act-order
    GPTQ model (its inputs gathered by the loads) also on the fast runner."""
    hfqgen.write(tmp_path / "m", float_model, method, seed=7, **kw)
    model, _, _ = load(tmp_path / "m")
    qm = quantize_model(model, calibration(model, None, None, 24))
    cm = compile_llm(tinyq, qm, max_len=32, prefill=[8], decode=[32])
    for name, k in cm.kernels.items():
        if name.startswith("L0."):
            qw = model.qweights["0." + name[3:]]
            assert np.abs(k.w_dequant - qw.dequant()).max() == weight_error(qw)[0]
    prompt = [3, 90, 17, 64]
    g = Generator(cm, Machine(tinyq)).generate(prompt, 3)
    if kw.get("act_order"):
        from sim.fast import FastRunner
        r = Generator(cm, FastRunner(tinyq, quiet=True)).generate(prompt, 3)
        assert r.tokens == g.tokens
        assert all(np.array_equal(a, b) for a, b in zip(r.logits, g.logits))


def test_unpack_bits_streams_across_words():
    """3-bit values straddle int32 words: value 10 is bits 30-32 of the stream."""
    words = np.array([[3 << 30, 1, 0]], np.uint32).view(np.int32)
    v = unpack_bits(words, 3, 32)
    assert v[0, 10] == 7 and v[0].sum() == 7


def test_bad_checkpoints(tmp_path, float_model):
    d = tmp_path / "m"
    hfqgen.write(d, float_model, "gptq", bits=4)
    cfg = json.loads((d / "config.json").read_text())

    def expect(match, change):
        c = json.loads(json.dumps(cfg))
        change(c)
        (d / "config.json").write_text(json.dumps(c))
        with pytest.raises((QuantFileError, ModelFileError), match=match) as e:
            load(d)
        assert "\n" not in str(e.value)
    expect("quant_method 'hqq' is not supported", lambda c: c["quantization_config"].update(
        quant_method="hqq"))
    expect("GPTQ bits 5", lambda c: c["quantization_config"].update(bits=5))
    expect("qweight has shape", lambda c: c["quantization_config"].update(group_size=64,
                                                                         bits=8))
    expect("sub-norms", lambda c: c.update(model_type="bitnet"))
    (d / "config.json").write_text(json.dumps(cfg))
    from compiler import safetensors
    t, _ = safetensors.load(d / "model.safetensors")
    p = hf_name("layers.0.mlp.up_proj.weight").removesuffix(".weight")
    bad = dict(t)
    bad[f"{p}.g_idx"] = np.zeros(SMALL.hidden_size, np.int32) + 9
    safetensors.save(d / "model.safetensors", bad)
    with pytest.raises(QuantFileError, match="g_idx names groups outside"):
        load(d)
    bad = {k: v for k, v in t.items() if k != f"{p}.scales"}
    safetensors.save(d / "model.safetensors", bad)
    with pytest.raises(QuantFileError, match="up_proj.scales is missing"):
        load(d)
