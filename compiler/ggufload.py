"""LLaMA-family GGUF files (llama.cpp) as a model: the metadata to a ModelConfig, the tensors
to layers, quantized linear layers kept as their integer codes (compiler.qweight), every
field and byte count checked.

The float model built from the file (every weight dequantized exactly) is the reference
that calibration and accuracy checks run; the quantized tensors' codes are what the
compiled kernels multiply by. GGUF stores the Q and K projections' rows permuted for
llama.cpp's RoPE (convert_hf_to_gguf.py ``LlamaModel.permute``); the permutation is undone
here, so the rows are Hugging Face's.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sw.errors import UserError
from .ggml_blocks import FLOAT_TYPES, TYPES, block_size, decode, decode_float

__all__ = ["GGUFError", "GGUFModel", "read_gguf", "ARCHITECTURES", "LINEARS", "is_gguf"]

#: architectures read (a SmolLM2 GGUF says "llama": it is LlamaForCausalLM)
ARCHITECTURES = ("llama",)
#: architectures known to need what the model does not have
REFUSED = {"qwen2": "Q/K/V biases", "qwen3": "Q/K RMSNorm", "gemma": "GeGLU and its norms",
           "phi3": "fused QKV", "bitnet": "sub-norms (read BitNet from safetensors)"}

#: GGUF layer tensor -> (model linear name, or norm)
LINEARS = {"attn_q": "q_proj", "attn_k": "k_proj", "attn_v": "v_proj", "attn_output": "o_proj",
           "ffn_gate": "gate_proj", "ffn_up": "up_proj", "ffn_down": "down_proj"}
NORMS = {"attn_norm": "input_layernorm", "ffn_norm": "post_attention_layernorm"}


class GGUFError(UserError):
    """A GGUF file that cannot be read as a model (says which tensor or field, and why)."""


def is_gguf(path):
    path = Path(path)
    if not path.is_file():
        return False
    with open(path, "rb") as f:
        return f.read(4) == b"GGUF"


@dataclass
class TensorInfo:
    name: str
    kind: str           # type name
    shape: tuple        # torch order (rows, cols)
    nbytes: int
    key: str = None     # the linear layer it is (``"{layer}.{name}"``, ``"lm_head"``)


@dataclass
class GGUFModel:
    """What a GGUF file holds: the configuration, the float reference weights (Hugging Face
    names of compiler.models.LlamaModel), the quantized linears' QWeights (``"{i}.{name}"``
    and ``"lm_head"``) and each tensor's info."""
    arch: str
    config: object              # ModelConfig
    tensors: dict               # HF name -> float32 array
    qweights: dict
    info: list


def _row_order(rows, heads):
    """The rows of GGUF's Q or K matrix in Hugging Face order: the inverse of
    convert_hf_to_gguf's ``permute`` (as transformers' ``_reverse_permute_weights``)."""
    return np.arange(rows).reshape(heads, rows // heads // 2, 2).swapaxes(1, 2).reshape(rows)


def _open(path):
    import gguf
    try:
        return gguf.GGUFReader(path)
    except (ValueError, KeyError, IndexError, OSError, TypeError) as e:
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        if "GGMLQuantizationType" in msg:
            msg = f"a tensor has an unknown type ({msg})"
        raise GGUFError(f"{path}: not a GGUF file llmaccel can read: {msg}") from None


def _field(r, key, path, kind=None, required=True):
    f = r.fields.get(key)
    if f is None:
        if required:
            raise GGUFError(f"{path}: metadata {key} is missing")
        return None
    try:
        v = f.contents()
    except Exception:       # a malformed field of any kind: one line
        raise GGUFError(f"{path}: metadata {key} cannot be read") from None
    if kind is not None and not isinstance(v, kind):
        raise GGUFError(f"{path}: metadata {key} = {v!r} is not a {kind.__name__}")
    return v


def _config(r, path, arch, vocab, tied):
    from .models import ModelConfig
    a = arch

    def num(key, required=True, kind=int):
        v = _field(r, f"{a}.{key}", path, None, required)
        if v is None:
            return None
        if not isinstance(v, (int, float)) or (kind is int and v != int(v)) or v < 0:
            raise GGUFError(f"{path}: metadata {a}.{key} = {v!r} is not a valid number")
        # float32 fields: the shortest decimal that is that float32 (1e-5, not 9.99e-6)
        return int(v) if kind is int else float(str(np.float32(v)))
    scaling = _field(r, f"{a}.rope.scaling.type", path, required=False)
    if scaling not in (None, "none"):
        raise GGUFError(f"{path}: RoPE scaling {scaling!r} is not supported")
    heads = num("attention.head_count")
    hidden = num("embedding_length")
    head_dim = num("rope.dimension_count", required=False) or (hidden // max(heads, 1))
    try:
        return ModelConfig(
            hidden_size=hidden, intermediate_size=num("feed_forward_length"),
            num_attention_heads=heads,
            num_key_value_heads=num("attention.head_count_kv", required=False) or heads,
            num_hidden_layers=num("block_count"), vocab_size=vocab, head_dim=head_dim,
            rope_theta=num("rope.freq_base", False, float) or 10000.0,
            rms_norm_eps=num("attention.layer_norm_rms_epsilon", False, float) or 1e-5,
            tie_word_embeddings=tied,
            max_position_embeddings=num("context_length", required=False) or 2048)
    except (ValueError, ZeroDivisionError) as e:
        raise GGUFError(f"{path}: the metadata do not make a model: {e}") from None


def _infos(r, path):
    size = Path(path).stat().st_size
    out, spans = {}, []
    for t in r.tensors:
        kind = t.tensor_type.name
        dims = [int(d) for d in t.shape]
        if kind not in TYPES and kind not in FLOAT_TYPES:
            raise GGUFError(f"{path}: tensor {t.name} has type {kind}, which llmaccel does "
                            f"not read (it reads {', '.join([*FLOAT_TYPES, *TYPES])})")
        qk, nb = block_size(kind)
        if dims[0] % qk:
            raise GGUFError(f"{path}: tensor {t.name}: {dims[0]} values per row is not a "
                            f"multiple of {kind}'s block of {qk}")
        nbytes = int(np.prod(dims)) // qk * nb
        if t.data_offset + nbytes > size or t.data.nbytes != nbytes:
            raise GGUFError(f"{path}: tensor {t.name} ({kind} {dims[::-1]}) needs {nbytes} "
                            f"bytes from offset {t.data_offset}; the file has {size}: "
                            f"truncated or a wrong byte count")
        spans.append((t.data_offset, t.data_offset + nbytes, t.name))
        out[t.name] = (TensorInfo(t.name, kind, tuple(dims[::-1]), nbytes), t)
    spans.sort()
    for (b0, e0, n0), (b1, _, n1) in zip(spans, spans[1:]):
        if b1 < e0:
            raise GGUFError(f"{path}: tensors {n0} and {n1} overlap in the file")
    return out


def read_gguf(path) -> GGUFModel:
    """Read and check a LLaMA-family GGUF file."""
    path = Path(path)
    r = _open(path)
    arch = _field(r, "general.architecture", path, str)
    if arch not in ARCHITECTURES:
        why = f" (it needs {REFUSED[arch]})" if arch in REFUSED else ""
        raise GGUFError(f"{path}: architecture {arch!r} is not supported{why}; llmaccel reads "
                        f"{', '.join(ARCHITECTURES)}")
    infos = _infos(r, path)
    if "token_embd.weight" not in infos:
        raise GGUFError(f"{path}: tensor token_embd.weight is missing")
    vocab = infos["token_embd.weight"][0].shape[0]
    cfg = _config(r, path, arch, vocab, "output.weight" not in infos)
    want = _shapes(cfg)
    tensors, qweights = {}, {}
    used = set()
    for gname, (hf, shape) in want.items():
        if gname not in infos:
            raise GGUFError(f"{path}: tensor {gname} is missing")
        info, t = infos[gname]
        used.add(gname)
        if info.shape != shape:
            raise GGUFError(f"{path}: tensor {gname} has shape {list(info.shape)}; the "
                            f"metadata say {list(shape)}")
        raw = np.asarray(t.data)
        order = _qk_order(gname, cfg)
        if info.kind in FLOAT_TYPES:
            w = decode_float(raw, info.kind, shape)
            tensors[hf] = w if order is None else w[order]
            continue
        if len(shape) != 2:
            raise GGUFError(f"{path}: tensor {gname} is {info.kind} but not a matrix")
        qw = decode(raw, info.kind, *shape)
        qw = qw if order is None else qw.rows(order)
        tensors[hf] = qw.dequant().astype(np.float32)
        info.key = _linear_key(gname, cfg)
        if info.key:
            qweights[info.key] = qw
    extra = sorted(set(infos) - used - {"rope_freqs.weight"})
    if extra:
        raise GGUFError(f"{path}: tensor {extra[0]} is not part of a {arch} model "
                        f"llmaccel maps ({len(extra)} such)")
    return GGUFModel(arch, cfg, tensors, qweights, [v[0] for v in infos.values()])


def _shapes(cfg):
    """GGUF tensor name -> (Hugging Face name, torch shape) for the configuration."""
    from .models import hf_name
    h = cfg.hidden_size
    out = {"token_embd.weight": ("model.embed_tokens.weight", (cfg.vocab_size, h)),
           "output_norm.weight": ("model.norm.weight", (h,))}
    if not cfg.tie_word_embeddings:
        out["output.weight"] = ("lm_head.weight", (cfg.vocab_size, h))
    for i in range(cfg.num_hidden_layers):
        linears = cfg.linears(i)
        for g, name in LINEARS.items():
            out[f"blk.{i}.{g}.weight"] = linears[name]
        for g, name in NORMS.items():
            out[f"blk.{i}.{g}.weight"] = (hf_name(f"layers.{i}.{name}.weight"), (h,))
    return out


def _linear_key(gname, cfg):
    if gname == "output.weight" or (gname == "token_embd.weight" and cfg.tie_word_embeddings):
        return "lm_head"
    parts = gname.split(".")
    if len(parts) == 4 and parts[0] == "blk" and parts[2] in LINEARS:
        return f"{parts[1]}.{LINEARS[parts[2]]}"
    return None


def _qk_order(gname, cfg):
    if gname.endswith(".attn_q.weight"):
        return _row_order(cfg.num_attention_heads * cfg.head_dim, cfg.num_attention_heads)
    if gname.endswith(".attn_k.weight"):
        return _row_order(cfg.num_key_value_heads * cfg.head_dim, cfg.num_key_value_heads)
    return None


def load_gguf(path):
    """(LlamaModel with the file's weights dequantized, GGUFModel) from a GGUF file."""
    from .models import _from_tensors
    g = read_gguf(path)
    model = _from_tensors(g.config, g.tensors, path)
    model.qweights = g.qweights
    return model, g
