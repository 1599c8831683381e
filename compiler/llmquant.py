"""A whole decoder-only model in integers: calibration of every activation site and the
integer parameters of every op (linear layers stay float here; compiler.llm lowers them).

Every activation is int8 with one static scale per site (value = integer * scale), from the
largest magnitude seen on the calibration sequences. The sites of layer ``i``: ``i.h``
(norm out), ``i.q``, ``i.k``, ``i.v`` (projections, before and after RoPE: one scale for
both), ``i.o`` (attention out), ``i.yo`` (o_proj out), ``i.xa`` (the residual after
attention), ``i.h2``, ``i.g``, ``i.u``, ``i.s`` (the activation of the gate), ``i.a`` (gate times up),
``i.yd`` (down out), ``i.xb`` (the residual after the MLP); and ``x0`` (embeddings), ``hf``
(final norm out), ``logits``. Probabilities are in 1/128ths (the SFU's softmax).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch

from .models import LlamaModel, activation, rope
from .quantize import act_scale, requant_params
from .sfuops import (FUNCTIONS, add_params, function_table, mul_params, norm_params,
                     softmax_params)

__all__ = ["float_forward", "calibrate", "QuantModel", "LayerParams", "quantize_model",
           "PROB_SCALE"]

PROB_SCALE = 1.0 / 128


def float_forward(model: LlamaModel, ids, probe=None):
    """The model's float forward on ``ids`` [T] (positions 0..T-1), calling
    ``probe(site, tensor)`` at every activation site; returns logits [T, vocab]."""
    c = model.config
    probe = probe or (lambda name, t: None)
    ids = torch.as_tensor(np.asarray(ids), dtype=torch.long)
    t, hd = ids.shape[0], c.head_dim
    pos = torch.arange(t)
    with torch.no_grad():
        x = model.embed_tokens(ids)
        probe("x0", x)
        for i, blk in enumerate(model.layers):
            def p(name, v, i=i):
                probe(f"{i}.{name}", v)
            h = blk.input_layernorm(x)
            p("h", h)
            q, k, v = blk.q_proj(h), blk.k_proj(h), blk.v_proj(h)
            p("q", q), p("k", k), p("v", v)
            q = rope(q.view(t, -1, hd).transpose(0, 1), pos, c.rope_theta)
            k = rope(k.view(t, -1, hd).transpose(0, 1), pos, c.rope_theta)
            p("q", q), p("k", k)
            rep = c.num_attention_heads // c.num_key_value_heads
            vh = v.view(t, -1, hd).transpose(0, 1)
            att = torch.nn.functional.scaled_dot_product_attention(
                q, k.repeat_interleave(rep, 0), vh.repeat_interleave(rep, 0), is_causal=True)
            o = att.transpose(0, 1).reshape(t, -1)
            p("o", o)
            yo = blk.o_proj(o)
            p("yo", yo)
            x = x + yo
            p("xa", x)
            h2 = blk.post_attention_layernorm(x)
            p("h2", h2)
            g, u = blk.gate_proj(h2), blk.up_proj(h2)
            p("g", g), p("u", u)
            s = activation(c.hidden_act)(g)
            p("s", s)
            a = s * u
            p("a", a)
            yd = blk.down_proj(a)
            p("yd", yd)
            x = x + yd
            p("xb", x)
        hf = model.norm(x)
        probe("hf", hf)
        logits = model.lm_head(hf)
        probe("logits", logits)
    return logits


def calibrate(model: LlamaModel, sequences) -> dict:
    """The int8 scale of every site from the largest magnitude over ``sequences``."""
    absmax = {}

    def probe(name, v):
        absmax[name] = max(absmax.get(name, 0.0), float(v.abs().max()))
    for ids in sequences:
        float_forward(model, ids, probe)
    return {k: act_scale(v) for k, v in absmax.items()}


@dataclass
class LayerParams:
    """One decoder layer's integer parameters (the linear layers' float weights and their
    input / output scales: compiler.llm quantizes and lowers them)."""
    norm1: tuple            # (int16 gamma, eps field, shift)
    norm2: tuple
    linears: dict           # name -> (float weight [N, K], input scale, output scale)
    softmax: tuple          # (multiplier, shift)
    pv: tuple               # (int16 multiplier, shift): P V accumulators -> o
    add1: tuple             # (ma, mb, shift): x + yo -> xa
    add2: tuple             # xa + yd -> xb
    act: np.ndarray         # the 256-entry table of the activation: g -> s
    mul: tuple              # (multiplier, shift): s * u -> a


@dataclass
class QuantModel:
    config: object
    scales: dict
    embed: np.ndarray       # int8 [vocab, hidden] at scale x0
    layers: list = field(default_factory=list)
    final_norm: tuple = None
    lm_head: tuple = None   # (float weight, input scale, output scale)


def quantize_model(model: LlamaModel, sequences) -> QuantModel:
    """Calibrate ``model`` on ``sequences`` (lists of token ids) and derive every op's
    integer parameters. A model read from a quantized file carries its linear layers'
    integer weights (``model.qweights``: compiler.qweight.QWeight by ``"{layer}.{name}"``
    and ``"lm_head"``); those replace the float weights."""
    c = model.config
    files = getattr(model, "qweights", {})
    s = calibrate(model, sequences)
    emb = model.embed_tokens.weight.detach().numpy().astype(np.float64)
    embed = np.clip(np.rint(emb / s["x0"]), -127, 127).astype(np.int8)
    qm = QuantModel(c, s, embed)
    x_in = "x0"
    for i, blk in enumerate(model.layers):
        def sc(name, i=i):
            return s[f"{i}.{name}"]

        def w(name, i=i, blk=blk):
            return files.get(f"{i}.{name}",
                             getattr(blk, name).weight.detach().numpy().astype(np.float64))
        g1 = blk.input_layernorm.weight.detach().numpy()
        g2 = blk.post_attention_layernorm.weight.detach().numpy()
        pv_mult, pv_shift = requant_params(np.full(c.head_dim, sc("v") * PROB_SCALE / sc("o")))
        qm.layers.append(LayerParams(
            norm1=norm_params(g1, s[x_in], sc("h"), c.rms_norm_eps),
            norm2=norm_params(g2, sc("xa"), sc("h2"), c.rms_norm_eps),
            linears={
                "q_proj": (w("q_proj"), sc("h"), sc("q")),
                "k_proj": (w("k_proj"), sc("h"), sc("k")),
                "v_proj": (w("v_proj"), sc("h"), sc("v")),
                "o_proj": (w("o_proj"), sc("o"), sc("yo")),
                "gate_proj": (w("gate_proj"), sc("h2"), sc("g")),
                "up_proj": (w("up_proj"), sc("h2"), sc("u")),
                "down_proj": (w("down_proj"), sc("a"), sc("yd")),
            },
            softmax=softmax_params(sc("q") * sc("k") / math.sqrt(c.head_dim)),
            pv=(pv_mult, pv_shift),
            add1=add_params(s[x_in], sc("yo"), sc("xa")),
            add2=add_params(sc("xa"), sc("yd"), sc("xb")),
            act=function_table(FUNCTIONS[c.hidden_act], sc("g"), sc("s")),
            mul=mul_params(sc("s"), sc("u"), sc("a")),
        ))
        x_in = f"{i}.xb"
    qm.final_norm = norm_params(model.norm.weight.detach().numpy(), s[x_in], s["hf"],
                                c.rms_norm_eps)
    qm.lm_head = (files.get("lm_head", model.lm_head.weight.detach().numpy()
                            .astype(np.float64)), s["hf"], s["logits"])
    return qm

