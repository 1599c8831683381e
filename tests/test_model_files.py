"""Model files: safetensors and Hugging Face-style model directories, every defect one clear
line from the command line."""

import json
import struct

import numpy as np
import pytest

from compiler import safetensors
from compiler.models import ModelFileError, load_model, make_model, save_model
from llmaccel.cli import main


def test_safetensors_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    t = {"a": rng.normal(size=(3, 5)).astype(np.float32), "b": np.arange(7, dtype=np.int8),
         "c": rng.normal(size=(2, 2)).astype(np.float16)}
    safetensors.save(tmp_path / "m.safetensors", t, {"format": "pt"})
    back, meta = safetensors.load(tmp_path / "m.safetensors")
    assert meta == {"format": "pt"}
    for k in t:
        assert back[k].dtype == t[k].dtype
        np.testing.assert_array_equal(back[k], t[k])


def test_bf16_is_widened_exactly(tmp_path):
    x = np.array([1.5, -2.25, 3.0e38, 1e-3], np.float32)
    raw = (x.view(np.uint32) >> 16).astype(np.uint16)      # exact where the low bits are 0
    head = json.dumps({"w": {"dtype": "BF16", "shape": [4], "data_offsets": [0, 8]}}).encode()
    (tmp_path / "m.safetensors").write_bytes(struct.pack("<Q", len(head)) + head
                                             + raw.tobytes())
    w = safetensors.load(tmp_path / "m.safetensors")[0]["w"]
    np.testing.assert_array_equal(w, (raw.astype(np.uint32) << 16).view(np.float32))


@pytest.mark.parametrize("defect, message", [
    ("truncated", "truncated"),
    ("header", "runs past the end"),
    ("json", "not JSON"),
    ("dtype", "unknown dtype"),
    ("bytes", "needs"),
])
def test_bad_safetensors(tmp_path, defect, message):
    p = tmp_path / "m.safetensors"
    safetensors.save(p, {"w": np.zeros((4, 4), np.float32)})
    data = bytearray(p.read_bytes())
    n = struct.unpack("<Q", data[:8])[0]
    head = data[8:8 + n].decode()
    if defect == "truncated":
        data = data[:-10]
    elif defect == "header":
        data[:8] = struct.pack("<Q", 1 << 20)
    elif defect == "json":
        data[8] = ord("!")
    elif defect == "dtype":
        data[8:8 + n] = head.replace('"F32"', '"Q99"').ljust(n).encode()
    elif defect == "bytes":
        data[8:8 + n] = head.replace("[4,4]", "[4,5]").ljust(n).encode()
    p.write_bytes(bytes(data))
    with pytest.raises(safetensors.SafetensorsError, match=message):
        safetensors.load(p)


def test_model_directory_round_trip(tmp_path):
    import torch
    m = make_model("toy", seed=2)
    save_model(m, tmp_path)
    back = load_model(tmp_path)
    ids = torch.arange(12)
    assert torch.equal(m(ids), back(ids))


@pytest.mark.parametrize("defect, message", [
    ("no config", "no config.json"),
    ("missing tensor", "is missing"),
    ("shape", "has shape"),
    ("architecture", "not a LLaMA-family"),
    ("config field", "lacks vocab_size"),
    ("activation", "hidden_act 'swiglu_v2' is an op the compiler cannot map"),
])
def test_bad_model_directories(tmp_path, capsys, defect, message):
    m = make_model("toy", seed=2)
    save_model(m, tmp_path)
    cfg = json.loads((tmp_path / "config.json").read_text())
    t, _ = safetensors.load(tmp_path / "model.safetensors")
    if defect == "no config":
        (tmp_path / "config.json").unlink()
    elif defect == "missing tensor":
        del t["model.norm.weight"]
        safetensors.save(tmp_path / "model.safetensors", t)
    elif defect == "shape":
        t["model.layers.0.mlp.up_proj.weight"] = np.zeros((81, 48), np.float32)
        safetensors.save(tmp_path / "model.safetensors", t)
    elif defect == "architecture":
        cfg.update(model_type="gpt2", architectures=["GPT2LMHeadModel"])
    elif defect == "config field":
        del cfg["vocab_size"]
    elif defect == "activation":
        cfg["hidden_act"] = "swiglu_v2"
    if defect in ("architecture", "config field", "activation"):
        (tmp_path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ModelFileError, match=message):
        load_model(tmp_path)
    assert main(["generate", "--model", str(tmp_path), "--executor", "golden"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert message in err[-1] and "Traceback" not in "".join(err)


@pytest.mark.parametrize("act", ["gelu", "relu2"])
def test_other_activations(tmp_path, tiny, act):
    """A model file with another MLP activation: its table on the SFU, the same float
    function in the reference; greedy tokens mostly agree with float."""
    from compiler.generate import Generator
    from compiler.llm import compile_llm
    from compiler.llmquant import float_forward, quantize_model
    from sw.golden import Machine
    m = make_model("toy", seed=2)
    save_model(m, tmp_path)
    cfg = json.loads((tmp_path / "config.json").read_text())
    cfg["hidden_act"] = act
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    model = load_model(tmp_path)
    assert model.config.hidden_act == act
    rng = np.random.default_rng(0)
    qm = quantize_model(model, [rng.integers(0, 64, 24) for _ in range(4)])
    silu = quantize_model(m, [rng.integers(0, 64, 24) for _ in range(4)])
    assert not np.array_equal(qm.layers[0].act, silu.layers[0].act)
    prompt = [3, 14, 15, 9, 26, 5]
    g = Generator(compile_llm(tiny, qm), Machine(tiny)).generate(prompt, 8)
    seq, same = list(prompt), 0
    for tok in g.tokens:
        same += int(float_forward(model, seq)[-1].argmax()) == tok
        seq.append(tok)
    assert same >= 6, same


def test_generate_command(capsys):
    assert main(["generate", "--model", "toy", "--prompt-ids", "1,2,3", "-n", "3",
                 "--executor", "golden", "--json"]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert len(rep["tokens"]) == 3 and rep["prompt"] == [1, 2, 3]
    assert 0 <= rep["top1_agreement_vs_float"] <= 1 and rep["layers"] == 2
    assert main(["generate", "--model", "toy", "--layers", "1", "--prompt-tokens", "5",
                 "-n", "2", "--executor", "golden", "--json"]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep["layers"] == 1 and len(rep["prompt"]) == 5
    assert main(["generate", "--model", "toy", "--layers", "9", "--executor", "golden"]) == 2
    assert "the model has 2" in capsys.readouterr().err
    assert main(["generate", "--model", "toy", "--prompt", "hi", "--executor", "golden"]) == 2
    assert "no character tokenizer" in capsys.readouterr().err
    assert main(["generate", "--model", "nosuch", "--executor", "golden"]) == 2
    assert "neither a model file or directory" in capsys.readouterr().err


def test_hugging_face_llama_compiles(tiny):
    """An HF LlamaForCausalLM from a config with random weights (optional transformers)."""
    transformers = pytest.importorskip("transformers")
    import torch
    from compiler.llm import compile_llm
    from compiler.llmquant import float_forward, quantize_model
    from compiler.models import from_hf
    hf_cfg = transformers.LlamaConfig(hidden_size=48, intermediate_size=80,
                                      num_attention_heads=3, num_key_value_heads=1,
                                      head_dim=16, num_hidden_layers=2, vocab_size=64,
                                      max_position_embeddings=64)
    hf = transformers.LlamaForCausalLM(hf_cfg).eval()
    m = from_hf(hf)
    ids = torch.arange(10)
    with torch.no_grad():
        ref = hf(ids[None]).logits[0]
    torch.testing.assert_close(float_forward(m, ids), ref, rtol=1e-4, atol=1e-4)
    compile_llm(tiny, quantize_model(m, [np.arange(16)]))
