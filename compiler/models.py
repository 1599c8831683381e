"""Built-in models: LLaMA-style decoder blocks and whole decoder-only models, configured like
Hugging Face's ``LlamaConfig``, with real shapes and seeded random weights."""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np

import torch
from torch import nn

from sw.errors import UserError
from . import safetensors

__all__ = ["BlockShape", "SHAPES", "DecoderBlock", "make_block", "demo_shape", "demo_inputs",
           "ModelConfig", "MODELS", "LlamaModel", "make_model", "save_model", "load_model",
           "ModelFileError", "hf_name", "from_hf", "ACTIVATIONS", "activation"]


@dataclass(frozen=True)
class BlockShape:
    hidden: int
    inter: int
    heads: int
    kv_heads: int
    head_dim: int
    rope_theta: float = 10000.0
    eps: float = 1e-5
    hidden_act: str = "silu"


#: The MLP activations the compiler maps (a table on the SFU), by Hugging Face's names.
ACTIVATIONS = {
    "silu": torch.nn.functional.silu,
    "gelu": torch.nn.functional.gelu,
    "relu2": lambda x: torch.relu(x) ** 2,
}


def activation(name):
    """The float function of MLP activation ``name`` (Hugging Face's ``hidden_act``)."""
    if name not in ACTIVATIONS:
        raise ValueError(f"hidden_act {name!r} is an op the compiler cannot map (it maps "
                         f"{', '.join(ACTIVATIONS)})")
    return ACTIVATIONS[name]


SHAPES = {
    # real model dimensions (see ../shared/reference/llm_inputs.md)
    "smollm2-135m": BlockShape(576, 1536, 9, 3, 64, rope_theta=1e5),
    "qwen2.5-0.5b": BlockShape(896, 4864, 14, 2, 64, rope_theta=1e6),
    "tinyllama-1.1b": BlockShape(2048, 5632, 32, 4, 64),
    "llama2-7b": BlockShape(4096, 11008, 32, 32, 128),
    # small shapes for fast tests (still GQA, still odd sizes)
    "toy": BlockShape(48, 80, 3, 1, 16),
}


class RMSNorm(nn.Module):
    def __init__(self, dim, eps):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x):
        var = x.pow(2).mean(-1, keepdim=True)
        return x * torch.rsqrt(var + self.eps) * self.weight


def rope(x, pos, theta):
    """Rotary embedding (the HF "rotate half" form) on x [heads, T, head_dim]."""
    d = x.shape[-1]
    inv = 1.0 / (theta ** (torch.arange(0, d, 2, dtype=torch.float32) / d))
    ang = pos[:, None].float() * inv[None, :]
    cos = torch.cat([ang.cos(), ang.cos()], -1)
    sin = torch.cat([ang.sin(), ang.sin()], -1)
    x1, x2 = x[..., : d // 2], x[..., d // 2:]
    return x * cos + torch.cat([-x2, x1], -1) * sin


class DecoderBlock(nn.Module):
    """RMSNorm -> attention (RoPE, GQA, causal) -> residual -> RMSNorm -> gated MLP (SiLU,
    GELU or ReLU^2: ``hidden_act``) -> residual, on x [T, hidden]."""

    def __init__(self, s: BlockShape):
        super().__init__()
        self.s = s
        h, hd = s.hidden, s.head_dim
        self.input_layernorm = RMSNorm(h, s.eps)
        self.q_proj = nn.Linear(h, s.heads * hd, bias=False)
        self.k_proj = nn.Linear(h, s.kv_heads * hd, bias=False)
        self.v_proj = nn.Linear(h, s.kv_heads * hd, bias=False)
        self.o_proj = nn.Linear(s.heads * hd, h, bias=False)
        self.post_attention_layernorm = RMSNorm(h, s.eps)
        self.gate_proj = nn.Linear(h, s.inter, bias=False)
        self.up_proj = nn.Linear(h, s.inter, bias=False)
        self.down_proj = nn.Linear(s.inter, h, bias=False)

    def forward(self, x):
        s = self.s
        *lead, t, _ = x.shape
        h = self.input_layernorm(x)

        def heads(y, n):        # [..., T, n * hd] -> [..., n, T, hd]
            return y.view(*lead, t, n, s.head_dim).transpose(-3, -2)
        q = heads(self.q_proj(h), s.heads)
        k = heads(self.k_proj(h), s.kv_heads)
        v = heads(self.v_proj(h), s.kv_heads)
        pos = torch.arange(t)
        q, k = rope(q, pos, s.rope_theta), rope(k, pos, s.rope_theta)
        rep = s.heads // s.kv_heads
        k = k.repeat_interleave(rep, dim=-3)
        v = v.repeat_interleave(rep, dim=-3)
        att = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.o_proj(att.transpose(-3, -2).reshape(*lead, t, s.heads * s.head_dim))
        h = self.post_attention_layernorm(x)
        act = activation(s.hidden_act)
        return x + self.down_proj(act(self.gate_proj(h)) * self.up_proj(h))


def make_block(shape="smollm2-135m", seed=0) -> DecoderBlock:
    """A decoder block with seeded random weights (std 0.02, norms near 1)."""
    if isinstance(shape, str):
        if shape not in SHAPES:
            raise ValueError(f"unknown block shape {shape!r}; choose from {', '.join(SHAPES)}")
        shape = SHAPES[shape]
    return _seeded(DecoderBlock(shape), seed)


def _seeded(module, seed):
    """``module`` with seeded random weights: norm weights 1 + 0.1 N(0, 1), embeddings
    N(0, 1), everything else 0.02 N(0, 1), drawn in parameter order; in eval mode."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if name.endswith("norm.weight"):
                p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=g))
            elif name == "embed_tokens.weight":
                p.copy_(torch.randn(p.shape, generator=g))
            else:
                p.copy_(0.02 * torch.randn(p.shape, generator=g))
    return module.eval()


def demo_shape(config):
    """The block shape the demo uses on ``config``: SmolLM2-135M's on a 16-row or larger
    array, the toy shape on the small test arrays."""
    return "smollm2-135m" if config.rows >= 16 else "toy"


def demo_inputs(blk, tokens, seed=0):
    """The demo's seeded inputs for ``blk``: three calibration inputs and the test input,
    each ``tokens x hidden``."""
    g = torch.Generator().manual_seed(seed + 1)
    calib = [(torch.randn(tokens, blk.s.hidden, generator=g),) for _ in range(3)]
    return calib, torch.randn(tokens, blk.s.hidden, generator=g)


@dataclass(frozen=True)
class ModelConfig:
    """A decoder-only LLaMA-family model, with Hugging Face ``LlamaConfig``'s field names."""
    hidden_size: int
    intermediate_size: int
    num_attention_heads: int
    num_key_value_heads: int
    num_hidden_layers: int
    vocab_size: int
    head_dim: int = None
    rope_theta: float = 10000.0
    rms_norm_eps: float = 1e-5
    tie_word_embeddings: bool = False
    max_position_embeddings: int = 2048
    hidden_act: str = "silu"

    def __post_init__(self):
        if self.head_dim is None:
            object.__setattr__(self, "head_dim", self.hidden_size // self.num_attention_heads)
        if self.num_attention_heads % self.num_key_value_heads:
            raise ValueError(f"{self.num_attention_heads} attention heads are not a multiple "
                             f"of {self.num_key_value_heads} key/value heads")
        if self.head_dim % 2:
            raise ValueError(f"head_dim {self.head_dim} is odd (RoPE rotates halves)")
        activation(self.hidden_act)

    def linears(self, layer) -> dict:
        """Decoder layer ``layer``'s linear layers: name -> (Hugging Face weight name,
        shape ``(N, K)``)."""
        h, hd, inter = self.hidden_size, self.head_dim, self.intermediate_size
        q, kv = self.num_attention_heads * hd, self.num_key_value_heads * hd
        shapes = {"q_proj": (q, h), "k_proj": (kv, h), "v_proj": (kv, h), "o_proj": (h, q),
                  "gate_proj": (inter, h), "up_proj": (inter, h), "down_proj": (h, inter)}
        return {n: (hf_name(f"layers.{layer}.{n}.weight"), s) for n, s in shapes.items()}

    @property
    def block(self) -> BlockShape:
        return BlockShape(self.hidden_size, self.intermediate_size, self.num_attention_heads,
                          self.num_key_value_heads, self.head_dim, self.rope_theta,
                          self.rms_norm_eps, self.hidden_act)

    @classmethod
    def from_dict(cls, d: dict):
        """From a Hugging Face ``config.json`` dict (unknown keys ignored)."""
        names = {f.name for f in fields(cls)}
        missing = [n for n in _REQUIRED if n not in d]
        if missing:
            raise ValueError(f"model config lacks {', '.join(missing)}")
        kw = {k: v for k, v in d.items() if k in names}
        kw.setdefault("num_key_value_heads", d.get("num_attention_heads"))
        return cls(**kw)

    def to_dict(self) -> dict:
        return dict(asdict(self), architectures=["LlamaForCausalLM"], model_type="llama")

    def save(self, path):
        with open(path, "w") as f:
            json.dump(self.to_dict(), f, indent=2)


_REQUIRED = ("hidden_size", "intermediate_size", "num_attention_heads", "num_hidden_layers",
             "vocab_size")

MODELS = {
    "smollm2-135m": ModelConfig(576, 1536, 9, 3, 30, 49152, 64, rope_theta=1e5,
                                tie_word_embeddings=True, max_position_embeddings=8192),
    # small models for tests and the demo on the small arrays (still GQA)
    "toy": ModelConfig(48, 80, 3, 1, 2, 64, 16, max_position_embeddings=64),
}


class LlamaModel(nn.Module):
    """Embedding, ``num_hidden_layers`` decoder blocks, final RMSNorm and LM head: the float
    reference. ``forward(ids [T]) -> logits [T, vocab]`` (positions 0..T-1)."""

    def __init__(self, c: ModelConfig):
        super().__init__()
        self.config = c
        self.embed_tokens = nn.Embedding(c.vocab_size, c.hidden_size)
        self.layers = nn.ModuleList(DecoderBlock(c.block) for _ in range(c.num_hidden_layers))
        self.norm = RMSNorm(c.hidden_size, c.rms_norm_eps)
        self.lm_head = nn.Linear(c.hidden_size, c.vocab_size, bias=False)
        if c.tie_word_embeddings:
            self.lm_head.weight = self.embed_tokens.weight

    def forward(self, ids):
        x = self.embed_tokens(ids)
        for blk in self.layers:
            x = blk(x)
        return self.lm_head(self.norm(x))


def make_model(config="toy", seed=0) -> LlamaModel:
    """A model with seeded random weights (std 0.02, norms near 1, embeddings std 1)."""
    if isinstance(config, str):
        if config not in MODELS:
            raise ValueError(f"unknown model {config!r}; choose from {', '.join(MODELS)}")
        config = MODELS[config]
    return _seeded(LlamaModel(config), seed)


class ModelFileError(UserError):
    """A model directory that cannot be loaded (says which file and what is wrong)."""


_BLOCK_HF = {"q_proj": "self_attn.q_proj", "k_proj": "self_attn.k_proj",
             "v_proj": "self_attn.v_proj", "o_proj": "self_attn.o_proj",
             "gate_proj": "mlp.gate_proj", "up_proj": "mlp.up_proj",
             "down_proj": "mlp.down_proj", "input_layernorm": "input_layernorm",
             "post_attention_layernorm": "post_attention_layernorm"}


def hf_name(name):
    """Hugging Face ``LlamaForCausalLM``'s name of one of LlamaModel's parameters."""
    m = re.fullmatch(r"layers\.(\d+)\.(\w+)\.weight", name)
    if m:
        return f"model.layers.{m[1]}.{_BLOCK_HF[m[2]]}.weight"
    return name if name.startswith("lm_head") else f"model.{name}"


def save_model(model: LlamaModel, directory, *, tokenizer=None, dtype=np.float32):
    """``config.json`` + ``model.safetensors`` (Hugging Face's names) in ``directory``;
    ``tokenizer``: a dict written as ``tokenizer.json``."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    model.config.save(d / "config.json")
    tensors = {hf_name(k): v.detach().numpy().astype(dtype)
               for k, v in model.state_dict().items()
               if not (k == "lm_head.weight" and model.config.tie_word_embeddings)}
    safetensors.save(d / "model.safetensors", tensors, {"format": "pt"})
    if tokenizer is not None:
        (d / "tokenizer.json").write_text(json.dumps(tokenizer))


def _from_tensors(cfg: ModelConfig, tensors: dict, where) -> LlamaModel:
    """A LlamaModel from Hugging Face-named tensors (numpy or torch), each checked."""
    model = LlamaModel(cfg)
    state = {}
    for name, p in model.state_dict().items():
        key = hf_name(name)
        if name == "lm_head.weight" and cfg.tie_word_embeddings:
            key = hf_name("embed_tokens.weight")
        if key not in tensors:
            raise ModelFileError(f"{where}: tensor {key} is missing")
        t = tensors[key]
        if tuple(t.shape) != tuple(p.shape):
            raise ModelFileError(f"{where}: {key} has shape {list(t.shape)}; the "
                                 f"configuration says {list(p.shape)}")
        state[name] = torch.as_tensor(np.asarray(t, np.float32)).clone()
    model.load_state_dict(state)
    return model.eval()


def from_hf(hf_model) -> LlamaModel:
    """A LlamaModel from a Hugging Face ``LlamaForCausalLM`` (``transformers``, optional):
    its configuration and weights, nothing else. Unsupported parts of the configuration
    (attention or MLP biases, RoPE scaling, another activation) are refused."""
    d = hf_model.config.to_dict()
    for key, ok in (("attention_bias", False), ("mlp_bias", False), ("rope_scaling", None)):
        if d.get(key, ok) != ok:
            raise ModelFileError(f"{type(hf_model).__name__}: {key} = {d[key]!r} is not "
                                 f"supported (only {ok!r})")
    try:
        cfg = ModelConfig.from_dict(d)
    except (TypeError, ValueError) as e:
        raise ModelFileError(f"{type(hf_model).__name__}: {e}") from None
    sd = {k: v.detach().float().numpy() for k, v in hf_model.state_dict().items()}
    return _from_tensors(cfg, sd, type(hf_model).__name__)


def load_model(directory, tensors=None) -> LlamaModel:
    """A LlamaModel from a Hugging Face-style directory (``config.json`` and
    ``model.safetensors`` or its shards), every tensor checked against the configuration.
    A quantized checkpoint (GPTQ, AWQ, BitNet: compiler.hfquant) gives the model its
    linear layers' integer weights as ``model.qweights``. ``tensors``: the directory's
    tensors when the caller has read them already (compiler.hfquant.read_tensors)."""
    d = Path(directory)
    if not (d / "config.json").is_file():
        raise ModelFileError(f"{d}: no config.json (a model is a directory with config.json "
                             f"and model.safetensors)")
    try:
        raw = json.loads((d / "config.json").read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ModelFileError(f"{d / 'config.json'}: not JSON ({e})") from None
    arch = raw.get("architectures") or []
    if raw.get("model_type") == "bitnet":
        raise ModelFileError(f"{d / 'config.json'}: model_type 'bitnet' has sub-norms before "
                             f"o_proj and down_proj, which the compiler does not map; BitNet "
                             f"weights in a LLaMA model (quant_method bitnet) are read")
    if raw.get("model_type", "llama") != "llama" and "LlamaForCausalLM" not in arch:
        raise ModelFileError(f"{d / 'config.json'}: model_type {raw.get('model_type')!r} "
                             f"is not a LLaMA-family model")
    try:
        cfg = ModelConfig.from_dict(raw)
    except (TypeError, ValueError) as e:
        raise ModelFileError(f"{d / 'config.json'}: {e}") from None
    from .hfquant import quantized_linears, read_tensors
    tensors = read_tensors(d) if tensors is None else tensors
    qc = raw.get("quantization_config")
    if not qc:
        return _from_tensors(cfg, tensors, d / "model.safetensors")
    tensors, qweights = quantized_linears(cfg, tensors, qc, d)
    model = _from_tensors(cfg, tensors, d)
    model.qweights = qweights
    return model
