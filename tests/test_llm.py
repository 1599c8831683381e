"""Whole decoder-only models on the accelerator: prefill and decode programs, the KV cache,
sessions, and token generation, RTL = golden bit for bit."""

import re

import numpy as np
import pytest

from compiler.generate import Generator
from compiler.llm import compile_llm
from compiler.llmquant import float_forward, quantize_model
from compiler.lower import CompileError
from compiler.models import ModelConfig, make_model
from sw.executor import Session
from sw.golden import Machine
from sw.program import ProgramError


def _calibrated(model):
    rng = np.random.default_rng(0)
    return quantize_model(model, [rng.integers(0, 64, 24) for _ in range(4)])


@pytest.fixture(scope="module")
def toy():
    model = make_model("toy", seed=1)
    return model, _calibrated(model)


@pytest.fixture(scope="module")
def sharp():
    """The toy model with queries and keys scaled up: attention rows far from uniform, so
    probabilities differ from key to key and one read for the wrong key shows."""
    import torch
    model = make_model("toy", seed=1)
    with torch.no_grad():
        for blk in model.layers:
            blk.q_proj.weight.mul_(6)
            blk.k_proj.weight.mul_(6)
    return _calibrated(model)


@pytest.fixture(scope="module")
def toy_llm(tiny, toy):
    return compile_llm(tiny, toy[1])


class Counting:
    """An executor wrapper that counts the bytes written into its memory."""

    def __init__(self, inner):
        self.inner, self.config, self.written = inner, inner.config, 0

    def mem_write(self, addr, data):
        self.written += len(data)
        self.inner.mem_write(addr, data)

    def mem_read(self, addr, n):
        return self.inner.mem_read(addr, n)

    def execute(self, prog_addr, pos=0):
        return self.inner.execute(prog_addr, pos)


def test_generation_rtl_equals_golden(toy_llm, tiny_rtl, tiny):
    """A prompt across a row tile, decode across a cache bucket: every logit, every token
    and the whole KV cache agree."""
    cm = toy_llm
    prompt = [5, 17, 42, 3, 60, 8, 8, 31, 2, 49, 11, 7, 0, 63]
    ref = Generator(cm, Machine(tiny))
    rtl = Generator(cm, tiny_rtl)
    g, v = ref.generate(prompt, 6), rtl.generate(prompt, 6)
    assert g.tokens == v.tokens
    for i, (a, b) in enumerate(zip(g.logits, v.logits)):
        np.testing.assert_array_equal(a, b, err_msg=f"logits before new token {i}")
    assert [r[0] for r in g.runs] == ["prefill16"] + ["decode16"] * 2 + ["decode32"] * 3
    for li in range(cm.model.num_hidden_layers):
        for name in (f"L{li}.k0", f"L{li}.v0"):
            np.testing.assert_array_equal(ref.session.read(name), rtl.session.read(name),
                                          err_msg=name)
    assert all(st["error"] is None and st["sfu_busy"] > 0 for _, _, st in v.runs)


#: GQA groups of 6 query heads (more than tiny's 4 lanes: two MATMULs per group) and of 3
GQA = {"6 heads per kv": ModelConfig(48, 80, 6, 1, 1, 64, 8, max_position_embeddings=64),
       "3 heads per kv": ModelConfig(48, 80, 6, 2, 1, 64, 8, max_position_embeddings=64)}


@pytest.mark.parametrize("shape", ["toy", *GQA])
def test_decode_equals_prefill(toy_llm, tiny, shape):
    """The decode path (one token, the cache appended block by block at its position, a
    group's query heads in lanes of one MATMUL) gives the same int8 logits as prefilling
    the whole sequence (a lane per token, a head at a time): an independent check of the KV
    cache, the position register, the causal mask and the GQA lanes."""
    if shape == "toy":
        cm = toy_llm
    else:
        model = make_model(GQA[shape], seed=2)
        rng = np.random.default_rng(1)
        cm = compile_llm(tiny, quantize_model(model, [rng.integers(0, 64, 24)]))
    prompt = [9, 1, 40, 22, 22, 5, 61, 30, 12]
    g = Generator(cm, Machine(tiny)).generate(prompt, 8)
    seq = prompt + g.tokens[:-1]
    s = Session(Machine(tiny), cm.memory, cm.programs)
    tb = cm.prefill_bucket(len(seq))
    s.write(f"x@{tb}", cm.embed_slot(np.array(seq), tb))
    assert s.run(f"prefill{tb}")["error"] is None
    logits = s.read(f"logits@{tb}")[:cm.model.vocab_size]
    nf = cm.model.num_attention_heads * cm.model.head_dim
    o_all = s.read(f"o@{tb}")[:nf]          # the last layer's attention outputs
    for i in range(8):
        np.testing.assert_array_equal(logits[:, len(prompt) - 1 + i], g.logits[i],
                                      err_msg=f"position {len(prompt) - 1 + i}")
    # the attention outputs themselves, step by step (logits of random weights hardly
    # depend on them)
    R = tiny.rows
    d = Session(Machine(tiny), cm.memory, cm.programs)
    tp = cm.prefill_bucket(len(prompt))
    d.write(f"x@{tp}", cm.embed_slot(np.array(prompt), tp))
    assert d.run(f"prefill{tp}")["error"] is None
    for pos in range(len(prompt), len(seq)):
        d.write(f"x@{R}", cm.embed_slot(np.array([seq[pos]]), R, pos % R))
        assert d.run(f"decode{cm.decode_bucket(pos)}", pos)["error"] is None
        np.testing.assert_array_equal(d.read(f"o@{R}")[:nf, pos % R], o_all[:, pos],
                                      err_msg=f"attention output at position {pos}")


def test_weights_go_to_the_device_once(toy_llm, tiny):
    cm = toy_llm
    ex = Counting(Machine(tiny))
    gen = Generator(cm, ex)
    loaded = ex.written
    assert loaded >= cm.memory.size
    gen.generate([1, 2, 3], 5)
    per_run = (ex.written - loaded) / 5
    assert per_run <= cm.memory.symbols[f"x@{cm.prefill[0]}"].nbytes(), per_run


def test_agrees_with_float(toy, toy_llm, tiny):
    """Greedy tokens from the integer model against the float model's on the same
    sequence (random weights give flat logits, so this is a loose check; the trained
    model's accuracy is in benchmarks/)."""
    model, _ = toy
    prompt = [3, 14, 15, 9, 26, 5]
    g = Generator(toy_llm, Machine(tiny)).generate(prompt, 10)
    seq, same = list(prompt), 0
    for tok in g.tokens:
        same += int(float_forward(model, seq)[-1].argmax()) == tok
        seq.append(tok)
    assert same >= 7, same


def test_bad_requests(toy_llm, tiny, rect):
    gen = Generator(toy_llm, Machine(tiny))
    with pytest.raises(CompileError, match="outside the vocabulary"):
        gen.generate([1, 64], 2)
    with pytest.raises(CompileError, match="cache positions"):
        gen.generate([1] * 40, 40)
    with pytest.raises(CompileError, match="empty"):
        gen.generate([], 2)
    with pytest.raises(CompileError, match="longest prefill"):
        toy_llm.prefill_bucket(33)
    s = Session(Machine(tiny), toy_llm.memory, toy_llm.programs)
    with pytest.raises(ProgramError, match="position"):
        s.run("decode16", 1 << 16)
    m = Machine(rect)
    m.mem_write(0, b"\0")
    with pytest.raises(ProgramError, match="no position register"):
        m.execute(0, 3)


def test_compile_errors(tiny, rect, toy):
    qm = toy[1]
    with pytest.raises(CompileError, match="special-function unit"):
        compile_llm(rect, qm)
    with pytest.raises(CompileError, match="max_len"):
        compile_llm(tiny, qm, max_len=1 << 16)
    with pytest.raises(CompileError, match="prefill bucket"):
        compile_llm(tiny, qm, prefill=[6])


def test_model_config_from_hf_dict():
    c = ModelConfig.from_dict({"hidden_size": 64, "intermediate_size": 128,
                               "num_attention_heads": 4, "num_hidden_layers": 2,
                               "vocab_size": 100, "torch_dtype": "float32"})
    assert c.num_key_value_heads == 4 and c.head_dim == 16
    assert ModelConfig.from_dict(c.to_dict()) == c
    with pytest.raises(ValueError, match="lacks vocab_size"):
        ModelConfig.from_dict({"hidden_size": 64, "intermediate_size": 128,
                               "num_attention_heads": 4, "num_hidden_layers": 2})
    with pytest.raises(ValueError, match="key/value heads"):
        ModelConfig(64, 128, 4, 3, 1, 10)


def test_model_programs_are_shared_by_positions(toy_llm):
    """One program per bucket: the instruction bytes do not grow with the position."""
    assert set(toy_llm.programs) == {f"prefill{t}" for t in toy_llm.prefill} | \
        {f"decode{b}" for b in toy_llm.decode}
    sizes = [len(toy_llm.programs[f"decode{b}"]) for b in toy_llm.decode]
    assert sizes == sorted(sizes) and sizes[-1] < 2 * sizes[0]


def test_unsupported_head_dim(tiny):
    c = ModelConfig(48, 80, 4, 1, 1, 64, 10)
    model = make_model(c)
    qm = quantize_model(model, [np.arange(8)])
    with pytest.raises(CompileError, match="head_dim 10"):
        compile_llm(tiny, qm)


def test_trained_model_rtl_equals_golden(tiny, tiny_rtl):
    """The shipped trained model (its LM head cut in two on tiny's scale scratchpad)."""
    from compiler.modelload import calibration, encode, load
    model, tok, corpus = load("models/charlm")
    qm = quantize_model(model, calibration(model, tok, corpus, 64))
    cm = compile_llm(tiny, qm)
    assert "lm_head[64:]" in cm.kernels
    prompt = encode(tok, "The accelerator ")
    g = Generator(cm, Machine(tiny)).generate(prompt, 4)
    v = Generator(cm, tiny_rtl).generate(prompt, 4)
    assert g.tokens == v.tokens
    assert all(np.array_equal(a, b) for a, b in zip(g.logits, v.logits))


def test_long_cache_runs_the_softmax_in_chunks(tiny, tiny_rtl, sharp):
    """A KV cache longer than the accumulators hold scores for: decode and the long prefill
    run each softmax row in chunks (SOFTMAX_MAX, _SUM, _OUT). Their attention outputs and
    logits equal, bit for bit, those of configurations whose accumulators hold the whole
    row (P V in one piece, or in two), and the RTL equals the golden model at a position
    past the first chunk."""
    qm = sharp
    buckets = dict(max_len=128, prefill=[8, 128], decode=[128])
    cm = compile_llm(tiny, qm, **buckets)
    assert any("softmax max" in (c or "") for c in cm.programs["decode128"].comments)
    wide = tiny.replace(acc_depth=256)
    whole = compile_llm(wide, qm, **buckets)
    assert not any("softmax max" in (c or "") for c in whole.programs["decode128"].comments)
    # a whole row whose P V streams V in pieces (half the weights each, 64 + 64 keys)
    halves = tiny.replace(acc_depth=256, wgt_depth=128)
    pieces = compile_llm(halves, qm, **buckets)

    def pv(c):
        return sum(1 for t in c.programs["decode128"].comments if t and t.startswith("P V h"))
    assert pv(pieces) == 2 * pv(whole)
    prompt = list(np.random.default_rng(3).integers(0, 64, 70))
    runs = []
    for c, cfg in ((cm, tiny), (whole, wide), (pieces, halves)):
        gen = Generator(c, Machine(cfg))
        runs.append((gen.generate(prompt, 3), gen.session))
    (g, chunked), *others = runs
    # the attention outputs themselves (the last decode step's, the prefill's last layer):
    # a one-step error in them can vanish in the int8 rounding after the o projection
    for other, s in others:
        assert g.tokens == other.tokens
        for i, (a, b) in enumerate(zip(g.logits, other.logits)):
            np.testing.assert_array_equal(a, b, err_msg=f"logits before new token {i}")
        for slot in (f"o@{tiny.rows}", "o@128"):
            np.testing.assert_array_equal(chunked.read(slot), s.read(slot), err_msg=slot)
    assert [r[0] for r in g.runs] == ["prefill128", "decode128", "decode128"]
    # the RTL: one decode step at position 72 from the golden model's cache
    ref = Session(Machine(tiny), cm.memory, cm.programs)
    rtl = Session(tiny_rtl, cm.memory, cm.programs)
    seq = prompt + g.tokens[:2]
    ref.write("x@128", cm.embed_slot(np.array(seq), 128))
    assert ref.run("prefill128")["error"] is None
    for sym in cm.memory.symbols:
        if re.fullmatch(r"L\d+\.[kv]\d+", sym):
            rtl.write(sym, ref.read(sym))
    pos = len(seq) - 1
    lane = pos % tiny.rows
    for s in (ref, rtl):
        s.write(f"x@{tiny.rows}", cm.embed_slot(np.array(seq[-1:]), tiny.rows, lane))
        assert s.run("decode128", pos)["error"] is None
    np.testing.assert_array_equal(rtl.read(f"logits@{tiny.rows}"),
                                  ref.read(f"logits@{tiny.rows}"))
