"""Built-in models: a LLaMA-style decoder block with real shapes and seeded random weights."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

__all__ = ["BlockShape", "SHAPES", "DecoderBlock", "make_block", "demo_shape", "demo_inputs"]


@dataclass(frozen=True)
class BlockShape:
    hidden: int
    inter: int
    heads: int
    kv_heads: int
    head_dim: int
    rope_theta: float = 10000.0
    eps: float = 1e-5


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
    """RMSNorm -> attention (RoPE, GQA, causal) -> residual -> RMSNorm -> SiLU-gated MLP ->
    residual, on x [T, hidden]."""

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
        t = x.shape[0]
        h = self.input_layernorm(x)
        q = self.q_proj(h).view(t, s.heads, s.head_dim).transpose(0, 1)
        k = self.k_proj(h).view(t, s.kv_heads, s.head_dim).transpose(0, 1)
        v = self.v_proj(h).view(t, s.kv_heads, s.head_dim).transpose(0, 1)
        pos = torch.arange(t)
        q, k = rope(q, pos, s.rope_theta), rope(k, pos, s.rope_theta)
        rep = s.heads // s.kv_heads
        k = k.repeat_interleave(rep, dim=0)
        v = v.repeat_interleave(rep, dim=0)
        att = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.o_proj(att.transpose(0, 1).reshape(t, s.heads * s.head_dim))
        h = self.post_attention_layernorm(x)
        return x + self.down_proj(torch.nn.functional.silu(self.gate_proj(h)) * self.up_proj(h))


def make_block(shape="smollm2-135m", seed=0) -> DecoderBlock:
    """A decoder block with seeded random weights (std 0.02, norms near 1)."""
    if isinstance(shape, str):
        if shape not in SHAPES:
            raise ValueError(f"unknown block shape {shape!r}; choose from {', '.join(SHAPES)}")
        shape = SHAPES[shape]
    g = torch.Generator().manual_seed(seed)
    blk = DecoderBlock(shape)
    with torch.no_grad():
        for name, p in blk.named_parameters():
            if name.endswith("layernorm.weight"):
                p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(0.02 * torch.randn(p.shape, generator=g))
    return blk.eval()


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
